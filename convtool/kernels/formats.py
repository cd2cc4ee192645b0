"""Kernel text and file formats: inline matrices, ImageMagick strings, scale modifiers, files.

Everything here turns text or bytes into a :class:`MatrixData` (plain numbers, a centre, a
scale still to apply), never a :class:`convtool.kernels.Kernel`, so that this module knows
grammars and ``kernels`` knows what a kernel is. All failures are :class:`KernelError` with
a one-line message naming the bad part; file errors carry ``path=``.

Grammars (the README shows them with examples):

- matrix: rows separated by ``;`` (or lines, in a file), values by spaces and/or commas,
  optional brackets (``[1 2; 3 4]`` or numpy-style ``[[1, 2], [3, 4]]``); as a spec it may
  end in ``/N`` (divide) or ``*X`` (multiply).
- ImageMagick: ``WxH[+X+Y]: v v v ...`` row-major; ``X, Y`` are the centre's column and row
  (default ``(W-1)//2, (H-1)//2`` as ImageMagick); ``nan`` or ``-`` marks a tap outside
  the neighbourhood (weight 0).
- scale (``@scale=`` and the ``scale:`` file header): ``[NUMBER[/NUMBER]][%][!|^]``,
  mirroring ImageMagick's ``-define convolve:scale``: normalise first (``!`` by the sum,
  ``^`` positives to 1 and negatives to -1), then multiply by the number.
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass

import numpy as np

from convtool.errors import KernelError

MAX_KERNEL_SIDE = 1025  # taps per side; a 1025x1025 kernel is already 1M taps per pixel
MAX_FILE_BYTES = 64 * 1024 * 1024  # a full-size kernel as text is ~20 MB
FILE_EXTENSIONS = (".txt", ".npy", ".mat", ".kernel")
HEADER_KEYS = ("description", "scale", "origin", "column", "row")

NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
NUMBER_RE = re.compile(NUMBER)
_SEPARATORS = re.compile(r"[\s,]+")
# Between the rows of a numpy-style nested list: "], [" (or "];[" once lines are joined).
_ROW_BREAK = re.compile(r"\]\s*[,;]*\s*\[")
_MATRIX_SUFFIX = re.compile(rf"(?P<body>.*?)\s*(?P<op>[/*])\s*(?P<num>{NUMBER})\s*", re.S)
_SCALE_RE = re.compile(rf"(?P<num>{NUMBER})?(?:/(?P<den>{NUMBER}))?(?P<flags>[%!^]*)")
_IM_GEOMETRY = re.compile(r"\s*(\d+)(?:[xX](\d+))?(?:\+(\d+))?(?:\+(\d+))?\s*")
_HEADER_RE = re.compile(r"([A-Za-z][A-Za-z_-]*)\s*:\s*(.*)")


@dataclass(frozen=True)
class Scale:
    """A parsed scale: normalise first (``normalize``), then multiply by factor / divisor."""

    text: str
    factor: float = 1.0
    divisor: float = 1.0
    normalize: str | None = None  # None, "sum" (!) or "zero-sum" (^)


@dataclass(frozen=True)
class MatrixData:
    """A kernel as read from text or a file, before it becomes a Kernel."""

    weights: np.ndarray
    origin: tuple[int, int] = (0, 0)  # scipy semantics: centre index minus k // 2
    factors: tuple[np.ndarray, np.ndarray] | None = None
    offset: float = 0.0
    scale: Scale | None = None
    description: str = ""


def check_side(height: int, width: int, what: str = "kernel") -> None:
    """Raise unless a kernel of height × width taps is within 1..MAX_KERNEL_SIDE per side."""
    if height < 1 or width < 1:
        raise KernelError(f"{what} has no taps ({height}x{width})")
    if max(height, width) > MAX_KERNEL_SIDE:
        raise KernelError(
            f"{what} is {height}x{width}, above the limit of {MAX_KERNEL_SIDE} taps per side"
        )


def origin_from_centre(centre: tuple[int, int], shape: tuple[int, int], what: str):
    """The scipy-style origin of a kernel whose centre tap is at index ``centre`` (row, col)."""
    for index, side, axis in zip(centre, shape, ("row", "column"), strict=True):
        if not 0 <= index < side:
            raise KernelError(
                f"{what}: centre {axis} {index} is outside the {shape[0]}x{shape[1]} kernel "
                f"(rows and columns count from 0)"
            )
    return (centre[0] - shape[0] // 2, centre[1] - shape[1] // 2)


# ------------------------------------------------------------------------------ numbers


def parse_number(token: str, what: str) -> float:
    """A finite float from ``token`` (plain decimal or exponent notation), or KernelError."""
    if not NUMBER_RE.fullmatch(token):
        hint = " (scale the whole matrix with a trailing /N instead)" if "/" in token else ""
        raise KernelError(f"{what}: {token!r} is not a number{hint}")
    value = float(token)
    if not math.isfinite(value):
        raise KernelError(f"{what}: {token!r} is too large")
    return value


def parse_scale(text: str) -> Scale:
    """Parse a scale such as ``2``, ``1/16``, ``50%``, ``!``, ``^`` or ``2!``."""
    compact = "".join(text.split())
    m = _SCALE_RE.fullmatch(compact)
    flags = m.group("flags") if m else ""
    if (
        not compact
        or m is None
        or flags.count("%") > 1
        or len(flags.replace("%", "")) > 1
        or (m.group("num") is None and ("%" in flags or m.group("den") is not None))
    ):
        raise KernelError(
            f"scale {text!r} not understood; use a number (2, 0.5, 1/16), a percentage (50%), "
            "! (normalise to sum 1), ^ (positives to 1, negatives to -1), or both (2!)"
        )
    factor = parse_number(m.group("num"), "scale") if m.group("num") else 1.0
    divisor = parse_number(m.group("den"), "scale") if m.group("den") else 1.0
    if divisor == 0:
        raise KernelError(f"scale {text!r} divides by zero")
    if "%" in flags:
        factor *= 0.01
    normalize = {"!": "sum", "^": "zero-sum"}.get(flags.replace("%", ""))
    return Scale(compact, factor, divisor, normalize)


def parse_centre(text: str, what: str) -> tuple[int, int]:
    """``ROW,COL`` (or ``ROW COL``): the 0-based index of the centre tap."""
    parts = [p for p in _SEPARATORS.split(text.strip()) if p]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise KernelError(
            f"{what}: expected the centre as ROW,COL (whole numbers from 0), got {text!r}"
        )
    return (int(parts[0]), int(parts[1]))


# ----------------------------------------------------------------------------- matrices


def parse_rows(text: str, what: str = "matrix") -> np.ndarray:
    """A 2-D array from rows separated by ``;``, values by spaces/commas, optional brackets."""
    body = _ROW_BREAK.sub(";", text.strip())
    opened = closed = 0
    while body.startswith("["):
        body, opened = body[1:].strip(), opened + 1
    while body.endswith("]"):
        body, closed = body[:-1].strip(), closed + 1
    if opened != closed or "[" in body or "]" in body:
        raise KernelError(f"{what}: unbalanced brackets in {text.strip()!r}")
    rows = body.split(";")
    if len(rows) > 1 and not rows[-1].strip():
        rows.pop()  # a trailing ';' (as MATLAB allows) ends the last row, it adds none
    values: list[list[float]] = []
    for number, row in enumerate(rows, 1):
        tokens = [t for t in _SEPARATORS.split(row.strip()) if t]
        if not tokens:
            raise KernelError(f"{what}: {'it is empty' if not body else f'row {number} is empty'}")
        values.append([parse_number(t, what) for t in tokens])
    width = len(values[0])
    for number, parsed in enumerate(values, 1):
        if len(parsed) != width:
            raise KernelError(
                f"{what}: row {number} has {len(parsed)} value{'s' * (len(parsed) != 1)} but row 1 "
                f"has {width}; "
                "all rows need the same length"
            )
    check_side(len(values), width, what)
    return np.array(values, dtype=np.float64)


def parse_matrix_spec(text: str) -> MatrixData:
    """An inline matrix spec: ``"[1 2 1; 2 4 2; 1 2 1]/16"``, ``"1 -1"``, ``"[1,2;3,4]*0.5"``."""
    m = _MATRIX_SUFFIX.fullmatch(text)
    scale = None
    if m and m.group("body").strip():
        text, number = m.group("body"), parse_number(m.group("num"), "matrix scale")
        if m.group("op") == "/":
            if number == 0:
                raise KernelError("matrix scale: division by zero")
            scale = Scale(f"1/{m.group('num')}", divisor=number)
        else:
            scale = Scale(m.group("num"), factor=number)
    return MatrixData(parse_rows(text), scale=scale)


# -------------------------------------------------------------------------- ImageMagick


def looks_like_imagemagick(text: str) -> bool:
    """True for ``WxH...: values`` (inline matrices never contain ``:``)."""
    stripped = text.lstrip().lstrip("'")
    return bool(stripped[:1].isdigit()) and ":" in stripped


def reject_imagemagick_flags(text: str) -> None:
    """Refuse ImageMagick's kernel-list flags (``3x3@:``, ``>``, ``<``) before ``@`` is split."""
    if looks_like_imagemagick(text) and any(f in text.partition(":")[0] for f in "@<>"):
        raise KernelError(
            "ImageMagick kernel expansion flags (@, <, >) make kernel lists, which are not "
            "supported; give one kernel"
        )


def parse_imagemagick(text: str) -> MatrixData:
    """An ImageMagick user kernel ``WxH[+X+Y]: values``, with IM's default centre."""
    head, _, body = text.strip().strip("'").partition(":")
    g = _IM_GEOMETRY.fullmatch(head)
    if g is None:
        raise KernelError(
            f"ImageMagick kernel geometry {head.strip()!r} not understood: expected W, WxH or "
            "WxH+X+Y (X, Y: centre column and row from 0); kernel lists and the @ < > "
            "expansion flags are not supported"
        )
    width = int(g.group(1))
    height = int(g.group(2)) if g.group(2) else width
    check_side(height, width, "ImageMagick kernel")
    x = int(g.group(3)) if g.group(3) else (width - 1) // 2
    y = int(g.group(4)) if g.group(4) else (height - 1) // 2
    if ";" in body:
        raise KernelError("ImageMagick kernel lists (';') are not supported; give one kernel")
    tokens = [t for t in _SEPARATORS.split(body.strip()) if t]
    if len(tokens) != width * height:
        raise KernelError(
            f"ImageMagick kernel {width}x{height} needs {width * height} values, got {len(tokens)}"
        )
    # nan / '-' mark taps outside the neighbourhood; for a weighted sum that is weight 0,
    # and a 0 changes neither the sum nor the positive/negative totals used to normalise.
    absent = [t.lower() in ("nan", "-") for t in tokens]
    if all(absent):
        raise KernelError("ImageMagick kernel has no values, only nan/- taps")
    values = [
        0.0 if a else parse_number(t, "ImageMagick kernel")
        for t, a in zip(tokens, absent, strict=True)
    ]
    weights = np.array(values, dtype=np.float64).reshape(height, width)
    origin = origin_from_centre((y, x), (height, width), "ImageMagick kernel")
    return MatrixData(weights, origin=origin)


# -------------------------------------------------------------------------------- files


def _content_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) of the lines left after removing ``#`` comments and blanks."""
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append((number, line))
    return lines


def parse_text_file(text: str) -> MatrixData:
    """A plain-text kernel file: optional ``key: value`` headers, then the matrix rows.

    Headers: ``description:``, ``scale:`` (the scale grammar), ``origin: ROW,COL`` (centre
    index), ``column:`` and ``row:`` (1-D factors; with both and no rows, the matrix is their
    outer product). A file holding an ImageMagick kernel string is read as one.
    """
    lines = _content_lines(text.lstrip("\ufeff"))
    if not lines:
        raise KernelError("no kernel in the file (only comments or blank lines)")
    if looks_like_imagemagick(lines[0][1]):
        return parse_imagemagick(" ".join(line for _, line in lines))
    header: dict[str, str] = {}
    rows = []
    for number, line in lines:
        m = _HEADER_RE.fullmatch(line)
        if m is None:
            rows.append(line.rstrip(";"))
            continue
        key = m.group(1).lower()
        if key not in HEADER_KEYS:
            raise KernelError(
                f"line {number}: unknown header {m.group(1)!r}; "
                f"expected one of {', '.join(HEADER_KEYS)}"
            )
        if key in header:
            raise KernelError(f"line {number}: {key} given twice")
        header[key] = m.group(2).strip()
    factors = _header_factors(header)
    if rows:
        weights = parse_rows(";".join(rows), "kernel matrix")
    elif factors is not None:
        check_side(factors[0].size, factors[1].size, "kernel from column and row")
        weights = np.outer(*factors)
    else:
        raise KernelError("no matrix rows in the file")
    origin = (0, 0)
    if "origin" in header:
        centre = parse_centre(header["origin"], "origin")
        origin = origin_from_centre(centre, weights.shape, "origin")
    scale = parse_scale(header["scale"]) if "scale" in header else None
    return MatrixData(weights, origin, factors, 0.0, scale, header.get("description", ""))


def _header_factors(header: dict[str, str]):
    if ("column" in header) != ("row" in header):
        raise KernelError("give both column: and row: (the 1-D factors), or neither")
    if "column" not in header:
        return None
    return tuple(parse_rows(header[key], key).ravel() for key in ("column", "row"))


def parse_vips_matrix(text: str) -> MatrixData:
    """A libvips matrix file: ``width height [scale [offset]]``, then ``height`` rows.

    As in libvips the result of filtering is divided by ``scale`` and ``offset`` is added.
    """
    lines = _content_lines(text)
    if not lines:
        raise KernelError("empty libvips matrix file")
    head = [t for t in _SEPARATORS.split(lines[0][1]) if t]
    usage = "libvips matrix header must be 'width height [scale [offset]]'"
    if not 2 <= len(head) <= 4 or not (head[0].isdigit() and head[1].isdigit()):
        raise KernelError(f"{usage}, got {lines[0][1]!r}")
    width, height = int(head[0]), int(head[1])
    check_side(height, width, "libvips matrix")
    scale = parse_number(head[2], "libvips scale") if len(head) > 2 else 1.0
    offset = parse_number(head[3], "libvips offset") if len(head) > 3 else 0.0
    if scale == 0:
        raise KernelError("libvips matrix scale is 0; it divides the result, so it cannot be 0")
    rows = lines[1:]
    if len(rows) != height:
        raise KernelError(f"libvips matrix header says {height} rows, the file has {len(rows)}")
    values = []
    for number, line in rows:
        tokens = [t for t in _SEPARATORS.split(line) if t]
        if len(tokens) != width:
            raise KernelError(f"line {number}: {len(tokens)} values, the header says width {width}")
        values.append([parse_number(t, f"line {number}") for t in tokens])
    weights = np.array(values, dtype=np.float64)
    divide = Scale(f"1/{head[2]}", divisor=scale) if scale != 1 else None
    return MatrixData(weights, scale=divide, offset=offset)


def load_npy_array(data: bytes) -> np.ndarray:
    """The array of a ``.npy`` file's bytes, as float64, of any number of dimensions."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any failure of a foreign format is a bad file
        raise KernelError(f"not a readable .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise KernelError("expected one array (.npy), not an archive of several (.npz)")
    if array.dtype.kind not in "biuf":
        raise KernelError(f"the array holds {array.dtype}, not real numbers")
    return np.array(array, dtype=np.float64)


def load_npy(data: bytes) -> MatrixData:
    """A kernel from the bytes of a ``.npy`` file (2-D real array; 1-D is one row)."""
    array = load_npy_array(data)
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim in (3, 4):
        raise KernelError(
            f"the array is {array.ndim}-D: a layer's weights ((C_in, kh, kw) or "
            "(C_out, C_in/groups, kh, kw)), which `convtool filter -k` takes; a kernel is 2-D"
        )
    if array.ndim != 2:
        raise KernelError(f"the array is {array.ndim}-D; a kernel is 2-D")
    return MatrixData(array)


def load_matlab(data: bytes) -> MatrixData:
    """The one 2-D numeric variable of a MATLAB ``.mat`` file (v5 format, via scipy.io)."""
    import scipy.io  # lazily: only MATLAB users pay for it

    try:
        contents = scipy.io.loadmat(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - any failure of a foreign format is a bad file
        raise KernelError(f"not a readable MATLAB .mat file ({exc})") from None
    arrays = {
        name: value
        for name, value in contents.items()
        if not name.startswith("__")
        and isinstance(value, np.ndarray)
        and value.dtype.kind in "biuf"
        and value.ndim == 2
    }
    if len(arrays) != 1:
        found = ", ".join(sorted(arrays)) or "none"
        raise KernelError(
            f"a MATLAB kernel file must hold exactly one 2-D numeric variable (found: {found})"
        )
    return MatrixData(np.array(next(iter(arrays.values())), dtype=np.float64))


def read_kernel_data(path: str | os.PathLike) -> MatrixData:
    """Read a kernel file: ``.npy``, MATLAB or libvips ``.mat``, or text (plain or IM)."""
    where = os.fspath(path)
    data = read_file_bytes(where)
    try:
        return _parse_file_bytes(data, os.path.splitext(where)[1].lower())
    except KernelError as exc:
        if exc.path is not None:
            raise
        raise KernelError(str(exc), path=where) from None


def read_file_bytes(path: str | os.PathLike, what: str = "kernel file") -> bytes:
    """The bytes of a kernel (or bias) file, at most MAX_FILE_BYTES + 1 of them."""
    where = os.fspath(path)
    try:
        with open(where, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KernelError(f"no such {what}", path=where) from None
    except IsADirectoryError:
        raise KernelError(f"is a folder, not a {what}", path=where) from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise KernelError(f"cannot read the {what} ({reason})", path=where) from None


def _parse_file_bytes(data: bytes, extension: str) -> MatrixData:
    if len(data) > MAX_FILE_BYTES:
        raise KernelError(f"larger than {MAX_FILE_BYTES // 2**20} MB; not a kernel file")
    if data.startswith(b"\x93NUMPY") or extension == ".npy":
        return load_npy(data)
    if data.startswith(b"MATLAB"):
        return load_matlab(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KernelError("not a text kernel file (not UTF-8), nor .npy or MATLAB") from None
    if extension == ".mat":
        return parse_vips_matrix(text)
    return parse_text_file(text)

"""Kernel text and file formats: inline matrices, ImageMagick strings, scale modifiers, files.

Everything here turns text or bytes into a :class:`MatrixData` (plain numbers, a centre, a
scale still to apply), never a :class:`convtool.kernels.Kernel`, so that this module knows
grammars and ``kernels`` knows what a kernel is. All failures are :class:`KernelError` with
a one-line message naming the bad part; file errors carry ``path=``.

What a message quotes: text from the command line is quoted as an excerpt (at most
:data:`convtool.errors.EXCERPT` characters, escaped). From a file, only a piece that looks
like a (mistyped) number or scale is quoted (``'1.2.3'``, ``'1e'``, ``'nan'``): never a
header key, a description or a line of something that is not a kernel file, so that
``-k /etc/shadow`` or a file holding ``API_KEY=...`` shows none of its contents. Work is
bounded before parsing: files are read up to :data:`MAX_FILE_BYTES` and
:data:`MAX_FILE_LINES`, rows and values are counted against :data:`MAX_KERNEL_SIDE` before a
single number is converted, and a number has at most :data:`MAX_NUMBER_CHARS` characters.

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

import contextlib
import difflib
import io
import itertools
import math
import os
import re
import stat
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from convtool.errors import KernelError, excerpt

MAX_KERNEL_SIDE = 1025  # taps per side; a 1025x1025 kernel is already 1M taps per pixel
# A full-size kernel written with 17 significant digits is ~25 MB of text, as .npy 8.4 MB.
MAX_FILE_BYTES = 32 * 1024 * 1024
# Rows, headers, comments and blank lines together: 16 lines per row of the largest kernel.
MAX_FILE_LINES = 16 * MAX_KERNEL_SIDE
MAX_NUMBER_CHARS = 100  # "-1.2345678901234567e-300" is 24; no written number needs more
FILE_EXTENSIONS = (".txt", ".npy", ".mat", ".kernel")
HEADER_KEYS = ("description", "scale", "origin", "column", "row")

# Every pattern below matches in linear time: no two parts of one can take the same
# characters (``\d+\.?\d*`` could split a run of digits k ways, and backtracking through
# a 20 MB run of them never ended).
NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
NUMBER_RE = re.compile(NUMBER)
_SEPARATORS = re.compile(r"[\s,]+")
# Between the rows of a numpy-style nested list: "], [" (or "];[" once lines are joined).
_ROW_BREAK = re.compile(r"\](?:\s|[,;])*\[")
# A trailing "/N" or "*X" (searched: the one operator the rest of the text follows).
_MATRIX_SUFFIX = re.compile(rf"(?P<op>[/*])\s*(?P<num>{NUMBER})\s*\Z")
_SCALE_RE = re.compile(rf"(?P<num>{NUMBER})?(?:/(?P<den>{NUMBER}))?(?P<flags>[%!^]*)")
_IM_GEOMETRY = re.compile(r"\s*(\d+)(?:[xX](\d+))?(?:\+(\d+))?(?:\+(\d+))?\s*")
_HEADER_RE = re.compile(r"([A-Za-z][A-Za-z_-]*)\s*:\s*(.*)")
_TOKEN = re.compile(r"[^\s,]+")
# What a message may quote from a file: a mistyped number, scale or size, nothing else.
_QUOTABLE_FROM_FILE = re.compile(r"[0-9+\-.eExX/*%!^]{1,40}|nan|inf|infinity", re.IGNORECASE)
# Control characters other than whitespace: binary data, not a text kernel file.
_BINARY = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_FROM_FILE: ContextVar[bool] = ContextVar("convtool_kernel_text_from_file", default=False)


@contextlib.contextmanager
def reading_a_file() -> Iterator[None]:
    """Within: the text being parsed came from a file, so messages quote less of it."""
    token = _FROM_FILE.set(True)
    try:
        yield
    finally:
        _FROM_FILE.reset(token)


def quoted(text: str) -> str | None:
    """``text`` as a message may quote it (:func:`convtool.errors.excerpt`), or None.

    None for text from a file unless it looks like a mistyped number or scale.
    """
    if _FROM_FILE.get() and not _QUOTABLE_FROM_FILE.fullmatch(text.strip()):
        return None
    return excerpt(text.strip())


def _quoting(text: str, before: str = " ") -> str:
    """``before`` + :func:`quoted` text, or nothing when it may not be quoted."""
    shown = quoted(text)
    return f"{before}{shown}" if shown else ""


def tokens(text: str, limit: int) -> list[str]:
    """The values of ``text`` (split at spaces and commas), at most ``limit`` + 1 of them.

    A caller that gets more than ``limit`` refuses the row without splitting the rest of it:
    a one-line file of 30 million values costs as little as one of 1026.
    """
    return [m.group() for m in itertools.islice(_TOKEN.finditer(text), limit + 1)]


def _count(found: list[str], limit: int) -> str:
    """How many values :func:`tokens` found, in words (it stops one past ``limit``)."""
    return f"more than {limit:,}" if len(found) > limit else str(len(found))


def side(text: str, what: str) -> int:
    """A kernel side written in ``text`` (digits), refused above :data:`MAX_KERNEL_SIDE`."""
    if len(text) > 6:  # int() of a 5000-digit string raises; no side needs 7 digits
        raise KernelError(
            f"{what}: a side of {len(text)} digits is above the limit of {MAX_KERNEL_SIDE} "
            "taps per side"
        )
    return int(text)


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
    if len(token) > MAX_NUMBER_CHARS:
        raise KernelError(f"{what}: a value of {len(token):,} characters is not a number")
    if not NUMBER_RE.fullmatch(token):
        hint = " (scale the whole matrix with a trailing /N instead)" if "/" in token else ""
        shown = quoted(token)
        raise KernelError(
            f"{what}: {shown} is not a number{hint}" if shown else f"{what} is not a number"
        )
    value = float(token)
    if not math.isfinite(value):
        raise KernelError(f"{what}: {quoted(token) or 'a value'} is too large")
    return value


def parse_scale(text: str) -> Scale:
    """Parse a scale such as ``2``, ``1/16``, ``50%``, ``!``, ``^`` or ``2!``."""
    compact = "".join(text.split())
    m = _SCALE_RE.fullmatch(compact) if len(compact) <= 2 * MAX_NUMBER_CHARS + 4 else None
    flags = m.group("flags") if m else ""
    if (
        not compact
        or m is None
        or flags.count("%") > 1
        or len(flags.replace("%", "")) > 1
        or (m.group("num") is None and ("%" in flags or m.group("den") is not None))
    ):
        raise KernelError(
            f"scale{_quoting(text)} not understood; use a number (2, 0.5, 1/16), a percentage "
            "(50%), ! (normalise to sum 1), ^ (positives to 1, negatives to -1), or both (2!)"
        )
    factor = parse_number(m.group("num"), "scale") if m.group("num") else 1.0
    divisor = parse_number(m.group("den"), "scale") if m.group("den") else 1.0
    if divisor == 0:
        raise KernelError(f"scale{_quoting(text)} divides by zero")
    if "%" in flags:
        factor *= 0.01
    normalize = {"!": "sum", "^": "zero-sum"}.get(flags.replace("%", ""))
    return Scale(compact, factor, divisor, normalize)


def parse_centre(text: str, what: str) -> tuple[int, int]:
    """``ROW,COL`` (or ``ROW COL``): the 0-based index of the centre tap."""
    parts = tokens(text, 2)
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        got = f", got{_quoting(text)}" if quoted(text) else ""
        raise KernelError(f"{what}: expected the centre as ROW,COL (whole numbers from 0){got}")
    return (side(parts[0], what), side(parts[1], what))


# ----------------------------------------------------------------------------- matrices


def parse_rows(text: str, what: str = "matrix") -> np.ndarray:
    """A 2-D array from rows separated by ``;``, values by spaces/commas, optional brackets.

    Rows and values are counted against :data:`MAX_KERNEL_SIDE` before any is converted.
    """
    body = _ROW_BREAK.sub(";", text.strip())
    inner = body.lstrip("[ \t\r\n\f\v")
    opened, body = body[: len(body) - len(inner)].count("["), inner
    inner = body.rstrip("] \t\r\n\f\v")
    closed, body = body[len(inner) :].count("]"), inner
    if opened != closed or "[" in body or "]" in body:
        raise KernelError(f"{what}: unbalanced brackets{_quoting(text, ' in ')}")
    if body.count(";") > MAX_KERNEL_SIDE:  # one more ';' than rows is a trailing one
        raise KernelError(
            f"{what} has more than {MAX_KERNEL_SIDE} rows, above the limit of "
            f"{MAX_KERNEL_SIDE} taps per side"
        )
    rows = body.split(";")
    if len(rows) > 1 and not rows[-1].strip():
        rows.pop()  # a trailing ';' (as MATLAB allows) ends the last row, it adds none
    values: list[list[float]] = []
    for number, row in enumerate(rows, 1):
        found = tokens(row, MAX_KERNEL_SIDE)
        if not found:
            raise KernelError(f"{what}: {'it is empty' if not body else f'row {number} is empty'}")
        if len(found) > MAX_KERNEL_SIDE:
            raise KernelError(
                f"{what}: row {number} has more than {MAX_KERNEL_SIDE} values, above the "
                f"limit of {MAX_KERNEL_SIDE} taps per side"
            )
        values.append(
            [parse_number(t, f"{what}, row {number}, value {i}") for i, t in enumerate(found, 1)]
        )
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
    m = _MATRIX_SUFFIX.search(text)
    scale = None
    if m and text[: m.start()].strip():
        text, number = text[: m.start()], parse_number(m.group("num"), "matrix scale")
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
            f"ImageMagick kernel geometry{_quoting(head)} not understood: expected W, WxH or "
            "WxH+X+Y (X, Y: centre column and row from 0); kernel lists and the @ < > "
            "expansion flags are not supported"
        )
    what = "ImageMagick kernel"
    width = side(g.group(1), what)
    height = side(g.group(2), what) if g.group(2) else width
    check_side(height, width, what)
    x = side(g.group(3), what) if g.group(3) else (width - 1) // 2
    y = side(g.group(4), what) if g.group(4) else (height - 1) // 2
    if ";" in body:
        raise KernelError("ImageMagick kernel lists (';') are not supported; give one kernel")
    found = tokens(body, MAX_KERNEL_SIDE**2)
    if len(found) != width * height:
        got = _count(found, MAX_KERNEL_SIDE**2)
        raise KernelError(f"{what} {width}x{height} needs {width * height} values, got {got}")
    # nan / '-' mark taps outside the neighbourhood; for a weighted sum that is weight 0,
    # and a 0 changes neither the sum nor the positive/negative totals used to normalise.
    absent = [t.lower() in ("nan", "-") for t in found]
    if all(absent):
        raise KernelError("ImageMagick kernel has no values, only nan/- taps")
    values = [
        0.0 if a else parse_number(t, f"{what}, value {i}")
        for i, (t, a) in enumerate(zip(found, absent, strict=True), 1)
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
            # The key is not quoted: a file that is no kernel file ("root:..." in
            # /etc/shadow, "API_KEY: ...") would show its contents.
            close = difflib.get_close_matches(key, HEADER_KEYS, n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise KernelError(
                f"line {number}: not a header this kernel file format knows{hint}; "
                f"expected one of {', '.join(HEADER_KEYS)}, or rows of numbers"
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
    head = tokens(lines[0][1], 4)
    usage = "libvips matrix header must be 'width height [scale [offset]]'"
    if not 2 <= len(head) <= 4 or not (head[0].isdigit() and head[1].isdigit()):
        raise KernelError(f"line {lines[0][0]}: {usage}")
    width, height = side(head[0], "libvips matrix"), side(head[1], "libvips matrix")
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
        found = tokens(line, MAX_KERNEL_SIDE)
        if len(found) != width:
            got = _count(found, MAX_KERNEL_SIDE)
            raise KernelError(f"line {number}: {got} values, the header says width {width}")
        values.append([parse_number(t, f"line {number}") for t in found])
    weights = np.array(values, dtype=np.float64)
    divide = Scale(f"1/{head[2]}", divisor=scale) if scale != 1 else None
    return MatrixData(weights, scale=divide, offset=offset)


def load_npy_array(data: bytes) -> np.ndarray:
    """The array of a ``.npy`` file's bytes, as float64, of any number of dimensions.

    The header is checked (kind of numbers) before the data is read. Messages never repeat
    numpy's, which may quote the file's header (its keys and values).
    """
    if data.startswith(b"PK\x03\x04"):
        raise KernelError("expected one array (.npy), not an archive of several (.npz)")
    _shape, dtype = _npy_header(data)
    if dtype.hasobject:
        raise KernelError("not a readable .npy array (it holds Python objects: pickle, refused)")
    if dtype.kind not in "biuf":
        raise KernelError(f"the array holds {dtype.name}, not real numbers")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:  # noqa: BLE001 - any failure of a foreign format is a bad file
        raise KernelError("not a readable .npy array (its data is truncated or corrupt)") from None
    return np.array(array, dtype=np.float64)


def load_npy(data: bytes) -> MatrixData:
    """A kernel from the bytes of a ``.npy`` file (2-D real array; 1-D is one row).

    Its sides are checked from the header, before the data is read.
    """
    shape, _dtype = _npy_header(data)
    if len(shape) in (3, 4):
        raise KernelError(
            f"the array is {len(shape)}-D: a layer's weights ((C_in, kh, kw) or "
            "(C_out, C_in/groups, kh, kw)), which `convtool filter -k` takes; a kernel is 2-D"
        )
    if len(shape) not in (1, 2):
        raise KernelError(f"the array is {len(shape)}-D; a kernel is 2-D")
    height, width = (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])
    check_side(height, width)
    array = load_npy_array(data)
    if array.ndim == 1:
        array = array[np.newaxis, :]
    return MatrixData(array)


def _npy_header(data: bytes) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from a .npy file's header, or KernelError."""
    fmt = np.lib.format
    stream = io.BytesIO(data)
    try:
        version = fmt.read_magic(stream)
        read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}[version]
        shape, _fortran, dtype = read(stream)
    except Exception:  # noqa: BLE001 - a bad magic string, version or header
        raise KernelError("not a readable .npy array (its header is not a .npy header)") from None
    return tuple(shape), np.dtype(dtype)


def load_matlab(data: bytes) -> MatrixData:
    """The one 2-D numeric variable of a MATLAB ``.mat`` file (v5 format, via scipy.io)."""
    import scipy.io  # lazily: only MATLAB users pay for it

    try:
        contents = scipy.io.loadmat(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - any failure of a foreign format is a bad file
        # (scipy's message is not repeated: it may quote the file's header text)
        raise KernelError("not a readable MATLAB .mat file (v5 format expected)") from None
    arrays = {
        name: value
        for name, value in contents.items()
        if not name.startswith("__")
        and isinstance(value, np.ndarray)
        and value.dtype.kind in "biuf"
        and value.ndim == 2
    }
    if len(arrays) != 1:
        # MATLAB names are identifiers of at most 63 characters; five of them at most
        names = sorted(arrays)
        shown = ", ".join(name[:63] for name in names[:5]) + (", ..." if len(names) > 5 else "")
        raise KernelError(
            "a MATLAB kernel file must hold exactly one 2-D numeric variable "
            f"(found: {shown or 'none'})"
        )
    array = next(iter(arrays.values()))
    check_side(*array.shape)
    return MatrixData(np.array(array, dtype=np.float64))


def read_kernel_data(path: str | os.PathLike) -> MatrixData:
    """Read a kernel file: ``.npy``, MATLAB or libvips ``.mat``, or text (plain or IM)."""
    where = os.fspath(path)
    data = read_file_bytes(where)
    try:
        with reading_a_file():
            return _parse_file_bytes(data, os.path.splitext(where)[1].lower())
    except KernelError as exc:
        if exc.path is not None:
            raise
        raise KernelError(str(exc), path=where) from None


def read_file_bytes(path: str | os.PathLike, what: str = "kernel file") -> bytes:
    """The bytes of a kernel (or bias) file, at most MAX_FILE_BYTES + 1 of them.

    Only a regular file: a FIFO or a device (``/dev/zero``, ``/dev/stdin``) is refused,
    and opening it does not wait for a writer.
    """
    where = os.fspath(path)
    try:
        fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise KernelError(f"no such {what}", path=where) from None
    except IsADirectoryError:
        raise KernelError(f"is a folder, not a {what}", path=where) from None
    except (OSError, ValueError) as exc:
        reason = (getattr(exc, "strerror", None) or type(exc).__name__).lower()
        raise KernelError(f"cannot read the {what} ({reason})", path=where) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise KernelError(f"is a folder, not a {what}", path=where)
        raise KernelError("is not a regular file (a device or a pipe?)", path=where)
    with open(fd, "rb") as handle:
        try:
            return handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
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
    if _BINARY.search(text):
        raise KernelError("not a text kernel file (it holds control characters), nor .npy")
    if data.count(b"\n") >= MAX_FILE_LINES:
        raise KernelError(f"more than {MAX_FILE_LINES:,} lines; not a kernel file")
    if extension == ".mat":
        return parse_vips_matrix(text)
    return parse_text_file(text)

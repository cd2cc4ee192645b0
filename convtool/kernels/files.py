"""Kernel files: plain text (with headers), libvips ``.mat``, ``.npy`` and MATLAB ``.mat``.

:func:`read_kernel_data` reads a file (a regular file only, at most :data:`MAX_FILE_BYTES`
and :data:`MAX_FILE_LINES`) and picks its format by its first bytes and its extension; the
text inside is parsed with the grammars of :mod:`convtool.kernels.formats`, which quote
nothing of a file but a mistyped number. The result is a
:class:`~convtool.kernels.formats.MatrixData`; failures are :class:`KernelError` carrying
``path=``. Messages never repeat numpy's or scipy's, which may quote a file's header.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import stat

import numpy as np

from convtool.errors import KernelError
from convtool.kernels.formats import (
    MAX_KERNEL_SIDE,
    MatrixData,
    Scale,
    check_side,
    counted,
    looks_like_imagemagick,
    origin_from_centre,
    parse_centre,
    parse_imagemagick,
    parse_number,
    parse_rows,
    parse_scale,
    reading_a_file,
    side,
    tokens,
)

# A full-size kernel written with 17 significant digits is ~25 MB of text, as .npy 8.4 MB.
MAX_FILE_BYTES = 32 * 1024 * 1024
# Rows, headers, comments and blank lines together: 16 lines per row of the largest kernel.
MAX_FILE_LINES = 16 * MAX_KERNEL_SIDE
FILE_EXTENSIONS = (".txt", ".npy", ".mat", ".kernel")
HEADER_KEYS = ("description", "scale", "origin", "column", "row")
_HEADER_RE = re.compile(r"([A-Za-z][A-Za-z_-]*)\s*:\s*(.*)")
# Control characters other than whitespace: binary data, not a text kernel file.
_BINARY = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


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
            got = counted(found, MAX_KERNEL_SIDE)
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

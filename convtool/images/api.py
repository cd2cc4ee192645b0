"""Reading and writing images: the :class:`Image` type, :func:`read_image`, :func:`write_image`.

Images come in as an :class:`Image` whose ``pixels`` are floating point, shape ``(H, W, C)``
with ``C`` 1 (grey) or 3 (RGB), in the source's own value scale (0–255 for 8-bit, 0–65535
for 16-bit, as-is for 32-bit integer and float data), with alpha kept apart in ``alpha``.
Nothing is clipped or rounded until :func:`write_image`, and then only as its
``range_mode`` says (:func:`map_range`).

This module is the public face and the policy: formats and the depths they hold, what
becomes of alpha, EXIF orientation, grey, stdin/stdout and atomic writes, one-line errors.
The bytes of each format are :mod:`convtool.codecs`' (with Pillow, and around its limits:
16-bit colour, 16-bit PNG and PNM, TIFF through tifffile); range mapping and the cast to
an output depth are :mod:`convtool.ranges`'. Of image I/O, only this module and codecs
import Pillow.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from convtool.errors import (
    ConvtoolError,
    ImageReadError,
    ImageWriteError,
    ResourceLimitError,
    UsageError,
)
from convtool.images import tiles
from convtool.images.atomic import (
    atomic_write,
    remove_stale_temp_files,
    same_file,
    stale_temp_files,
)
from convtool.images.codecs import ENCODERS, Decoded, NeedsCodec, decode
from convtool.images.ranges import MAX_VALUES, RANGE_MODES, map_range, output_samples

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMAT_DEPTHS",
    "GRAY_WEIGHTS",
    "IMAGE_EXTENSIONS",
    "RANGE_MODES",
    "WRITE_EXTENSIONS",
    "Image",
    "atomic_write",
    "format_for",
    "is_image_path",
    "map_range",
    "output_depth",
    "read_band",
    "read_image",
    "remove_stale_temp_files",
    "same_file",
    "stale_temp_files",
    "write_image",
]

DEFAULT_MAX_PIXELS = 250_000_000
"""Largest width × height read by default (about 16 000 × 16 000; 3 GB as float32 RGB)."""

GRAY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights for R, G, B, applied in floating point by ``gray=True``."""

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif",
     ".ppm", ".pgm", ".pbm", ".pnm", ".npy", ".zarr"}
)  # fmt: skip
"""Extensions (lower case, with the dot) of the files read_image reads and batches look for."""

WRITE_EXTENSIONS = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
    ".bmp": "bmp", ".webp": "webp", ".gif": "gif",
    ".ppm": "pnm", ".pgm": "pnm", ".pnm": "pnm", ".npy": "npy", ".zarr": "zarr",
}  # fmt: skip
"""Output extension → format name."""

FORMAT_DEPTHS: dict[str, tuple[int | str, ...]] = {
    "png": (8, 16),
    "jpeg": (8,),
    "tiff": (8, 16, 32, "float"),
    "bmp": (8,),
    "webp": (8,),
    "gif": (8,),
    "pnm": (8, 16),
    "npy": (8, 16, 32, "float"),
    "zarr": (8, 16, 32, "float"),
    "zarr2": (8, 16, 32, "float"),
}
"""The depths each output format can hold (``"float"``: 32-bit float TIFF, raw ``.npy``).

``zarr`` is a zarr v3 store, ``zarr2`` a v2 one (both need ``pip install "convtool[large]"``).
"""

_KEEPS_ALPHA = frozenset({"png", "tiff", "webp", "npy", "zarr", "zarr2"})
_FOLDER_FORMATS = frozenset({"zarr", "zarr2"})
_PRECISIONS = {"single": np.float32, "double": np.float64}


@dataclass
class Image:
    """An image as floats in its source's value scale, with alpha kept apart.

    ``pixels``: (H, W, C) floating array, C = 1 (grey) or 3 (RGB); a 2-D array is taken as
    grey and given the channel axis. ``alpha``: (H, W) in the same value scale, or None.
    ``depth``: the source depth, 8, 16, 32 or ``"float"``; it gives the value scale
    (:attr:`max_value`) and the default output depth. ``format``/``source``: where it came
    from (e.g. ``"PNG"``, ``"photo.png"``; ``"-"`` for stdin).
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    depth: int | str = "float"
    format: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        self.pixels = np.asarray(self.pixels)
        if self.pixels.ndim == 2:
            self.pixels = self.pixels[:, :, np.newaxis]
        if self.pixels.ndim != 3 or self.pixels.shape[2] not in (1, 3):
            raise UsageError(
                f"Image pixels must have shape (H, W), (H, W, 1) or (H, W, 3), "
                f"got {self.pixels.shape}"
            )
        if self.alpha is not None:
            self.alpha = np.asarray(self.alpha)
            if self.alpha.shape != self.pixels.shape[:2]:
                raise UsageError(
                    f"Image alpha must have shape {self.pixels.shape[:2]}, got {self.alpha.shape}"
                )
        if self.depth not in (8, 16, 32, "float"):
            raise UsageError(f"Image depth must be 8, 16, 32 or 'float', got {self.depth!r}")

    @property
    def max_value(self) -> float | None:
        """The top of the value scale: 255, 65535, 4294967295, or None for float data."""
        return MAX_VALUES.get(self.depth)  # type: ignore[call-overload]

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        """Colour channels (1 or 3), alpha not counted."""
        return self.pixels.shape[2]


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Tell whether *path* has one of the readable extensions (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_image(
    source: str | os.PathLike[str],
    *,
    precision: str = "single",
    gray: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    stdin: BinaryIO | None = None,
) -> Image:
    """Read an image file (or ``"-"``: all of stdin) into an :class:`Image`.

    Formats: PNG, JPEG, TIFF, BMP, WebP, GIF (first frame), PNM and the others Pillow opens,
    told from the bytes, not the name; ``.npy`` arrays (H×W or H×W×C, C = 1 grey, 2 grey +
    alpha, 3 RGB, 4 RGBA; any numeric or bool dtype), and zarr arrays laid out the same way
    (a store folder; needs ``pip install "convtool[large]"``). EXIF orientation is applied. Values
    keep their scale; 1-bit and bool become 0/255; palettes become RGB(A); CMYK, YCbCr and
    LAB become RGB through Pillow. ``precision``: ``"single"`` (float32) or ``"double"``.
    ``gray``: colour → one BT.601 luma channel (:data:`GRAY_WEIGHTS`). ``max_pixels``:
    width × height checked from the header before decoding (None or 0: no limit).
    ``stdin``: a binary stream to use instead of ``sys.stdin.buffer`` for ``"-"``.
    """
    if precision not in _PRECISIONS:
        raise UsageError(f"precision must be 'single' or 'double', got {precision!r}")
    if max_pixels is not None and max_pixels < 0:
        raise UsageError(
            f"--max-pixels must be a positive number of pixels, or 0 for no limit, got {max_pixels}"
        )
    name = str(source)
    with _read_errors(name):
        if name == "-":
            data = (stdin if stdin is not None else sys.stdin.buffer).read()
            if not data:
                raise ImageReadError("no data on standard input", path=name)
            decoded = decode(data, name, max_pixels)
        else:
            path = Path(source)
            info = path.stat()
            if stat.S_ISDIR(info.st_mode) and tiles.is_zarr_store(path):
                array, reader = tiles.read_whole(path, max_pixels)
                decoded = Decoded(array, reader.has_alpha, reader.depth, reader.format)
                return _to_image(decoded, name, _PRECISIONS[precision], gray)
            if stat.S_ISDIR(info.st_mode):
                raise ImageReadError("is a directory, not an image", path=name)
            if stat.S_ISREG(info.st_mode) and info.st_size == 0:
                raise ImageReadError("empty file", path=name)
            # A pipe (/dev/stdin, <(...)) can be read only once: take its bytes, as for "-".
            src = path if stat.S_ISREG(info.st_mode) else path.read_bytes()
            decoded = decode(src, name, max_pixels)
    return _to_image(decoded, name, _PRECISIONS[precision], gray)


def read_band(
    reader: tiles.BandReader,
    start: int,
    stop: int,
    *,
    precision: str = "single",
    gray: bool = False,
) -> Image:
    """Rows ``start..stop-1`` of an image read band by band, as :func:`read_image` gives them.

    ``reader``: from :func:`convtool.images.tiles.open_reader`. Pixels and alpha are those
    rows of what :func:`read_image` returns for the whole file, value for value.
    """
    if precision not in _PRECISIONS:
        raise UsageError(f"precision must be 'single' or 'double', got {precision!r}")
    decoded = Decoded(reader.read(start, stop), reader.has_alpha, reader.depth, reader.format)
    return _to_image(decoded, reader.name, _PRECISIONS[precision], gray)


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored (H, W, C) samples upright, as ImageOps.exif_transpose does."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, -1)
    if orientation == 7:
        return array[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, 1)
    return array


def _to_image(decoded: Decoded, name: str, dtype: type, gray: bool) -> Image:
    """Orient, split alpha off, optionally reduce to grey, and convert to float.

    float64 values beyond float32's range become ±inf with ``precision="single"`` (no
    warning on stderr); filtering refuses them with a hint for ``--precision double``.
    """
    array = _apply_orientation(decoded.array, decoded.orientation)
    alpha = None
    with np.errstate(over="ignore"):
        if decoded.has_alpha:
            alpha = np.ascontiguousarray(array[:, :, -1], dtype=dtype)
            array = array[:, :, :-1]
        if gray and array.shape[2] == 3:
            pixels = (array.astype(np.float64) @ np.asarray(GRAY_WEIGHTS))[:, :, np.newaxis]
            pixels = pixels.astype(dtype)
        else:
            pixels = np.ascontiguousarray(array, dtype=dtype)
    return Image(pixels, alpha, decoded.depth, decoded.format, name)


@contextmanager
def _read_errors(name: str) -> Iterator[None]:
    """Turn whatever reading raises into a one-line ImageReadError/ResourceLimitError."""
    try:
        yield
    except ConvtoolError:
        raise
    except Exception as err:
        raise _read_error_for(err, name) from None


def _read_error_for(err: Exception, name: str) -> ConvtoolError:
    if isinstance(err, FileNotFoundError):
        return ImageReadError("no such file", path=name)
    if isinstance(err, IsADirectoryError):
        return ImageReadError("is a directory, not an image", path=name)
    if isinstance(err, PermissionError):
        return ImageReadError("permission denied", path=name)
    if isinstance(err, UnidentifiedImageError):
        return ImageReadError("not an image, or a format convtool cannot read", path=name)
    if isinstance(err, PILImage.DecompressionBombError):
        return ResourceLimitError(f"{_first_line(err)}; see --max-pixels", path=name)
    if isinstance(err, MemoryError):
        return ResourceLimitError("not enough memory to read this image", path=name)
    if isinstance(err, NeedsCodec):
        return ImageReadError(
            "this TIFF's compression needs the 'imagecodecs' package (pip install imagecodecs)",
            path=name,
        )
    if isinstance(err, OSError) and err.errno is not None:
        return ImageReadError(f"cannot read: {(err.strerror or str(err)).lower()}", path=name)
    return ImageReadError(f"truncated or corrupt image ({_first_line(err)})", path=name)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def format_for(path: str | os.PathLike[str], format: str | None = None) -> str:  # noqa: A002
    """Return the output format name for *path* (or the explicit *format*).

    Names: png, jpeg, tiff, bmp, webp, gif, pnm, npy, zarr (v3; zarr2 for v2); ``format`` also takes the extension
    spellings (jpg, tif, ppm, pgm). ``"-"`` (stdout) defaults to png. Unknown → UsageError.
    """
    known = ", ".join(sorted({ext.lstrip(".") for ext in WRITE_EXTENSIONS}))
    if format is not None:
        key = "." + str(format).lower().lstrip(".")
        if key in WRITE_EXTENSIONS:
            return WRITE_EXTENSIONS[key]
        if key[1:] in FORMAT_DEPTHS:
            return key[1:]
        raise UsageError(f"unknown output format {format!r}; supported: {known}")
    if str(path) == "-":
        return "png"
    suffix = Path(path).suffix.lower()
    if suffix in WRITE_EXTENSIONS:
        return WRITE_EXTENSIONS[suffix]
    what = f"extension {suffix!r}" if suffix else "no extension"
    raise UsageError(f"cannot write {str(path)!r}: {what}; use one of {known} (or --format)")


def write_image(
    dest: str | os.PathLike[str],
    image: Image,
    *,
    format: str | None = None,  # noqa: A002 - the name users know from the CLI
    depth: int | str | None = None,
    range_mode: str | None = None,
    compress_level: int = 1,
    stdout: BinaryIO | None = None,
) -> None:
    """Write *image* to *dest* atomically, or to stdout when dest is ``"-"``.

    ``format``: from dest's extension unless given (``"-"``: png); see :func:`format_for`.
    ``depth``: 8, 16, 32 or ``"float"`` as the format allows (:data:`FORMAT_DEPTHS`);
    None = the image's depth if the format holds it, else the deepest integer depth below
    it (so 16-bit → JPEG is 8-bit), 8 for float images; ``.npy`` defaults to raw float.
    Between 8 and 16 bits values are rescaled (×257, ÷257); float and 32-bit values are
    written as they are. ``range_mode`` (:func:`map_range`): integer outputs default to
    ``clip``, then round half to even; float outputs are raw unless a mode is given, which
    then maps into the image's own scale (0..1 for float images). Alpha is kept by PNG,
    TIFF, WebP and ``.npy`` (as the last channel), clipped, never rescaled; dropped by
    JPEG, BMP, GIF and PNM. ``compress_level`` 0–9: zlib level of PNG and TIFF.
    """
    dest_name = str(dest)
    fmt = format_for(dest_name, format)
    out_depth = output_depth(fmt, image.depth, depth)
    if not isinstance(compress_level, int) or not 0 <= compress_level <= 9:
        raise UsageError(f"compress level must be an integer from 0 to 9, got {compress_level!r}")
    alpha = image.alpha if fmt in _KEEPS_ALPHA else None
    colour, alpha = output_samples(image.pixels, alpha, image.depth, out_depth, range_mode)
    if fmt in _FOLDER_FORMATS:
        if dest_name == "-":
            raise UsageError(f"a {fmt} store is a folder; it cannot go to stdout (-o -)")
        tiles.write_whole(dest_name, fmt, colour, alpha, compress_level)
        return
    encode = ENCODERS[fmt]

    def write(fileobj: BinaryIO) -> None:
        try:
            encode(fileobj, colour, alpha, out_depth, compress_level)
        except (ValueError, TypeError, KeyError, struct.error) as err:
            message = f"cannot encode as {fmt.upper()}: {_first_line(err)}"
            raise ImageWriteError(message, path=dest_name) from None

    if dest_name == "-":
        buffer = io.BytesIO()
        write(buffer)
        out = stdout if stdout is not None else sys.stdout.buffer
        try:
            out.write(buffer.getvalue())
            out.flush()
        except OSError as err:
            raise ImageWriteError(f"cannot write to stdout: {_first_line(err)}", path="-") from None
        return
    atomic_write(dest_name, write)


def output_depth(fmt: str, image_depth: int | str, depth: int | str | None) -> int | str:
    """The depth written to *fmt* for an image of *image_depth* when *depth* is asked (or None)."""
    allowed = FORMAT_DEPTHS[fmt]
    if depth is not None:
        wanted = depth if depth == "float" else _as_int_depth(depth)
        if wanted not in allowed:
            holds = " or ".join(str(d) for d in allowed)
            raise UsageError(f"{fmt.upper()} cannot hold depth {depth!r}; it holds {holds}")
        return wanted
    if fmt == "npy":
        return "float"
    if image_depth in allowed:
        return image_depth
    if image_depth == "float":
        return 8
    return max(d for d in allowed if d != "float" and d <= image_depth)  # type: ignore[operator]


def _as_int_depth(depth: int | str) -> int | str:
    try:
        return int(depth)
    except (TypeError, ValueError):
        return depth

"""Reading and writing images: formats, bit depths, alpha, palettes, range mapping.

This is the only module that imports Pillow. Images come in as an :class:`Image` whose
``pixels`` are floating point, shape ``(H, W, C)`` with ``C`` 1 (grey) or 3 (RGB), in the
source's own value scale (0–255 for 8-bit, 0–65535 for 16-bit, as-is for 32-bit integer
and float data), with alpha kept apart in ``alpha``. Nothing is clipped or rounded until
:func:`write_image`, and then only as its ``range_mode`` says.

Pillow cannot hold 16-bit colour, so 16-bit RGB(A) and grey+alpha PNG/TIFF are decoded by
Pillow's own decoder in two byte planes (see :func:`_decode_16bit_colour`) and 16-bit PNG
and all PNM files are encoded here with zlib (:func:`_write_png16`, :func:`_write_pnm`);
TIFF is written with ``tifffile``, which also reads the TIFFs Pillow cannot open (float
colour, 16-bit grey+alpha, 32-bit integers).
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from convtool.atomic import atomic_write, remove_stale_temp_files, same_file, stale_temp_files
from convtool.errors import (
    ConvtoolError,
    ImageReadError,
    ImageWriteError,
    ResourceLimitError,
    UsageError,
)

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
    "read_image",
    "remove_stale_temp_files",
    "same_file",
    "stale_temp_files",
    "write_image",
]

DEFAULT_MAX_PIXELS = 250_000_000
"""Largest width × height read by default (about 16 000 × 16 000; 3 GB as float32 RGB)."""

# Our own header check (read_image's max_pixels) replaces Pillow's decompression-bomb guard,
# which would otherwise warn on stderr or raise before we can name the --max-pixels option.
PILImage.MAX_IMAGE_PIXELS = None

GRAY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights for R, G, B, applied in floating point by ``gray=True``."""

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif",
     ".ppm", ".pgm", ".pbm", ".pnm", ".npy"}
)  # fmt: skip
"""Extensions (lower case, with the dot) of the files read_image reads and batches look for."""

WRITE_EXTENSIONS = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
    ".bmp": "bmp", ".webp": "webp", ".gif": "gif",
    ".ppm": "pnm", ".pgm": "pnm", ".pnm": "pnm", ".npy": "npy",
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
}
"""The depths each output format can hold (``"float"``: 32-bit float TIFF, raw ``.npy``)."""

_KEEPS_ALPHA = frozenset({"png", "tiff", "webp", "npy"})
RANGE_MODES = ("clip", "abs", "offset", "rescale")
_MAX_VALUES = {8: 255, 16: 65535, 32: 4294967295}
_INT_DTYPES = {8: np.uint8, 16: np.uint16, 32: np.uint32}
_PRECISIONS = {"single": np.float32, "double": np.float64}
_NPY_MAGIC = b"\x93NUMPY"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


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
        return _MAX_VALUES.get(self.depth)  # type: ignore[call-overload]

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


@dataclass
class _Decoded:
    """Raw samples from a decoder, before orientation, alpha split, grey and precision."""

    array: np.ndarray  # (H, W, C) numeric, C in 1..4, in the source's scale
    has_alpha: bool  # the last channel is alpha
    depth: int | str
    format: str
    orientation: int = 1  # EXIF/TIFF orientation tag, 1 = as stored


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
    alpha, 3 RGB, 4 RGBA; any numeric or bool dtype). EXIF orientation is applied. Values
    keep their scale; 1-bit and bool become 0/255; palettes become RGB(A); CMYK, YCbCr and
    LAB become RGB through Pillow. ``precision``: ``"single"`` (float32) or ``"double"``.
    ``gray``: colour → one BT.601 luma channel (:data:`GRAY_WEIGHTS`). ``max_pixels``:
    width × height checked from the header before decoding (None or 0: no limit).
    ``stdin``: a binary stream to use instead of ``sys.stdin.buffer`` for ``"-"``.
    """
    if precision not in _PRECISIONS:
        raise UsageError(f"precision must be 'single' or 'double', got {precision!r}")
    if max_pixels is not None and max_pixels < 0:
        raise UsageError(f"max_pixels must be positive, or 0/None for no limit, got {max_pixels}")
    name = str(source)
    with _read_errors(name):
        if name == "-":
            data = (stdin if stdin is not None else sys.stdin.buffer).read()
            if not data:
                raise ImageReadError("no data on standard input", path=name)
            decoded = _decode(data, name, max_pixels)
        else:
            path = Path(source)
            info = path.stat()
            if stat.S_ISDIR(info.st_mode):
                raise ImageReadError("is a directory, not an image", path=name)
            if stat.S_ISREG(info.st_mode) and info.st_size == 0:
                raise ImageReadError("empty file", path=name)
            # A pipe (/dev/stdin, <(...)) can be read only once: take its bytes, as for "-".
            src = path if stat.S_ISREG(info.st_mode) else path.read_bytes()
            decoded = _decode(src, name, max_pixels)
    return _to_image(decoded, name, _PRECISIONS[precision], gray)


def _decode(src: Path | bytes, name: str, max_pixels: int | None) -> _Decoded:
    """Pick the decoder from the first bytes: ``.npy``, else Pillow (tifffile for some TIFFs)."""
    with _fresh(src) as fileobj:
        head = fileobj.read(8)
    if head.startswith(_NPY_MAGIC):
        return _decode_npy(src, name, max_pixels)
    try:
        return _decode_pillow(src, name, max_pixels)
    except UnidentifiedImageError:
        if head.startswith(_TIFF_MAGICS):  # float colour, 16-bit grey+alpha, 64-bit float, ...
            return _decode_tifffile(src, name, max_pixels)
        raise


def _fresh(src: Path | bytes) -> BinaryIO:
    """Open *src* anew: decoding 16-bit colour takes two passes over the same bytes."""
    return io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")  # noqa: SIM115


def _check_size(width: int, height: int, name: str, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageReadError(f"image has no pixels ({width}×{height})", path=name)
    if max_pixels and width * height > max_pixels:
        raise ResourceLimitError(
            f"image is {width}×{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,}; raise it with --max-pixels N (0 for no limit)",
            path=name,
        )


def _decode_npy(src: Path | bytes, name: str, max_pixels: int | None) -> _Decoded:
    """Read a ``.npy`` array, checking its header (shape, dtype) before loading the data."""
    with _fresh(src) as fileobj:
        version = np.lib.format.read_magic(fileobj)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fileobj)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fileobj)
        else:
            raise ImageReadError(f".npy format version {version} is not supported", path=name)
        if len(shape) not in (2, 3) or (len(shape) == 3 and not 1 <= shape[2] <= 4):
            raise ImageReadError(
                f".npy array has shape {shape}; expected (H, W) or (H, W, C) with C from 1 to 4",
                path=name,
            )
        if dtype.kind not in "biuf":
            raise ImageReadError(f".npy array has dtype {dtype}, not a number type", path=name)
        _check_size(shape[1], shape[0], name, max_pixels)
        fileobj.seek(0)
        array = np.load(fileobj, allow_pickle=False)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    channels = array.shape[2]
    if array.dtype == np.bool_:
        array, depth = array.astype(np.uint8) * 255, 8
    else:
        depth = _depth_of_dtype(array.dtype)
    return _Decoded(array, channels in (2, 4), depth, "NPY")


def _depth_of_dtype(dtype: np.dtype) -> int | str:
    if dtype.kind == "f":
        return "float"
    if dtype == np.uint8:
        return 8
    if dtype.itemsize <= 2:
        return 16
    return 32


# Pillow decodes 16-bit colour to 8 bits by keeping each sample's high byte ("RGB;16B" reads
# the first byte of every big-endian pair). Decoding again with the opposite byte order
# keeps the low bytes instead; the two passes together give the exact 16-bit samples.
_RAWMODE_16BIT_COLOUR = re.compile(r"^(RGB|RGBA|RGBX);16([BLN])$")


def _decode_pillow(src: Path | bytes, name: str, max_pixels: int | None) -> _Decoded:
    with _fresh(src) as fileobj, PILImage.open(fileobj) as im:
        _check_size(im.width, im.height, name, max_pixels)
        fmt = im.format or "unknown"
        rawmode = _tile_rawmode(im)  # before anything loads the image (PNG's getexif does)
        if fmt == "TIFF" and im.mode == "I":
            # Pillow reads 32-bit integer TIFF as signed; tifffile keeps uint32/int16 exact.
            try:
                return _decode_tifffile(src, name, max_pixels)
            except _NeedsCodec:
                pass
        if _RAWMODE_16BIT_COLOUR.match(rawmode) or rawmode == "LA;16B":
            array, has_alpha, orientation = _decode_16bit_colour(src, rawmode)
            return _Decoded(array, has_alpha, 16, fmt, orientation)
        if fmt == "PPM" and im.mode == "RGB" and _ppm_maxval(im) > 255 and _is_binary_ppm(im):
            return _Decoded(_decode_ppm16(src, im), False, 16, fmt)
        im.load()  # decode now, inside the error mapping: truncated data fails here
        return _pillow_samples(im, fmt, _orientation(im), name)


def _tile_rawmode(im: PILImage.Image) -> str:
    """The raw mode of Pillow's first decoder tile (how the stored bytes are laid out)."""
    if not im.tile:
        return ""
    args = im.tile[0].args
    return args if isinstance(args, str) else str(args[0]) if args else ""


def _with_rawmode(im: PILImage.Image, rawmode: str) -> None:
    """Make every decoder tile of the (unloaded) *im* unpack its bytes as *rawmode*."""
    tiles = []
    for tile in im.tile:
        args = rawmode if isinstance(tile.args, str) else (rawmode, *tile.args[1:])
        tiles.append(tile._replace(args=args))
    im.tile = tiles


def _decode_16bit_colour(src: Path | bytes, rawmode: str) -> tuple[np.ndarray, bool, int]:
    """Decode 16-bit RGB, RGBA or grey+alpha exactly with Pillow's decoder (PNG, TIFF).

    Returns the samples, whether the last one is alpha, and the orientation tag.
    """
    if rawmode == "LA;16B":
        # Grey+alpha has 4 bytes a pixel, as RGBA: unpacked as "RGBA" it keeps all 4 bytes.
        with _fresh(src) as fileobj, PILImage.open(fileobj) as im:
            _with_rawmode(im, "RGBA")
            im.load()
            raw = np.asarray(im).astype(np.uint16)
            orientation = _orientation(im)
        return (raw[:, :, 0::2] << 8) | raw[:, :, 1::2], True, orientation
    bands, order = _RAWMODE_16BIT_COLOUR.match(rawmode).groups()  # type: ignore[union-attr]
    if order == "N":
        order = "L" if sys.byteorder == "little" else "B"
    planes = []
    for unpack in (rawmode, f"{bands};16{'L' if order == 'B' else 'B'}"):
        with _fresh(src) as fileobj, PILImage.open(fileobj) as im:
            _with_rawmode(im, unpack)
            im.load()
            planes.append(np.asarray(im).astype(np.uint16))
            orientation = _orientation(im)
    high, low = planes
    channels = 3 if bands == "RGBX" else len(bands)
    return ((high << 8) | low)[:, :, :channels], bands == "RGBA", orientation


def _ppm_maxval(im: PILImage.Image) -> int:
    args = im.tile[0].args if im.tile else ()
    return int(args[1]) if isinstance(args, tuple) and len(args) > 1 else 255


def _is_binary_ppm(im: PILImage.Image) -> bool:
    # Plain-text (P3) colour keeps Pillow's 8-bit reading: a rare case not worth a parser.
    return bool(im.tile) and im.tile[0].codec_name == "ppm"


def _decode_ppm16(src: Path | bytes, im: PILImage.Image) -> np.ndarray:
    """Read 16-bit binary PPM samples (Pillow would keep 8 bits), scaled to 0–65535."""
    tile = im.tile[0]
    count = im.width * im.height * 3
    with _fresh(src) as fileobj:
        fileobj.seek(tile.offset)
        data = fileobj.read(count * 2)
    if len(data) < count * 2:
        raise OSError("image file is truncated")
    samples = np.frombuffer(data, dtype=">u2").reshape(im.height, im.width, 3)
    maxval = _ppm_maxval(im)
    if maxval == 65535:
        return samples.astype(np.uint16)
    # Pillow scales other maxvals to the full range for grey; do the same for colour.
    return np.rint(samples * (65535 / maxval)).astype(np.uint16)


class _NeedsCodec(Exception):
    """Internal: tifffile lacks the codec (imagecodecs is not installed)."""


def _pillow_samples(im: PILImage.Image, fmt: str, orientation: int, name: str) -> _Decoded:
    """Turn a loaded Pillow image into samples: palette → RGB(A), 1-bit → 0/255, etc."""
    mode = im.mode
    transparent = "transparency" in im.info
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or transparent else "RGB")
    elif mode == "L" and transparent:
        im = im.convert("LA")
    elif mode == "RGB" and transparent:
        im = im.convert("RGBA")
    elif mode in ("1", "La", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert({"1": "L", "La": "LA", "RGBa": "RGBA"}.get(mode, "RGB"))
    mode = im.mode
    array = np.asarray(im)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if mode in ("L", "LA", "RGB", "RGBA"):
        depth: int | str = 8
    elif mode.startswith("I;16"):
        depth = 16
    elif mode == "I":
        depth = 16 if fmt == "PPM" or _tiff_bits(im) == 16 else 32
    elif mode == "F":
        depth = "float"
    else:
        raise ImageReadError(f"unsupported image mode {mode!r}", path=name)
    return _Decoded(array, mode in ("LA", "RGBA"), depth, fmt, orientation)


def _tiff_bits(im: PILImage.Image) -> int:
    bits = getattr(im, "tag_v2", {}).get(258, (0,))
    return int(bits[0] if isinstance(bits, tuple) else bits)


def _orientation(im: PILImage.Image) -> int:
    """The EXIF orientation tag (1–8; 1 also when absent or unreadable)."""
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # a damaged EXIF block should not stop reading the pixels
        return 1
    return value if 1 <= value <= 8 else 1


def _decode_tifffile(src: Path | bytes, name: str, max_pixels: int | None) -> _Decoded:
    """Read grey or RGB(A) TIFF samples exactly with tifffile (any integer or float type)."""
    tifffile = _import_tifffile()
    with _fresh(src) as fileobj, tifffile.TiffFile(fileobj) as tif:
        page = tif.pages[0]
        _check_size(page.imagewidth, page.imagelength, name, max_pixels)
        photometric = int(page.photometric)
        if photometric not in (1, 2):  # MINISBLACK, RGB
            raise ImageReadError(
                f"TIFF photometric interpretation {page.photometric.name} is not supported",
                path=name,
            )
        try:
            array = page.asarray()
        except (KeyError, ValueError) as err:
            if "imagecodecs" in str(err):
                raise _NeedsCodec from None
            raise
        orientation_tag = page.tags.get(274)
        orientation = int(orientation_tag.value) if orientation_tag else 1
        axes = page.axes
    if axes.startswith("S"):  # planar configuration: one plane a sample
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    # Grey takes 1 sample (+ alpha), RGB 3 (+ alpha); other sample counts are not images here.
    if array.ndim != 3 or array.shape[2] not in ((1, 2) if photometric == 1 else (3, 4)):
        raise ImageReadError(f"TIFF layout {axes} {array.shape} is not supported", path=name)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    has_alpha = array.shape[2] in (2, 4)
    return _Decoded(array, has_alpha, _depth_of_dtype(array.dtype), "TIFF", orientation)


def _import_tifffile() -> Any:
    try:
        import tifffile
    except ImportError:  # a declared dependency, but say what is missing rather than crash
        raise ConvtoolError(
            "this TIFF needs the 'tifffile' package: pip install tifffile"
        ) from None
    return tifffile


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


def _to_image(decoded: _Decoded, name: str, dtype: type, gray: bool) -> Image:
    """Orient, split alpha off, optionally reduce to grey, and convert to float."""
    array = _apply_orientation(decoded.array, decoded.orientation)
    alpha = None
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
    if isinstance(err, _NeedsCodec):
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

    Names: png, jpeg, tiff, bmp, webp, gif, pnm, npy; ``format`` also takes the extension
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


def map_range(pixels: np.ndarray, mode: str, max_value: float) -> np.ndarray:
    """Map values into 0..max_value as an integer output needs; return floats, unrounded.

    ``clip``: values below 0 become 0, above max_value become max_value. ``abs``: |x|, then
    clip. ``offset``: add half the range ((max_value + 1) / 2: 128 for 8-bit, 32768 for
    16-bit; max_value / 2 for a 0..1 scale), then clip — zero lands mid-grey. ``rescale``:
    the minimum over all channels goes to 0, the maximum to max_value, linearly; a constant
    image maps to 0; NaN and infinities are left out of the minimum and maximum. NaN always
    becomes 0.
    """
    if mode not in RANGE_MODES:
        raise UsageError(f"range mode must be one of {', '.join(RANGE_MODES)}; got {mode!r}")
    x = np.asarray(pixels)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    if mode == "abs":
        x = np.abs(x)
    elif mode == "offset":
        x = x + ((max_value + 1) / 2 if max_value > 1 else max_value / 2)
    elif mode == "rescale":
        low, high = _finite_min_max(x)
        if high == low:
            return np.zeros_like(x)
        x = (x - low) * (max_value / (high - low))
    # fmax/fmin rather than clip: NaN becomes 0 (fmax returns the non-NaN argument).
    out = np.fmax(x, 0.0, out=None if x is pixels else x)
    return np.fmin(out, max_value, out=out)


def _finite_min_max(x: np.ndarray) -> tuple[float, float]:
    low, high = float(np.nanmin(x, initial=np.inf)), float(np.nanmax(x, initial=-np.inf))
    if np.isfinite(low) and np.isfinite(high):
        return low, high
    finite = x[np.isfinite(x)]  # rare: infinities present (or nothing finite at all)
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)


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
    out_depth = _output_depth(fmt, image.depth, depth)
    if not isinstance(compress_level, int) or not 0 <= compress_level <= 9:
        raise UsageError(f"compress level must be an integer from 0 to 9, got {compress_level!r}")
    colour, alpha = _output_samples(image, out_depth, range_mode, keep_alpha=fmt in _KEEPS_ALPHA)
    encode = _ENCODERS[fmt]

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


def _output_depth(fmt: str, image_depth: int | str, depth: int | str | None) -> int | str:
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


def _output_samples(
    image: Image, depth: int | str, range_mode: str | None, *, keep_alpha: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Map, round and cast colour and alpha for the output depth."""
    alpha = image.alpha if keep_alpha else None
    if depth == "float":
        colour = image.pixels
        if range_mode is not None:
            scale = image.max_value or 1.0
            colour = map_range(colour, range_mode, scale)
            alpha = None if alpha is None else map_range(alpha, "clip", scale)
        return colour, alpha
    max_value = _MAX_VALUES[depth]  # type: ignore[index]
    factor = _rescale_factor(image.depth, depth)
    dtype = _INT_DTYPES[depth]  # type: ignore[index]
    colour = map_range(_times(image.pixels, factor, depth), range_mode or "clip", max_value)
    colour = _round_to(colour, dtype)
    if alpha is not None:
        alpha = _round_to(map_range(_times(alpha, factor, depth), "clip", max_value), dtype)
    return colour, alpha


def _rescale_factor(source: int | str, target: int | str) -> float:
    """8 ↔ 16 bits change scale (255 ↔ 65535); 32-bit and float values are kept as they are."""
    if source in (8, 16) and target in (8, 16) and source != target:
        return _MAX_VALUES[target] / _MAX_VALUES[source]  # type: ignore[index]
    return 1.0


def _times(values: np.ndarray, factor: float, depth: int | str) -> np.ndarray:
    # float32 holds 8/16-bit values exactly; 32-bit outputs need float64 to round right.
    values = values.astype(np.float64) if depth == 32 or values.dtype.kind != "f" else values
    return values * factor if factor != 1.0 else values


def _round_to(values: np.ndarray, dtype: type) -> np.ndarray:
    """Round half to even (np.rint) and cast; *values* are already in range, without NaN."""
    return np.rint(values, out=values).astype(dtype)


def _stacked(colour: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    if alpha is None:
        return colour
    return np.concatenate([colour, alpha[:, :, np.newaxis].astype(colour.dtype)], axis=2)


def _pil_image(colour: np.ndarray, alpha: np.ndarray | None) -> PILImage.Image:
    """An 8-bit Pillow image (L, LA, RGB or RGBA) from uint8 samples."""
    samples = _stacked(colour, alpha)  # Pillow infers L, LA, RGB or RGBA from the shape
    return PILImage.fromarray(samples[:, :, 0] if samples.shape[2] == 1 else samples)


_Encoder = Callable[[BinaryIO, np.ndarray, Any, Any, int], None]


def _encode_png(f: BinaryIO, colour: np.ndarray, alpha: Any, depth: Any, level: int) -> None:
    if depth == 16:
        _write_png16(f, _stacked(colour, alpha), level)
    else:
        _pil_image(colour, alpha).save(f, "PNG", compress_level=level)


def _encode_jpeg(f: BinaryIO, colour: np.ndarray, alpha: Any, depth: Any, level: int) -> None:
    # Quality 95 without chroma subsampling (4:4:4): filtered edges keep their colour.
    _pil_image(colour, None).save(f, "JPEG", quality=95, subsampling=0)


def _encode_bmp(f: BinaryIO, colour: np.ndarray, alpha: Any, depth: Any, level: int) -> None:
    _pil_image(colour, None).save(f, "BMP")


def _encode_webp(f: BinaryIO, colour: np.ndarray, alpha: Any, depth: Any, level: int) -> None:
    # Lossless: convtool's results are exact, and WebP has no grey mode, so grey → RGB.
    image = _pil_image(colour, alpha)
    if image.mode in ("L", "LA"):
        image = image.convert("RGBA" if image.mode == "LA" else "RGB")
    image.save(f, "WEBP", lossless=True)


def _encode_gif(f: BinaryIO, colour: np.ndarray, alpha: Any, depth: Any, level: int) -> None:
    # Grey is exact (a 256-grey palette); colour is reduced to a 256-colour palette by Pillow.
    _pil_image(colour, None).save(f, "GIF")


def _encode_pnm(f: BinaryIO, colour: np.ndarray, alpha: Any, depth: Any, level: int) -> None:
    _write_pnm(f, colour)


def _encode_tiff(f: BinaryIO, colour: np.ndarray, alpha: Any, depth: Any, level: int) -> None:
    # Float TIFF is 32-bit whatever the precision: the format most readers take (.npy for more).
    tifffile = _import_tifffile()
    samples = _stacked(colour.astype(np.float32) if depth == "float" else colour, alpha)
    tifffile.imwrite(
        f,
        samples if samples.shape[2] > 1 else samples[:, :, 0],
        photometric="rgb" if colour.shape[2] == 3 else "minisblack",
        extrasamples=["unassalpha"] if alpha is not None else None,
        compression="zlib" if level else None,
        compressionargs={"level": level} if level else None,
        metadata=None,  # no JSON ImageDescription: a plain TIFF
    )


def _encode_npy(f: BinaryIO, colour: np.ndarray, alpha: Any, depth: Any, level: int) -> None:
    samples = _stacked(colour, alpha)
    np.save(f, samples[:, :, 0] if samples.shape[2] == 1 else samples, allow_pickle=False)


_ENCODERS: dict[str, _Encoder] = {
    "png": _encode_png,
    "jpeg": _encode_jpeg,
    "bmp": _encode_bmp,
    "webp": _encode_webp,
    "gif": _encode_gif,
    "pnm": _encode_pnm,
    "tiff": _encode_tiff,
    "npy": _encode_npy,
}


def _write_pnm(f: BinaryIO, colour: np.ndarray) -> None:
    """Binary PGM (P5, grey) or PPM (P6, RGB), maxval 255 or 65535, big-endian samples."""
    height, width, channels = colour.shape
    magic = b"P5" if channels == 1 else b"P6"
    maxval = 255 if colour.dtype == np.uint8 else 65535
    f.write(b"%s\n%d %d\n%d\n" % (magic, width, height, maxval))
    f.write(colour.astype(">u2" if maxval == 65535 else np.uint8).tobytes())


_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels → grey, grey+alpha, RGB, RGBA
_PNG_BAND_BYTES = 8 << 20  # rows filtered at once: bounds memory for any image size


def _write_png16(f: BinaryIO, samples: np.ndarray, level: int) -> None:
    """Write a 16-bit PNG (Pillow cannot): big-endian samples, Sub filter, zlib *level*.

    Every row uses filter 1 (Sub: each byte minus the same byte of the pixel to its left).
    On photographs it compresses within about 2% of libpng's per-row adaptive choice, at
    a fraction of the cost, and it needs no unfiltered row above, so bands stay independent.
    """
    height, width, channels = samples.shape
    f.write(b"\x89PNG\r\n\x1a\n")
    header = struct.pack(">IIBBBBB", width, height, 16, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    _png_chunk(f, b"IHDR", header)
    rows = samples.astype(">u2").reshape(height, -1).view(np.uint8)
    bpp = 2 * channels
    band = max(1, _PNG_BAND_BYTES // rows.shape[1])
    compressor = zlib.compressobj(level)
    for start in range(0, height, band):  # a loop over bands of rows, each filtered at once
        block = rows[start : start + band]
        filtered = np.empty((block.shape[0], block.shape[1] + 1), np.uint8)
        filtered[:, 0] = 1  # the filter type byte: Sub
        filtered[:, 1 : bpp + 1] = block[:, :bpp]
        np.subtract(block[:, bpp:], block[:, :-bpp], out=filtered[:, bpp + 1 :])  # mod 256
        data = compressor.compress(filtered.tobytes())
        if data:
            _png_chunk(f, b"IDAT", data)
    _png_chunk(f, b"IDAT", compressor.flush())
    _png_chunk(f, b"IEND", b"")


def _png_chunk(f: BinaryIO, kind: bytes, data: bytes) -> None:
    f.write(struct.pack(">I", len(data)) + kind)
    f.write(data)
    f.write(struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

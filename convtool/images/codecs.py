"""Format codecs: file bytes → raw sample arrays, with Pillow and where Pillow falls short.

Decoding gives a :class:`Decoded`: numeric samples ``(H, W, C)`` in the source's own scale,
alpha (if any) still the last channel, orientation not yet applied, with the file's
metadata and, for animations and multi-page TIFFs, the later frames and their timing;
:mod:`convtool.images` turns that into an :class:`~convtool.images.Image`. Encoding is
:mod:`convtool.images.encoders`' (its ``ENCODERS`` are re-exported here).

Pillow cannot hold 16-bit colour, so 16-bit RGB(A) and grey+alpha PNG/TIFF are decoded by
Pillow's own decoder in two byte planes (see :func:`_decode_16bit_colour`) and 16-bit
binary PPM is read here (:func:`_decode_ppm16`); ``tifffile`` (imported lazily) reads the
TIFFs Pillow cannot open (float colour, 16-bit grey+alpha, 32-bit integers).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from convtool.errors import ImageReadError, ResourceLimitError
from convtool.images import metadata as meta
from convtool.images.encoders import ENCODERS
from convtool.images.encoders import import_tifffile as _import_tifffile
from convtool.images.frames import Timing

__all__ = ["ENCODERS", "Decoded", "NeedsCodec", "decode"]  # ENCODERS: encoders' registry

# Our own header check (read_image's max_pixels, applied in _check_size) replaces Pillow's
# decompression-bomb guard, which would otherwise warn on stderr or raise before we can
# name the --max-pixels option.
PILImage.MAX_IMAGE_PIXELS = None

_NPY_MAGIC = b"\x93NUMPY"
# Formats whose frames are frames (or pages) of one picture. Pillow gives others frames
# too that are not: MPO's second JPEG (a phone's depth map or preview), PSD's layers,
# ICO's sizes; of those only the first frame is read.
_FRAMED = frozenset({"GIF", "PNG", "WEBP", "TIFF"})
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


@dataclass
class Decoded:
    """Raw samples from a decoder, before orientation, alpha split, grey and precision."""

    array: np.ndarray  # (H, W, C) numeric, C in 1..4, in the source's scale
    has_alpha: bool  # the last channel is alpha
    depth: int | str
    format: str
    orientation: int = 1  # EXIF/TIFF orientation tag, 1 = as stored
    metadata: meta.Metadata = field(default_factory=meta.Metadata)  # of the file (frame 1)
    more: list[Decoded] = field(default_factory=list)  # the later frames or pages
    timing: Timing | None = None  # an animation's, for all its frames


def decode(src: Path | bytes, name: str, max_pixels: int | None, frames: str = "all") -> Decoded:
    """Pick the decoder from the first bytes: ``.npy``, else Pillow (tifffile for some TIFFs).

    ``frames``: ``"all"`` frames or pages, or only the ``"first"``.
    """
    with _fresh(src) as fileobj:
        head = fileobj.read(8)
    if head.startswith(_NPY_MAGIC):
        return _decode_npy(src, name, max_pixels)
    tiff = head.startswith(_TIFF_MAGICS)
    with _quiet_decoders(native=tiff):
        try:
            decoded = _decode_pillow(src, name, max_pixels, frames == "all")
        except UnidentifiedImageError:
            if not tiff:
                raise
            # float colour, 16-bit grey+alpha, float64, ...
            decoded = _decode_tifffile(src, name, max_pixels, frames == "all")
        if tiff:
            with _fresh(src) as fileobj:
                decoded.metadata = _tiff_metadata(fileobj)
    return decoded


def _tiff_metadata(fileobj: BinaryIO) -> meta.Metadata:
    try:
        return meta.from_tiff(fileobj)
    except Exception:  # damaged tags should not stop reading the pixels
        return meta.Metadata()


@contextlib.contextmanager
def _quiet_decoders(native: bool) -> Iterator[None]:
    """Keep decoders' own chatter off stderr: a damaged file gets one error line, ours.

    Pillow warns (``Truncated File Read``, ``Corrupt EXIF data``), tifffile logs through
    ``logging`` and libtiff, inside Pillow, prints its errors from C straight to file
    descriptor 2 (``ZIPDecode: Decoding error ...``). Whatever they say is either harmless
    (the image still decodes) or followed by an exception that becomes our message. With
    ``native``, file descriptor 2 itself points at a scratch file meanwhile (only for
    TIFF, the one format whose C decoder prints).
    """
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings(), _native_stderr_discarded(native):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _native_stderr_discarded(enabled: bool) -> Iterator[None]:
    saved = None
    if enabled:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            saved = os.dup(2)
    if saved is None:
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _fresh(src: Path | bytes) -> BinaryIO:
    """Open *src* anew: decoding 16-bit colour takes two passes over the same bytes."""
    return io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")  # noqa: SIM115


def _check_size(
    width: int,
    height: int,
    name: str,
    max_pixels: int | None,
    frames: int = 1,
    total: int | None = None,
) -> None:
    """Refuse an empty image, or more pixels (over all *frames*) than *max_pixels*.

    *total*: the pixels of all frames when they differ in size (TIFF pages).
    """
    if width <= 0 or height <= 0:
        raise ImageReadError(f"image has no pixels ({width}×{height})", path=name)
    total = width * height * frames if total is None else total
    if max_pixels and total > max_pixels:
        size = f"{width}×{height}" if frames == 1 else f"{frames} frames of {width}×{height}"
        raise ResourceLimitError(
            f"image is {size} = {total:,} pixels, over the limit of "
            f"{max_pixels:,}; raise it with --max-pixels N (0 for no limit)"
            + (", or read one frame with --frames first" if frames > 1 else ""),
            path=name,
        )


def _decode_npy(src: Path | bytes, name: str, max_pixels: int | None) -> Decoded:
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
    return Decoded(array, channels in (2, 4), depth, "NPY")


def _depth_of_dtype(dtype: np.dtype) -> int | str:
    if dtype.kind == "f":
        return "float"
    if dtype == np.uint8:
        return 8
    if dtype.itemsize <= 2:
        return 16
    return 32


def _decode_pillow(
    src: Path | bytes, name: str, max_pixels: int | None, all_frames: bool
) -> Decoded:
    """The first frame with the file's metadata, then (if asked) the others and their timing."""
    with _fresh(src) as fileobj, PILImage.open(fileobj) as im:
        count = getattr(im, "n_frames", 1) if all_frames and im.format in _FRAMED else 1
        _check_size(im.width, im.height, name, max_pixels, count)
        fmt = im.format or "unknown"
        first = _pillow_frame(src, im, 0, fmt, name, max_pixels)
        if fmt != "TIFF":  # TIFF tags are read apart, from the file (see decode)
            first.metadata = _pillow_metadata(im)
        if count == 1:
            return first
        durations, disposals, plays = [_duration(im)], [_disposal(im)], _plays(im)
        width, height, total = im.width, im.height, im.width * im.height
        for index in range(1, count):
            im.seek(index)
            if fmt == "TIFF" and int(getattr(im, "tag_v2", {}).get(254, 0)) & 1:
                continue  # a reduced-resolution copy (a preview), not a page
            _check_size(im.width, im.height, name, None)
            total += im.width * im.height  # TIFF pages may differ in size
            _check_size(width, height, name, max_pixels, count, total)
            frame = _pillow_frame(src, im, index, fmt, name, max_pixels)
            if fmt != "TIFF":
                frame.orientation = first.orientation  # EXIF is the file's, not a frame's
            first.more.append(frame)
            durations.append(_duration(im))
            disposals.append(_disposal(im))
        if fmt != "TIFF":  # pages are not an animation
            first.timing = Timing(tuple(durations), tuple(disposals), plays)
        return first


def _pillow_frame(
    src: Path | bytes, im: PILImage.Image, index: int, fmt: str, name: str, max_pixels: int | None
) -> Decoded:
    """One frame (or page) of an opened image, already seeked to *index*."""
    rawmode = _tile_rawmode(im)  # before anything loads the image (PNG's getexif does)
    if fmt == "TIFF" and im.mode == "I":
        # Pillow reads 32-bit integer TIFF as signed; tifffile keeps uint32/int16 exact.
        try:
            return _decode_tifffile_page(src, name, max_pixels, index)
        except NeedsCodec:
            pass
    if fmt == "TIFF" and _is_planar(im) and _tiff_bits(im) > 8:
        # Pillow reads deep samples stored one plane each as 8-bit (uncompressed), and the
        # two-pass byte trick below cannot fix planes: tifffile reads them exactly.
        return _decode_tifffile_page(src, name, max_pixels, index)
    if _RAWMODE_16BIT_COLOUR.match(rawmode) or rawmode == "LA;16B":
        array, has_alpha, orientation = _decode_16bit_colour(src, rawmode, index)
        return Decoded(array, has_alpha, 16, fmt, orientation)
    if fmt == "PPM" and im.mode == "RGB" and _ppm_maxval(im) > 255 and _is_binary_ppm(im):
        return Decoded(_decode_ppm16(src, im), False, 16, fmt)
    im.load()  # decode now, inside the error mapping: truncated data fails here
    return _pillow_samples(im, fmt, _orientation(im), name)


def _pillow_metadata(im: PILImage.Image) -> meta.Metadata:
    """The file's metadata as Pillow reads it (PNG text chunks after the pixels included)."""
    try:
        text = im.text if im.format == "PNG" else None  # loads the pixels if not yet done
        return meta.from_pillow(im.info, text)
    except Exception:  # damaged metadata should not stop reading the pixels
        return meta.Metadata()


_GIF_DISPOSALS = {0: "none", 1: "none", 2: "background", 3: "previous"}
_APNG_DISPOSALS = {0: "none", 1: "background", 2: "previous"}


def _duration(im: PILImage.Image) -> float:
    return float(im.info.get("duration") or 0.0)


def _disposal(im: PILImage.Image) -> str:
    if im.format == "GIF":
        return _GIF_DISPOSALS.get(getattr(im, "disposal_method", 0), "none")
    if im.format == "PNG":
        return _APNG_DISPOSALS.get(im.info.get("disposal", 0), "none")
    return "none"  # WebP frames come composited


def _plays(im: PILImage.Image) -> int:
    """How many times the animation plays (0: for ever)."""
    loop = im.info.get("loop")
    if im.format == "GIF":  # the loop extension counts repeats; without it, one play
        return 1 if loop is None else (0 if loop == 0 else int(loop) + 1)
    return int(loop or 0)


class NeedsCodec(Exception):
    """Internal: tifffile lacks the codec (imagecodecs is not installed)."""


def _pillow_samples(im: PILImage.Image, fmt: str, orientation: int, name: str) -> Decoded:
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
    return Decoded(array, mode in ("LA", "RGBA"), depth, fmt, orientation)


def _is_planar(im: PILImage.Image) -> bool:
    """A TIFF stored one plane per sample (PlanarConfiguration 2)."""
    return getattr(im, "tag_v2", {}).get(284, 1) == 2


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


# --------------------------------------------------------------------------------------------
# Beyond Pillow: 16-bit colour, 16-bit PPM, TIFFs through tifffile
# --------------------------------------------------------------------------------------------

# Pillow decodes 16-bit colour to 8 bits by keeping each sample's high byte ("RGB;16B" reads
# the first byte of every big-endian pair). Decoding again with the opposite byte order
# keeps the low bytes instead; the two passes together give the exact 16-bit samples.
_RAWMODE_16BIT_COLOUR = re.compile(r"^(RGB|RGBA|RGBX);16([BLN])$")


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


def _decode_16bit_colour(
    src: Path | bytes, rawmode: str, index: int = 0
) -> tuple[np.ndarray, bool, int]:
    """Decode 16-bit RGB, RGBA or grey+alpha exactly with Pillow's decoder (PNG, TIFF).

    Returns the samples of frame (page) *index*, whether the last one is alpha, and the
    orientation tag.
    """
    if rawmode == "LA;16B":
        # Grey+alpha has 4 bytes a pixel, as RGBA: unpacked as "RGBA" it keeps all 4 bytes.
        with _fresh(src) as fileobj, PILImage.open(fileobj) as im:
            im.seek(index)
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
            im.seek(index)
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


def _decode_tifffile(
    src: Path | bytes, name: str, max_pixels: int | None, all_pages: bool = False
) -> Decoded:
    """Read a TIFF's first page (and, if asked, the others) exactly with tifffile."""
    tifffile = _import_tifffile()
    with _fresh(src) as fileobj, tifffile.TiffFile(fileobj) as tif:
        if not tif.pages:
            raise ImageReadError("truncated or corrupt image (a TIFF without pages)", path=name)
        pages = [tif.pages[0]]
        if all_pages:  # reduced-resolution copies (previews) are not pages
            pages += [page for page in tif.pages[1:] if not int(page.subfiletype) & 1]
        total = sum(page.imagewidth * page.imagelength for page in pages)
        first = pages[0]
        _check_size(first.imagewidth, first.imagelength, name, max_pixels, len(pages), total)
        decoded = _tifffile_page(pages[0], name)
        decoded.more = [_tifffile_page(page, name) for page in pages[1:]]
    return decoded


def _decode_tifffile_page(
    src: Path | bytes, name: str, max_pixels: int | None, index: int
) -> Decoded:
    tifffile = _import_tifffile()
    with _fresh(src) as fileobj, tifffile.TiffFile(fileobj) as tif:
        page = tif.pages[index]
        _check_size(page.imagewidth, page.imagelength, name, max_pixels)
        return _tifffile_page(page, name)


def _tifffile_page(page, name: str) -> Decoded:
    """Grey or RGB(A) samples of one TIFF page, any integer or float type."""
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
            raise NeedsCodec from None
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
    return Decoded(array, has_alpha, _depth_of_dtype(array.dtype), "TIFF", orientation)

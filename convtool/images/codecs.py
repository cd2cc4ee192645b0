"""Format codecs: file bytes ↔ raw sample arrays, with Pillow and where Pillow falls short.

Decoding gives a :class:`Decoded`: numeric samples ``(H, W, C)`` in the source's own scale,
alpha (if any) still the last channel, orientation not yet applied; :mod:`convtool.images`
turns that into an :class:`~convtool.images.Image`. Encoding takes samples already mapped
and cast for the output depth (:mod:`convtool.ranges`) and writes one format's bytes.

Pillow cannot hold 16-bit colour, so 16-bit RGB(A) and grey+alpha PNG/TIFF are decoded by
Pillow's own decoder in two byte planes (see :func:`_decode_16bit_colour`), 16-bit binary
PPM is read here (:func:`_decode_ppm16`), and 16-bit PNG and all PNM files are encoded here
with zlib (:func:`_write_png`, :func:`_write_pnm`); TIFF is written with ``tifffile``
(imported lazily), which also reads the TIFFs Pillow cannot open (float colour, 16-bit
grey+alpha, 32-bit integers).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import struct
import sys
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from convtool.errors import ConvtoolError, ImageReadError, ResourceLimitError

__all__ = ["ENCODERS", "Decoded", "NeedsCodec", "decode"]

# Our own header check (read_image's max_pixels, applied in _check_size) replaces Pillow's
# decompression-bomb guard, which would otherwise warn on stderr or raise before we can
# name the --max-pixels option.
PILImage.MAX_IMAGE_PIXELS = None

_NPY_MAGIC = b"\x93NUMPY"
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


def decode(src: Path | bytes, name: str, max_pixels: int | None) -> Decoded:
    """Pick the decoder from the first bytes: ``.npy``, else Pillow (tifffile for some TIFFs)."""
    with _fresh(src) as fileobj:
        head = fileobj.read(8)
    if head.startswith(_NPY_MAGIC):
        return _decode_npy(src, name, max_pixels)
    with _quiet_decoders(native=head.startswith(_TIFF_MAGICS)):
        try:
            return _decode_pillow(src, name, max_pixels)
        except UnidentifiedImageError:
            if head.startswith(_TIFF_MAGICS):  # float colour, 16-bit grey+alpha, float64, ...
                return _decode_tifffile(src, name, max_pixels)
            raise


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


def _check_size(width: int, height: int, name: str, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageReadError(f"image has no pixels ({width}×{height})", path=name)
    if max_pixels and width * height > max_pixels:
        raise ResourceLimitError(
            f"image is {width}×{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,}; raise it with --max-pixels N (0 for no limit)",
            path=name,
        )


def _decode_npy(src: Path | bytes, name: str, max_pixels: int | None) -> Decoded:
    """Read a ``.npy`` array, checking its header (shape, dtype) before loading the data."""
    with _fresh(src) as fileobj:
        try:  # numpy's messages quote the header (its keys and values): not repeated
            version = np.lib.format.read_magic(fileobj)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fileobj)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fileobj)
            else:
                raise ImageReadError(f".npy format version {version} is not supported", path=name)
        except ValueError:
            raise ImageReadError("not a readable .npy array (a bad header)", path=name) from None
        if len(shape) not in (2, 3) or (len(shape) == 3 and not 1 <= shape[2] <= 4):
            raise ImageReadError(
                f".npy array has shape {shape}; expected (H, W) or (H, W, C) with C from 1 to 4",
                path=name,
            )
        if dtype.kind not in "biuf":
            raise ImageReadError(f".npy array has dtype {dtype.name}, not a number type", path=name)
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


def _decode_pillow(src: Path | bytes, name: str, max_pixels: int | None) -> Decoded:
    with _fresh(src) as fileobj, PILImage.open(fileobj) as im:
        _check_size(im.width, im.height, name, max_pixels)
        fmt = im.format or "unknown"
        rawmode = _tile_rawmode(im)  # before anything loads the image (PNG's getexif does)
        if fmt == "TIFF" and im.mode == "I":
            # Pillow reads 32-bit integer TIFF as signed; tifffile keeps uint32/int16 exact.
            try:
                return _decode_tifffile(src, name, max_pixels)
            except NeedsCodec:
                pass
        if _RAWMODE_16BIT_COLOUR.match(rawmode) or rawmode == "LA;16B":
            array, has_alpha, orientation = _decode_16bit_colour(src, rawmode)
            return Decoded(array, has_alpha, 16, fmt, orientation)
        if fmt == "PPM" and im.mode == "RGB" and _ppm_maxval(im) > 255 and _is_binary_ppm(im):
            return Decoded(_decode_ppm16(src, im), False, 16, fmt)
        im.load()  # decode now, inside the error mapping: truncated data fails here
        return _pillow_samples(im, fmt, _orientation(im), name)


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


def _decode_tifffile(src: Path | bytes, name: str, max_pixels: int | None) -> Decoded:
    """Read grey or RGB(A) TIFF samples exactly with tifffile (any integer or float type)."""
    tifffile = _import_tifffile()
    with _fresh(src) as fileobj, tifffile.TiffFile(fileobj) as tif:
        if not tif.pages:
            raise ImageReadError("truncated or corrupt image (a TIFF without pages)", path=name)
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


def _import_tifffile() -> Any:
    try:
        import tifffile
    except ImportError:  # a declared dependency, but say what is missing rather than crash
        raise ConvtoolError(
            "this TIFF needs the 'tifffile' package: pip install tifffile"
        ) from None
    return tifffile


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def _stacked(colour: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    if alpha is None:
        return colour
    return np.concatenate([colour, alpha[:, :, np.newaxis].astype(colour.dtype)], axis=2)


def _pil_image(colour: np.ndarray, alpha: np.ndarray | None) -> PILImage.Image:
    """An 8-bit Pillow image (L, LA, RGB or RGBA) from uint8 samples."""
    samples = _stacked(colour, alpha)  # Pillow infers L, LA, RGB or RGBA from the shape
    return PILImage.fromarray(samples[:, :, 0] if samples.shape[2] == 1 else samples)


_Encoder = Callable[[BinaryIO, np.ndarray, Any, Any, int], None]


# Up to this zlib level PNGs are written by _write_png: the Sub filter on every row, then
# deflate with the run-length strategy (Z_RLE). On Sub-filtered photographs RLE is both
# faster and smaller than deflate's level 1 string matching (3840x2160 RGB photo with mild
# noise: 0.27 s for 47.5% of the raw size against 0.37 s for 55.5%; a 512x512 photo-like
# image: 8.5 ms for 66.5% against 16 ms for 72%); Pillow at level 1 took 0.83 s. Above it,
# Pillow's per-row adaptive filter at the asked level gives the smallest files.
FAST_PNG_MAX_LEVEL = 3


def _encode_png(f: BinaryIO, colour: np.ndarray, alpha: Any, depth: Any, level: int) -> None:
    if depth == 16 or level <= FAST_PNG_MAX_LEVEL:
        _write_png(f, _stacked(colour, alpha), 16 if depth == 16 else 8, level)
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


ENCODERS: dict[str, _Encoder] = {
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


def _write_png(f: BinaryIO, samples: np.ndarray, bits: int, level: int) -> None:
    """Write an 8- or 16-bit PNG (Pillow cannot write 16-bit colour): Sub filter, RLE deflate.

    Every row uses filter 1 (Sub: each byte minus the same byte of the pixel to its left),
    which needs no row above, so bands of rows are independent: they are filtered and
    deflated on all CPUs at once (see :func:`_deflate_bands`), in bounded memory.
    """
    height, width, channels = samples.shape
    f.write(b"\x89PNG\r\n\x1a\n")
    header = struct.pack(">IIBBBBB", width, height, bits, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    _png_chunk(f, b"IHDR", header)
    dtype = ">u2" if bits == 16 else np.uint8
    rows = samples.astype(dtype, copy=False).reshape(height, -1).view(np.uint8)
    bpp = bits // 8 * channels
    band = max(1, _PNG_BAND_BYTES // rows.shape[1])

    def filtered(start: int) -> bytes:
        block = rows[start : start + band]
        out = np.empty((block.shape[0], block.shape[1] + 1), np.uint8)
        out[:, 0] = 1  # the filter type byte: Sub
        out[:, 1 : bpp + 1] = block[:, :bpp]
        np.subtract(block[:, bpp:], block[:, :-bpp], out=out[:, bpp + 1 :])  # mod 256
        return out.tobytes()

    for data in _deflate_bands(filtered, range(0, height, band), level):
        _png_chunk(f, b"IDAT", data)
    _png_chunk(f, b"IEND", b"")


def _deflate_bands(make: Callable[[int], bytes], starts: range, level: int) -> Iterator[bytes]:
    """One zlib stream of the bands ``make(start)``, deflated on a thread per CPU.

    As pigz does: each band is a raw deflate stream ended on a byte boundary (a sync
    flush), so the pieces join into one stream; the zlib header and the Adler-32 of all
    the bytes wrap them. zlib releases the GIL, so the bands compress in parallel; at most
    two bands per thread are held at once.
    """
    from concurrent.futures import ThreadPoolExecutor

    strategy = zlib.Z_RLE if level > 0 else zlib.Z_DEFAULT_STRATEGY
    last = starts[-1]

    def deflate(start: int) -> tuple[bytes, bytes]:
        raw = make(start)
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy)
        end = zlib.Z_FINISH if start == last else zlib.Z_SYNC_FLUSH
        return raw, compressor.compress(raw) + compressor.flush(end)

    workers = min(os.cpu_count() or 1, len(starts))

    def pieces() -> Iterator[tuple[bytes, bytes]]:
        if workers == 1:  # one band (most images in a batch): no pool to start per file
            yield from map(deflate, starts)
            return
        with ThreadPoolExecutor(workers) as pool:
            for first in range(0, len(starts), 2 * workers):
                yield from pool.map(deflate, starts[first : first + 2 * workers])

    yield b"\x78\x01"  # zlib header: deflate, 32 KiB window; (0x7801 % 31 == 0)
    adler = 1
    for raw, data in pieces():
        adler = zlib.adler32(raw, adler)
        yield data
    yield struct.pack(">I", adler & 0xFFFFFFFF)


def _png_chunk(f: BinaryIO, kind: bytes, data: bytes) -> None:
    f.write(struct.pack(">I", len(data)) + kind)
    f.write(data)
    f.write(struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

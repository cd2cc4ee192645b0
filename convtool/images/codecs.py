"""Format codecs: file bytes → raw sample arrays, with Pillow and where Pillow falls short.

Decoding gives a :class:`Decoded`: numeric samples ``(H, W, C)`` in the source's own scale,
alpha (if any) still the last channel, orientation not yet applied, with the file's
metadata and, for animations and multi-page TIFFs, the later frames and their timing;
:mod:`convtool.images` turns that into an :class:`~convtool.images.Image`. Encoding is
:mod:`convtool.images.encoders`' (its ``ENCODERS`` are re-exported here).

Pillow cannot hold 16-bit colour, so 16-bit RGB(A) and grey+alpha PNG/TIFF are decoded by
Pillow's own decoder in two byte planes (see :func:`_decode_16bit_colour`) and 16-bit
binary PPM is read here (:func:`_decode_ppm16`); :mod:`convtool.images.tiff` reads the
TIFFs Pillow cannot open (float colour, 16-bit grey+alpha, 32-bit integers, signed).

Only the formats README documents reach a decoder: :mod:`convtool.images.sniff` is the
gate (the format told from the first bytes, anything else refused naming what it seems to
be, Pillow opened as that one format). :mod:`convtool.images.decoded` holds what every
decoder returns and the checks they share. This module is the dispatch and the Pillow,
``.npy`` and PPM decoders.

Past 400 lines by a little: Pillow's decoding (frames, 16-bit colour in two byte planes,
PPM) is one conversation with one library, kept together.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile, UnidentifiedImageError

from convtool.errors import ImageReadError
from convtool.images import jpeg, png, readahead
from convtool.images import metadata as meta
from convtool.images.decoded import (
    COMPLEX,
    Decoded,
    NeedsCodec,
    check_size,
    depth_of_dtype,
    fresh,
    quiet_decoders,
)
from convtool.images.encoders import ENCODERS
from convtool.images.frames import Timing
from convtool.images.plugins import READ_FORMATS, READ_NAMES
from convtool.images.sniff import (
    HEAD_BYTES,
    check_head_size,
    open_pillow,
    refusal,
    sniff,
)
from convtool.images.tiff import (
    TiffLayout,
    decode_tifffile,
    decode_tifffile_page,
    tiff_metadata,
)

__all__ = [  # ENCODERS: encoders' registry
    "ENCODERS",
    "HEAD_BYTES",
    "READ_FORMATS",
    "READ_NAMES",
    "Decoded",
    "NeedsCodec",
    "check_head_size",
    "decode",
    "open_pillow",
    "refusal",
    "sniff",
]

# Our own header check (read_image's max_pixels, applied in check_size) replaces Pillow's
# decompression-bomb guard, which would otherwise warn on stderr or raise before we can
# name the --max-pixels option.
PILImage.MAX_IMAGE_PIXELS = None

_FASTER = ("PNG", "JPEG")  # formats whose pixels faster libraries decode: _decode_faster
# Formats whose frames are frames (or pages) of one picture. Pillow gives others frames
# too that are not: MPO's second JPEG (a phone's depth map or preview), PSD's layers,
# ICO's sizes; of those only the first frame is read.
_FRAMED = frozenset({"GIF", "PNG", "WEBP", "TIFF"})


# --------------------------------------------------------------------------------------------
# The formats convtool reads, and nothing else
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def decode(src: Path | bytes, name: str, max_pixels: int | None, frames: str = "all") -> Decoded:
    """Decode *src* with the decoder of the format its first bytes show; refuse any other.

    ``.npy`` by numpy (no pickles), the READ_FORMATS by Pillow opened as that format only,
    TIFFs Pillow cannot hold exactly by tifffile. Anything else is an ImageReadError naming
    what the file seems to be. ``frames``: ``"all"`` frames or pages, or only the ``"first"``.
    PNG and JPEG files are read whole first (a PNG's size from its header checked before):
    Pillow opens those bytes (header, metadata), and libspng/libpng or libjpeg-turbo decode
    the pixels of the same bytes where they can (:func:`_decode_faster`).
    """
    with fresh(src) as fileobj:
        head = fileobj.read(HEAD_BYTES)
    fmt = sniff(head)
    if fmt is None:
        raise ImageReadError(refusal(head), path=name)
    if fmt == "NPY":
        return _decode_npy(src, name, max_pixels)
    if fmt in _FASTER and not isinstance(src, bytes):
        check_head_size(head, name, max_pixels)  # a PNG bomb is refused before it is read
        # Pillow reads the header, a faster library the pixels (read ahead if the CLI began)
        src = readahead.file_bytes(src) or src.read_bytes()
    tiff = fmt == "TIFF"
    with quiet_decoders(native=tiff):
        try:
            decoded = _decode_pillow(src, name, max_pixels, frames == "all", fmt)
        except UnidentifiedImageError:
            if not tiff:
                raise
            # float colour, 16-bit grey+alpha, float64, signed, ...
            decoded = decode_tifffile(src, name, max_pixels, frames == "all")
        if tiff:
            with fresh(src) as fileobj:
                decoded.metadata = tiff_metadata(fileobj)
    return decoded


def _decode_npy(src: Path | bytes, name: str, max_pixels: int | None) -> Decoded:
    """Read a ``.npy`` array, checking its header (shape, dtype) before loading the data."""
    with fresh(src) as fileobj:
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
        if dtype.kind == "c":
            raise ImageReadError(f".npy array has dtype {dtype}: {COMPLEX}", path=name)
        if dtype.kind not in "biuf":
            raise ImageReadError(f".npy array has dtype {dtype.name}, not a number type", path=name)
        check_size(shape[1], shape[0], name, max_pixels)
        fileobj.seek(0)
        array = np.load(fileobj, allow_pickle=False)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    channels = array.shape[2]
    depth: int | str
    if array.dtype == np.bool_:
        array, depth = array.astype(np.uint8) * 255, 8
    else:
        depth = depth_of_dtype(array.dtype)
    return Decoded(array, channels in (2, 4), depth, "NPY")


def _decode_pillow(
    src: Path | bytes, name: str, max_pixels: int | None, all_frames: bool, fmt: str
) -> Decoded:
    """The first frame with the file's metadata, then (if asked) the others and their timing.

    *fmt*: the format the first bytes show (:func:`sniff`); Pillow opens the file as it only.
    """
    with fresh(src) as fileobj, open_pillow(fileobj, fmt) as im:
        count = getattr(im, "n_frames", 1) if all_frames and im.format in _FRAMED else 1
        if fmt == "TIFF":  # its layout first, from the header: planes count as pixels too
            layout = TiffLayout.from_tags(im.width, im.height, getattr(im, "tag_v2", {}))
            layout.check(name, max_pixels if count == 1 else None)
        check_size(im.width, im.height, name, max_pixels, count)
        fmt = im.format or fmt  # JPEG may be MPO
        if count == 1 and isinstance(src, bytes):
            faster = _decode_faster(src, im, fmt)
            if faster is not None:
                return faster
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
            check_size(im.width, im.height, name, None)
            total += im.width * im.height  # TIFF pages may differ in size
            check_size(width, height, name, max_pixels, count, total)
            frame = _pillow_frame(src, im, index, fmt, name, max_pixels)
            if fmt != "TIFF":
                frame.orientation = first.orientation  # EXIF is the file's, not a frame's
            first.more.append(frame)
            durations.append(_duration(im))
            disposals.append(_disposal(im))
        if fmt != "TIFF":  # pages are not an animation
            first.timing = Timing(tuple(durations), tuple(disposals), plays)
        return first


def _decode_faster(data: bytes, im: ImageFile.ImageFile, fmt: str) -> Decoded | None:
    """PNG and JPEG pixels by libraries faster than Pillow's decoders, or None.

    *im* is Pillow's opened, not yet loaded, image of the same bytes (one frame): its
    format passed the allow-list, its size the limit, and its header gave the metadata.
    None when this file is Pillow's to decode.
    """
    size = (im.width, im.height)
    if fmt == "PNG":
        text = getattr(getattr(im, "png", None), "im_text", None)  # the chunks before IDAT
        found = None if text is None else png.decode(data, _tile_rawmode(im), im.info, size)
        if found is None:
            return None
        array, has_alpha, orientation = found
        depth = 16 if array.dtype == np.uint16 else 8
        # png.decode has checked that no metadata follows the pixels: the header had it all
        return Decoded(array, has_alpha, depth, fmt, orientation, _pillow_metadata(im, text))
    if fmt in ("JPEG", "MPO"):  # MPO: a JPEG with a second picture after it; this is the first
        jpeg_array = readahead.jpeg_samples(data, im.mode, size)  # decoded ahead, or now
        if jpeg_array is None:
            jpeg_array = jpeg.decode(data, im.mode, size)
        if jpeg_array is not None:
            return Decoded(jpeg_array, False, 8, fmt, _orientation(im), _pillow_metadata(im))
    return None


def _pillow_frame(
    src: Path | bytes,
    im: ImageFile.ImageFile,
    index: int,
    fmt: str,
    name: str,
    max_pixels: int | None,
) -> Decoded:
    """One frame (or page) of an opened image, already seeked to *index*."""
    rawmode = _tile_rawmode(im)  # before anything loads the image (PNG's getexif does)
    if fmt == "TIFF":
        layout = TiffLayout.from_tags(im.width, im.height, getattr(im, "tag_v2", {}))
        layout.check(name, None)  # every page, before its pixels
        if im.mode == "I" or layout.sample_format == 2:
            # Pillow reads unsigned 32-bit TIFF as signed (3e9 wraps round) and signed 8-bit
            # as unsigned (-27 becomes 229); tifffile keeps every integer type exact.
            try:
                return decode_tifffile_page(src, name, max_pixels, index)
            except NeedsCodec:
                if not (im.mode == "I" and layout.sample_format == 2):
                    raise  # only signed 16- and 32-bit samples would come out right
        if _is_planar(im) and _tiff_bits(im) > 8:
            # Pillow reads deep samples stored one plane each as 8-bit (uncompressed), and
            # the two-pass byte trick below cannot fix planes: tifffile reads them exactly.
            return decode_tifffile_page(src, name, max_pixels, index)
    if _RAWMODE_16BIT_COLOUR.match(rawmode) or rawmode == "LA;16B":
        array, has_alpha, orientation = _decode_16bit_colour(src, rawmode, fmt, index)
        return Decoded(array, has_alpha, 16, fmt, orientation)
    if fmt == "PPM" and im.mode == "RGB" and _ppm_maxval(im) > 255 and _is_binary_ppm(im):
        return Decoded(_decode_ppm16(src, im), False, 16, fmt)
    im.load()  # decode now, inside the error mapping: truncated data fails here
    return _pillow_samples(im, fmt, _orientation(im), name)


def _pillow_metadata(im: PILImage.Image, text: dict | None = None) -> meta.Metadata:
    """The file's metadata as Pillow reads it (PNG text chunks after the pixels included,
    unless *text* gives the PNG's text already)."""
    try:
        if text is None and im.format == "PNG":
            text = getattr(im, "text", None)  # PNG only; loads the pixels if not yet done
        return meta.from_pillow({str(key): value for key, value in im.info.items()}, text)
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


def _tile_rawmode(im: ImageFile.ImageFile) -> str:
    """The raw mode of Pillow's first decoder tile (how the stored bytes are laid out)."""
    if not im.tile:
        return ""
    args = im.tile[0].args
    return args if isinstance(args, str) else str(args[0]) if args else ""


def _with_rawmode(im: ImageFile.ImageFile, rawmode: str) -> None:
    """Make every decoder tile of the (unloaded) *im* unpack its bytes as *rawmode*."""
    tiles = []
    for tile in im.tile:
        args = rawmode if isinstance(tile.args, str) else (rawmode, *(tile.args or ())[1:])
        tiles.append(tile._replace(args=args))
    im.tile = tiles


def _decode_16bit_colour(
    src: Path | bytes, rawmode: str, fmt: str, index: int = 0
) -> tuple[np.ndarray, bool, int]:
    """Decode 16-bit RGB, RGBA or grey+alpha exactly with Pillow's decoder (PNG, TIFF).

    Returns the samples of frame (page) *index*, whether the last one is alpha, and the
    orientation tag.
    """
    if rawmode == "LA;16B":
        # Grey+alpha has 4 bytes a pixel, as RGBA: unpacked as "RGBA" it keeps all 4 bytes.
        with fresh(src) as fileobj, open_pillow(fileobj, fmt) as im:
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
        with fresh(src) as fileobj, open_pillow(fileobj, fmt) as im:
            im.seek(index)
            _with_rawmode(im, unpack)
            im.load()
            planes.append(np.asarray(im).astype(np.uint16))
            orientation = _orientation(im)
    high, low = planes
    channels = 3 if bands == "RGBX" else len(bands)
    return ((high << 8) | low)[:, :, :channels], bands == "RGBA", orientation


def _ppm_maxval(im: ImageFile.ImageFile) -> int:
    args = im.tile[0].args if im.tile else ()
    return int(args[1]) if isinstance(args, tuple) and len(args) > 1 else 255


def _is_binary_ppm(im: ImageFile.ImageFile) -> bool:
    # Plain-text (P3) colour keeps Pillow's 8-bit reading: a rare case not worth a parser.
    return bool(im.tile) and im.tile[0].codec_name == "ppm"


def _decode_ppm16(src: Path | bytes, im: ImageFile.ImageFile) -> np.ndarray:
    """Read 16-bit binary PPM samples (Pillow would keep 8 bits), scaled to 0–65535."""
    tile = im.tile[0]
    count = im.width * im.height * 3
    with fresh(src) as fileobj:
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

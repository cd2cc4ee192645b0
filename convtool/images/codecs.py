"""Format codecs: file bytes → raw sample arrays, with Pillow and where Pillow falls short.

Decoding gives a :class:`Decoded`: numeric samples ``(H, W, C)`` in the source's own scale,
alpha (if any) still the last channel, orientation not yet applied, with the file's
metadata and, for animations and multi-page TIFFs, the later frames and their timing;
:mod:`convtool.images` turns that into an :class:`~convtool.images.Image`. Encoding is
:mod:`convtool.images.encoders`' (its ``ENCODERS`` are re-exported here).

Pillow cannot hold 16-bit colour, so 16-bit RGB(A) and grey+alpha PNG/TIFF are decoded by
Pillow's own decoder in two byte planes (see :func:`_decode_16bit_colour`) and 16-bit
binary PPM is read here (:func:`_decode_ppm16`); ``tifffile`` (imported lazily) reads the
TIFFs Pillow cannot open (float colour, 16-bit grey+alpha, 32-bit integers, signed).

Only the formats README documents reach a decoder: :func:`sniff` tells the format from the
first bytes, anything else is refused naming what it seems to be (:func:`refusal`), and
Pillow is asked to open a file as that one format (:func:`open_pillow`, the one call of
``Image.open``; see :mod:`convtool.images.plugins`).
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import struct
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile, UnidentifiedImageError

from convtool.errors import ImageReadError, ResourceLimitError
from convtool.images import jpeg, png
from convtool.images import metadata as meta
from convtool.images.encoders import ENCODERS
from convtool.images.encoders import import_tifffile as _import_tifffile
from convtool.images.frames import Timing
from convtool.images.native import native_stderr_discarded
from convtool.images.plugins import READ_FORMATS, READ_NAMES, register

__all__ = [  # ENCODERS: encoders' registry
    "ENCODERS",
    "HEAD_BYTES",
    "READ_FORMATS",
    "Decoded",
    "NeedsCodec",
    "check_head_size",
    "decode",
    "open_pillow",
    "refusal",
    "sniff",
]

# Our own header check (read_image's max_pixels, applied in _check_size) replaces Pillow's
# decompression-bomb guard, which would otherwise warn on stderr or raise before we can
# name the --max-pixels option.
PILImage.MAX_IMAGE_PIXELS = None

_NPY_MAGIC = b"\x93NUMPY"
_FASTER = ("PNG", "JPEG")  # formats whose pixels faster libraries decode: _decode_faster
# Formats whose frames are frames (or pages) of one picture. Pillow gives others frames
# too that are not: MPO's second JPEG (a phone's depth map or preview), PSD's layers,
# ICO's sizes; of those only the first frame is read.
_FRAMED = frozenset({"GIF", "PNG", "WEBP", "TIFF"})
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


# --------------------------------------------------------------------------------------------
# The formats convtool reads, and nothing else
# --------------------------------------------------------------------------------------------

HEAD_BYTES = 4096
"""Bytes read to tell a file's format (:func:`sniff`) before anything else is read."""


def sniff(head: bytes) -> str | None:
    """The format of a file from its first bytes: a READ_FORMATS name, ``"NPY"``, or None."""
    if head.startswith(_NPY_MAGIC):
        return "NPY"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(_TIFF_MAGICS):
        return "TIFF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if re.match(rb"P[1-6](\s|#|$)", head[:3]):  # PBM, PGM, PPM; not PFM ("Pf", "PF")
        return "PPM"
    return None


def check_head_size(head: bytes, name: str, max_pixels: int | None) -> None:
    """Refuse a stream over ``max_pixels`` from its first bytes, before reading the rest.

    The formats whose size sits at a fixed place near the start (PNG's IHDR, GIF's screen,
    BMP's header, a ``.npy`` header) are checked here, so a decompression bomb on stdin is
    refused after :data:`HEAD_BYTES`; the others are checked once the stream is read.
    """
    size = _head_size(head)
    if size is not None and min(size) > 0:  # no pixels: the decoder's message, as for files
        _check_size(size[0], size[1], name, max_pixels)


def _head_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) as the first bytes declare them, where that is simple; else None."""
    fmt = sniff(head)
    try:
        if fmt == "PNG" and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])  # type: ignore[return-value]
        if fmt == "GIF":
            return struct.unpack("<HH", head[6:10])  # type: ignore[return-value]
        if fmt == "BMP":
            if struct.unpack("<I", head[14:18])[0] == 12:  # OS/2 core header: 16-bit sides
                return struct.unpack("<HH", head[18:22])  # type: ignore[return-value]
            width, height = struct.unpack("<ii", head[18:26])
            return abs(width), abs(height)
        if fmt == "NPY":
            fileobj = io.BytesIO(head)
            version = np.lib.format.read_magic(fileobj)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}[version]  # fmt: skip
            shape = read(fileobj)[0]
            return (shape[1], shape[0]) if len(shape) in (2, 3) else None
    except (struct.error, ValueError, KeyError, IndexError, SyntaxError, TypeError):
        return None  # cut short or unusual: the decoder will say what is wrong
    return None


# What a refused file is, told from its first bytes, so the error can say so. Only names
# from this table (or "text") are printed: nothing of the file itself.
_OTHER_FORMATS = (
    (rb"%!PS|\xc5\xd0\xd3\xc6", "a PostScript/EPS file"),
    (rb"%PDF-", "a PDF document"),
    (rb"(?:\xef\xbb\xbf)?\s*<(\?xml|svg|!DOCTYPE svg)", "an XML/SVG file"),
    (rb"\x00\x00\x00\x0cjP  |\xff\x4f\xff\x51", "a JPEG 2000 image"),
    (rb"\x00\x00\x00\x0cJXL |\xff\x0a", "a JPEG XL image"),
    (rb"....ftyp(heic|heix|hevc|mif1|msf1|avif|avis)", "a HEIF/AVIF image"),
    (rb"8BPS", "a Photoshop (PSD) file"),
    (rb"gimp xcf", "a GIMP (XCF) file"),
    (rb"\x00\x00[\x01\x02]\x00", "a Windows icon (ICO/CUR)"),
    (rb"DDS ", "a DirectDraw surface (DDS)"),
    (rb"qoif", "a QOI image"),
    (rb"P[fF]\s", "a PFM (float PNM) image"),
    (rb"SIMPLE  =", "a FITS file"),
    (rb"\x76\x2f\x31\x01", "an OpenEXR image"),
    (rb"icns", "an Apple icon (ICNS)"),
    (rb"\x59\xa6\x6a\x95", "a Sun raster image"),
    (rb"\x01\xda", "an SGI image"),
    (rb"\xd7\xcd\xc6\x9a|\x01\x00\x00\x00.{36} EMF", "a Windows metafile (WMF/EMF)"),
    (rb"PK\x03\x04|\x1f\x8b|BZh|\xfd7zXZ|7z\xbc\xaf", "an archive or compressed file"),
    (rb"MATLAB", "a MATLAB file"),
)


def identify(head: bytes) -> str:
    """What a file that convtool does not read seems to be, for the error message."""
    for pattern, what in _OTHER_FORMATS:
        if re.match(pattern, head, re.DOTALL):
            return what
    if head[:1] in (b"\x00", b"\xff") and len(set(head[:64])) == 1:
        return "all zero bytes" if head[:1] == b"\x00" else "all 0xFF bytes"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:  # binary, or a character cut at the end of the head
        if err.start < len(head) - 3:
            return "an unknown format"
        text = head[: err.start].decode("utf-8")
    return "text" if all(c.isprintable() or c.isspace() for c in text) else "an unknown format"


def refusal(head: bytes) -> str:
    """The one-line reason a file is not read: what it seems to be, and what convtool reads."""
    what = identify(head)
    if what in ("an unknown format", "text", "all zero bytes", "all 0xFF bytes"):
        return f"not an image, or a format convtool cannot read ({what}); it reads {READ_NAMES}"
    return f"{what}, not a format convtool reads; it reads {READ_NAMES} (convert it first)"


def open_pillow(fileobj: BinaryIO, fmt: str) -> ImageFile.ImageFile:
    """The one door to Pillow's decoders: open *fileobj* as *fmt* (a READ_FORMATS name) only."""
    register(fmt)
    return PILImage.open(fileobj, formats=[fmt])


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
    """Decode *src* with the decoder of the format its first bytes show; refuse any other.

    ``.npy`` by numpy (no pickles), the READ_FORMATS by Pillow opened as that format only,
    TIFFs Pillow cannot hold exactly by tifffile. Anything else is an ImageReadError naming
    what the file seems to be. ``frames``: ``"all"`` frames or pages, or only the ``"first"``.
    PNG and JPEG files are read whole first (a PNG's size from its header checked before):
    Pillow opens those bytes (header, metadata), and libspng/libpng or libjpeg-turbo decode
    the pixels of the same bytes where they can (:func:`_decode_faster`).
    """
    with _fresh(src) as fileobj:
        head = fileobj.read(HEAD_BYTES)
    fmt = sniff(head)
    if fmt is None:
        raise ImageReadError(refusal(head), path=name)
    if fmt == "NPY":
        return _decode_npy(src, name, max_pixels)
    if fmt in _FASTER and not isinstance(src, bytes):
        check_head_size(head, name, max_pixels)  # a PNG bomb is refused before it is read
        src = src.read_bytes()  # Pillow reads the header, a faster library the pixels
    tiff = fmt == "TIFF"
    with _quiet_decoders(native=tiff):
        try:
            decoded = _decode_pillow(src, name, max_pixels, frames == "all", fmt)
        except UnidentifiedImageError:
            if not tiff:
                raise
            # float colour, 16-bit grey+alpha, float64, signed, ...
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
    TIFF, the one format whose C decoder prints). tifffile's logger is silenced when
    tifffile may speak: for a TIFF, or when it is loaded already (the band readers open
    it first); otherwise ``logging`` (3 ms to import) is not even imported.
    """
    with contextlib.ExitStack() as stack:
        if native or "tifffile" in sys.modules:
            stack.enter_context(_logger_silenced("tifffile"))
        with warnings.catch_warnings(), native_stderr_discarded(native):
            warnings.simplefilter("ignore")
            yield


@contextlib.contextmanager
def _logger_silenced(name: str) -> Iterator[None]:
    import logging

    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


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
    planes: int = 1,
) -> None:
    """Refuse an empty image, or more pixels (over all *frames*) than *max_pixels*.

    *total*: the pixels of all frames when they differ in size (TIFF pages). *planes*: a
    TIFF page's planes (see :meth:`TiffLayout.check`), counted as pixels too.
    """
    if width <= 0 or height <= 0:
        raise ImageReadError(f"image has no pixels ({width}×{height})", path=name)
    total = width * height * frames * planes if total is None else total
    if max_pixels and total > max_pixels:
        size = f"{width}×{height}" if frames == 1 else f"{frames} frames of {width}×{height}"
        size += f"×{planes} planes" if planes > 1 else ""
        raise ResourceLimitError(
            f"image is {size} = {total:,} pixels, over the limit of "
            f"{max_pixels:,}; raise it with --max-pixels N (0 for no limit)"
            + (", or read one frame with --frames first" if frames > 1 else ""),
            path=name,
        )


_COMPLEX = "complex numbers; convtool reads real-valued images"


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
        if dtype.kind == "c":
            raise ImageReadError(f".npy array has dtype {dtype}: {_COMPLEX}", path=name)
        if dtype.kind not in "biuf":
            raise ImageReadError(f".npy array has dtype {dtype.name}, not a number type", path=name)
        _check_size(shape[1], shape[0], name, max_pixels)
        fileobj.seek(0)
        array = np.load(fileobj, allow_pickle=False)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    channels = array.shape[2]
    depth: int | str
    if array.dtype == np.bool_:
        array, depth = array.astype(np.uint8) * 255, 8
    else:
        depth = _depth_of_dtype(array.dtype)
    return Decoded(array, channels in (2, 4), depth, "NPY")


def _depth_of_dtype(dtype: np.dtype) -> int | str:
    """The value scale of integer or float samples: the bits of the type (signed alike).

    A signed type keeps its sign and takes the scale of the unsigned type of its size
    (int8: 0–255, so −27 stays −27, below black; int16: 0–65535).
    """
    if dtype.kind == "f":
        return "float"
    if dtype.itemsize == 1:
        return 8
    if dtype.itemsize == 2:
        return 16
    return 32


# TIFF tags read from the header, before any pixel is decoded.
_SAMPLES_PER_PIXEL, _BITS_PER_SAMPLE, _SAMPLE_FORMAT, _IMAGE_DEPTH, _PHOTOMETRIC = (
    277, 258, 339, 32997, 262,
)  # fmt: skip
_SAMPLE_KINDS = {1: "unsigned integer", 2: "signed integer", 3: "floating point"}
_SAMPLE_BITS = {1: (1, 2, 4, 8, 16, 32, 64), 2: (8, 16, 32, 64), 3: (16, 32, 64)}
_SEPARATED = 5  # photometric CMYK: 4 colour samples, + alpha


@dataclass(frozen=True)
class TiffLayout:
    """What a TIFF's first page declares: the fields that decide whether convtool reads it."""

    width: int
    height: int
    samples: int = 1
    bits: int = 8
    sample_format: int = 1  # 1 unsigned, 2 signed, 3 float, 4 undefined, 5-6 complex
    planes: int = 1  # ImageDepth: the slices of a volume
    photometric: int = 1

    @classmethod
    def from_tags(cls, width: int, height: int, tags: Any) -> TiffLayout:
        """From Pillow's parsed tags (``im.tag_v2``)."""

        def first(tag: int, default: int) -> int:
            value = tags.get(tag, default)
            return int(value[0] if isinstance(value, tuple) else value)

        return cls(
            width,
            height,
            samples=first(_SAMPLES_PER_PIXEL, 1),
            bits=first(_BITS_PER_SAMPLE, 1),
            sample_format=first(_SAMPLE_FORMAT, 1),
            planes=first(_IMAGE_DEPTH, 1),
            photometric=first(_PHOTOMETRIC, 1),
        )

    def check(self, name: str, max_pixels: int | None) -> None:
        """Refuse, from the header alone, what convtool does not read or what is too large.

        ``max_pixels`` counts the planes of a volume, and a pixel of more than 4 samples as
        ⌈samples / 4⌉ pixels; then volumes, more than 4 samples (5 for CMYK with alpha),
        complex or undefined samples and unusual bit depths (12-bit, 24-bit) are refused.
        """
        planes = max(1, self.planes) * max(1, math.ceil(self.samples / 4))
        _check_size(self.width, self.height, name, max_pixels, planes=planes)
        if self.planes > 1:
            raise ImageReadError(
                f"TIFF volume of {self.planes} planes (ImageDepth) is not supported; convtool "
                "reads 2-D images",
                path=name,
            )
        most = 5 if self.photometric == _SEPARATED else 4
        if self.samples > most:
            raise ImageReadError(
                f"TIFF with {self.samples} samples per pixel is not supported; convtool reads "
                "grey, RGB or CMYK samples with at most one alpha",
                path=name,
            )
        if self.sample_format in (5, 6):
            raise ImageReadError(f"TIFF samples are {_COMPLEX}", path=name)
        kind = _SAMPLE_KINDS.get(self.sample_format)
        if kind is None:
            raise ImageReadError(
                f"TIFF sample format {self.sample_format} (undefined) is not supported", path=name
            )
        if self.bits not in _SAMPLE_BITS[self.sample_format]:
            allowed = ", ".join(map(str, _SAMPLE_BITS[self.sample_format]))
            raise ImageReadError(
                f"TIFF with {self.bits}-bit {kind} samples is not supported ({kind} samples "
                f"of {allowed} bits are)",
                path=name,
            )


def _decode_pillow(
    src: Path | bytes, name: str, max_pixels: int | None, all_frames: bool, fmt: str
) -> Decoded:
    """The first frame with the file's metadata, then (if asked) the others and their timing.

    *fmt*: the format the first bytes show (:func:`sniff`); Pillow opens the file as it only.
    """
    with _fresh(src) as fileobj, open_pillow(fileobj, fmt) as im:
        count = getattr(im, "n_frames", 1) if all_frames and im.format in _FRAMED else 1
        if fmt == "TIFF":  # its layout first, from the header: planes count as pixels too
            layout = TiffLayout.from_tags(im.width, im.height, getattr(im, "tag_v2", {}))
            layout.check(name, max_pixels if count == 1 else None)
        _check_size(im.width, im.height, name, max_pixels, count)
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
                return _decode_tifffile_page(src, name, max_pixels, index)
            except NeedsCodec:
                if not (im.mode == "I" and layout.sample_format == 2):
                    raise  # only signed 16- and 32-bit samples would come out right
        if _is_planar(im) and _tiff_bits(im) > 8:
            # Pillow reads deep samples stored one plane each as 8-bit (uncompressed), and
            # the two-pass byte trick below cannot fix planes: tifffile reads them exactly.
            return _decode_tifffile_page(src, name, max_pixels, index)
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
        with _fresh(src) as fileobj, open_pillow(fileobj, fmt) as im:
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
        with _fresh(src) as fileobj, open_pillow(fileobj, fmt) as im:
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
        for page in pages:  # every page's layout from its header, before any pixel
            _tiff_layout(page).check(name, max_pixels if len(pages) == 1 else None)
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
        _tiff_layout(page).check(name, max_pixels)
        return _tifffile_page(page, name)


def _tiff_layout(page: Any) -> TiffLayout:
    """A tifffile page's layout, as its header declares it."""
    return TiffLayout(
        page.imagewidth,
        page.imagelength,
        samples=page.samplesperpixel,
        bits=page.bitspersample,
        sample_format=int(page.sampleformat),
        planes=page.imagedepth,
        photometric=int(page.photometric),
    )


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

"""PNG and APNG files: libspng/libpng where they beat Pillow's decoder, and convtool's writer.

Reading (:func:`decode`): after Pillow has opened the file (its format allow-list and the
size in the header are checked there), the pixels of the common kinds of PNG are
decoded by libspng or libpng through ``imagecodecs`` instead of Pillow: about a quarter
less time for 8-bit colour, and one pass instead of Pillow's two for 16-bit colour. The
samples are the same; anything else (interlaced files for libpng, 16-bit with a tRNS
colour, EXIF in text chunks) is left to Pillow.

Writing (:func:`write_png`): Pillow cannot hold 16-bit colour, and its filter choice is
slow at low levels, so PNGs are written here. Each band of rows is mapped from the float
image (:class:`~convtool.images.ranges.Samples`), given the *Up* filter (each byte minus
the byte above it; a band's first row reads the last row of the band before, mapped
again), deflated as a byte-aligned piece of one zlib stream (as pigz does) — bands run on
a thread per CPU, two at most per thread held at once (:func:`deflate_frame`). For 8-bit
samples above :data:`FAST_PNG_MAX_LEVEL` the zlib stream is the one Pillow's adaptive
filters make. Around the pixels go the chunks that carry metadata (iCCP, pHYs, eXIf,
tEXt/iTXt, XMP in iTXt) and, for several frames, APNG's acTL/fcTL/fdAT. Frames are whole
canvases (as read), so each replaces the last (``APNG_BLEND_OP_SOURCE``) and its
disposal is kept as read.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import numpy as np
from PIL import Image as PILImage

from convtool.images import plugins
from convtool.images.frames import DISPOSALS, Timing
from convtool.images.metadata import Metadata
from convtool.images.native import native_stderr_discarded
from convtool.images.ranges import Samples

__all__ = ["FAST_PNG_MAX_LEVEL", "adler32_combine", "decode", "deflate_frame", "write_png"]

# Up to this zlib level PNGs are deflated by convtool (see deflate_frame); above it
# Pillow's per-row adaptive filter at the asked level gives the smallest files, at many
# times the cost (README, "PNG compression").
FAST_PNG_MAX_LEVEL = 3

_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels → grey, grey+alpha, RGB, RGBA
_BAND_BYTES = 8 << 20  # raw bytes of the rows a band holds: bounds memory for any image size
# An image is cut into a band per CPU, down to bands of this size: a 512×512 RGB image
# (0.8 MB, most of a batch, where processes share the CPUs) stays one band, on no thread.
_MIN_BAND_BYTES = 1 << 20
_NONE, _UP = 0, 2  # PNG filter types
_ADLER_BASE = 65521
_XMP_KEYWORD = b"XML:com.adobe.xmp"
_INCH = 0.0254  # metres


# Pillow's raw modes of PNG (how the file stores samples) that libspng decodes as Pillow
# does; with a tRNS chunk or a 16-bit layout libspng does not output, libpng does.
_SPNG_RAWMODES = frozenset(
    {"1", "L;2", "L;4", "L", "RGB", "P;1", "P;2", "P;4", "P", "RGBA", "RGBA;16B"}
)
_LIBPNG_RAWMODES = frozenset({"I;16B", "RGB;16B", "LA", "LA;16B"})
_TRNS_RAWMODES = frozenset({"1", "L;2", "L;4", "L", "RGB", "P;1", "P;2", "P;4", "P"})
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode(
    data: bytes, rawmode: str, info: dict, size: tuple[int, int]
) -> tuple[np.ndarray, bool, int] | None:
    """Samples ``(H, W, C)``, whether the last is alpha, and the EXIF orientation; or None.

    ``rawmode``, ``info`` and ``size`` (width, height) are what Pillow read from the
    header. None means Pillow should decode this file: a kind not listed above, an
    orientation only Pillow finds (EXIF or XMP in text chunks), or a decoder error
    (Pillow then gives its own, well-known error for a damaged file).
    """
    if not data.startswith(_SIGNATURE):
        return None
    transparent = "transparency" in info
    if rawmode in _SPNG_RAWMODES and not transparent:
        decoder = "spng"
    elif (rawmode in _LIBPNG_RAWMODES and not transparent) or (
        transparent and rawmode in _TRNS_RAWMODES
    ):
        decoder = "libpng"
        if info.get("interlace"):
            return None  # libpng would warn on stderr, from C, for interlaced files
    else:
        return None
    orientation = _orientation(data)
    if orientation is None:
        return None
    try:
        imagecodecs = _imagecodecs()
        if imagecodecs is None:
            return None
        if decoder == "spng":
            array = imagecodecs.spng_decode(data)
        else:
            with native_stderr_discarded():  # libpng warns from C (a bad iCCP, say)
                array = imagecodecs.png_decode(data)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - Pillow decodes it again and says what is wrong
        return None
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.shape[1::-1] != tuple(size):
        return None
    channels = array.shape[2]
    return array, channels in (2, 4), orientation


def _orientation(data: bytes) -> int | None:
    """The EXIF orientation from an eXIf chunk (1 without one); None where Pillow should
    read the file: metadata after the pixels (Pillow reads it only by decoding them), text
    chunks that may hold an orientation (``Raw profile type exif``, XMP), an animation."""
    exif, pixels = None, False
    offset = len(_SIGNATURE)
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        if kind == b"IEND":
            break
        if kind == b"IDAT":
            pixels = True
        elif kind == b"acTL" or (pixels and kind in _METADATA_CHUNKS):
            return None
        elif kind == b"eXIf":
            exif = data[offset + 8 : offset + 8 + length]
        elif kind in _METADATA_CHUNKS and data[offset + 8 : offset + 40].startswith(
            _ORIENTATION_TEXTS
        ):
            return None
        offset += 12 + length
    if exif is None:
        return 1
    try:
        tags = PILImage.Exif()
        tags.load(exif)
        value = int(tags.get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block should not stop reading the pixels
        return 1
    return value if 1 <= value <= 8 else 1


_METADATA_CHUNKS = (b"tEXt", b"zTXt", b"iTXt", b"eXIf")
_ORIENTATION_TEXTS = (b"XML:com.adobe.xmp\0", b"Raw profile type exif\0")


def write_png(
    f: BinaryIO,
    frames: list[Samples],
    bits: int,
    level: int,
    metadata: Metadata | None = None,
    timing: Timing | None = None,
) -> None:
    """Write 8- or 16-bit samples (:class:`Samples`, mapped as they are written) as a PNG,
    or as an APNG for several frames.

    All frames share one size. *timing* gives the APNG's durations, disposals and plays
    (default: 100 ms a frame, played for ever).
    """
    height, width, channels = frames[0].shape
    f.write(b"\x89PNG\r\n\x1a\n")
    header = struct.pack(">IIBBBBB", width, height, bits, _COLOUR_TYPES[channels], 0, 0, 0)
    _chunk(f, b"IHDR", header)
    for kind, data in _metadata_chunks(metadata or Metadata()):
        _chunk(f, kind, data)
    if len(frames) == 1:
        for data in _zlib_stream(frames[0], bits, level):
            _chunk(f, b"IDAT", data)
        _chunk(f, b"IEND", b"")
        return
    if timing is None:
        timing = Timing((100.0,) * len(frames), ("none",) * len(frames), 0)
    _chunk(f, b"acTL", struct.pack(">II", len(frames), timing.loop))
    sequence = 0
    for index, samples in enumerate(frames):
        numerator, denominator = _delay(timing.durations[index])
        dispose = DISPOSALS.index(timing.disposals[index])
        control = struct.pack(
            ">IIIIIHHBB", sequence, width, height, 0, 0, numerator, denominator, dispose, 0
        )
        _chunk(f, b"fcTL", control)
        sequence += 1
        for data in _zlib_stream(samples, bits, level):
            if index == 0:
                _chunk(f, b"IDAT", data)
            else:
                _chunk(f, b"fdAT", struct.pack(">I", sequence) + data)
                sequence += 1
    _chunk(f, b"IEND", b"")


def _delay(milliseconds: float) -> tuple[int, int]:
    """An fcTL delay fraction (two 16-bit numbers) for a duration in milliseconds."""
    for denominator in (1000, 100, 10, 1):
        numerator = round(milliseconds * denominator / 1000)
        if numerator <= 0xFFFF:
            return numerator, denominator
    return 0xFFFF, 1


def _metadata_chunks(metadata: Metadata) -> Iterator[tuple[bytes, bytes]]:
    if metadata.icc:
        yield b"iCCP", b"ICC profile\x00\x00" + zlib.compress(metadata.icc)
    if metadata.dpi:
        x, y = (round(v / _INCH) for v in metadata.dpi)
        yield b"pHYs", struct.pack(">IIB", x, y, 1)
    if metadata.exif:
        yield b"eXIf", metadata.exif
    for key, value in metadata.text.items():
        yield _text_chunk(key.encode("latin-1", "replace")[:79] or b"?", value)
    if metadata.xmp:
        yield b"iTXt", _XMP_KEYWORD + b"\x00\x00\x00\x00\x00" + metadata.xmp


def _text_chunk(keyword: bytes, value: str) -> tuple[bytes, bytes]:
    """tEXt when the value is Latin-1 (the chunk's own encoding), iTXt (UTF-8) otherwise."""
    try:
        return b"tEXt", keyword + b"\x00" + value.encode("latin-1")
    except UnicodeEncodeError:
        return b"iTXt", keyword + b"\x00\x00\x00\x00\x00" + value.encode("utf-8")


def _zlib_stream(samples: Samples, bits: int, level: int) -> Iterator[bytes]:
    """The pieces of one frame's zlib stream of filtered rows."""
    if bits == 8 and level > FAST_PNG_MAX_LEVEL:
        yield _pillow_stream(samples.whole(), level)
    else:
        yield from deflate_frame(samples, level)


def _pillow_stream(samples: np.ndarray, level: int) -> bytes:
    """The zlib stream Pillow writes for 8-bit samples: adaptive filters, at *level*."""
    picture = PILImage.fromarray(samples[:, :, 0] if samples.shape[2] == 1 else samples)
    buffer = io.BytesIO()
    plugins.save(picture, buffer, "PNG", compress_level=level)
    data, position, stream = buffer.getbuffer(), 8, []
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        if bytes(data[position + 4 : position + 8]) == b"IDAT":
            stream.append(bytes(data[position + 8 : position + 8 + length]))
        position += 12 + length
    return b"".join(stream)


def deflate_frame(samples: Samples, level: int) -> Iterator[bytes]:
    """One frame's zlib stream (level 0–3), in pieces: bands of rows mapped, filtered and
    deflated on a thread per CPU.

    Level 0 stores the rows unfiltered. Levels 1–3 use the Up filter; level 1 is deflated
    by ISA-L where the ``isal`` package is installed (about 3× faster than zlib's level 1
    on filtered photographs, for files some 15 % larger), levels 2–3 (and level 1 without
    ISA-L) with zlib's run-length strategy, which on filtered rows is faster and smaller
    than its string matching. Each band is a raw deflate stream ended on a byte boundary
    (a sync flush), so the pieces join into one stream, as pigz makes them; its Adler-32
    is taken on the band's thread and joined here (:func:`adler32_combine`).
    """
    height, width, channels = samples.shape
    big_endian = samples.dtype.itemsize == 2
    row_bytes = width * channels * samples.dtype.itemsize
    share = -(-height * row_bytes // (os.cpu_count() or 1))  # a band per CPU, rounded up
    band = max(1, min(_BAND_BYTES, max(share, _MIN_BAND_BYTES)) // row_bytes)
    deflater = _deflater(level)

    def piece(start: int) -> tuple[bytes, int, int]:
        end = min(start + band, height)
        above = 1 if start and level else 0  # the Up filter's row above the band
        block = samples.rows(start - above, end)
        if big_endian:
            block = block.astype(">u2")
        raw = _filtered(block.reshape(block.shape[0], -1).view(np.uint8), above, level)
        return deflater(raw, end == height), zlib.adler32(raw), len(raw)

    yield b"\x78\x01"  # zlib header: deflate, 32 KiB window (0x7801 % 31 == 0)
    adler = 1
    for data, band_adler, length in _in_order(piece, range(0, height, band)):
        adler = adler32_combine(adler, band_adler, length)
        yield data
    yield struct.pack(">I", adler)


def _filtered(rows: np.ndarray, above: int, level: int) -> memoryview:
    """The band's rows with their filter-type byte: None at level 0, else Up.

    ``rows`` holds the band's byte rows, after ``above`` (0 or 1) row(s) of the band
    before; the image's first row has zeros above it, so Up leaves it as it is.
    """
    own = rows[above:]
    out = np.empty((own.shape[0], own.shape[1] + 1), np.uint8)
    if level == 0:
        out[:, 0] = _NONE
        out[:, 1:] = own
        return memoryview(out).cast("B")
    out[:, 0] = _UP
    if above:
        np.subtract(own, rows[:-1], out=out[:, 1:])  # mod 256
    else:
        out[0, 1:] = own[0]
        np.subtract(own[1:], own[:-1], out=out[1:, 1:])
    return memoryview(out).cast("B")


def _deflater(level: int) -> Callable[[memoryview, bool], bytes]:
    """A function deflating one band: raw deflate ended on a byte boundary, or finished."""
    if level == 1:
        isal_zlib = _isal()
        if isal_zlib is not None:

            def isal_band(raw: memoryview, last: bool) -> bytes:
                compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15)
                end = isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH
                return compressor.compress(raw) + compressor.flush(end)

            return isal_band
    strategy = zlib.Z_RLE if level > 0 else zlib.Z_DEFAULT_STRATEGY

    def zlib_band(raw: memoryview, last: bool) -> bytes:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy)
        return compressor.compress(raw) + compressor.flush(
            zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH
        )

    return zlib_band


def _imagecodecs() -> Any:
    """The ``imagecodecs`` package (libspng, libpng), or None where it is not installed."""
    try:
        import imagecodecs
    except ImportError:
        return None
    return imagecodecs


def _isal() -> Any:
    """ISA-L's zlib module, or None where the ``isal`` package is not installed."""
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib


def _in_order(make: Callable[[int], Any], starts: range) -> Iterator[Any]:
    """``make(start)`` for every start, in order, on a thread per CPU (two bands each ahead)."""
    workers = min(os.cpu_count() or 1, len(starts))
    if workers == 1:  # one band (most images in a batch): no pool to start per file
        yield from map(make, starts)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        for first in range(0, len(starts), 2 * workers):
            yield from pool.map(make, starts[first : first + 2 * workers])


def adler32_combine(first: int, second: int, length: int) -> int:
    """The Adler-32 of two byte strings joined, from theirs and the second's *length*.

    zlib's ``adler32_combine``, which Python's zlib does not offer: the bands' checksums
    are taken on their own threads and joined here in order.
    """
    rem = length % _ADLER_BASE
    low = ((first & 0xFFFF) + (second & 0xFFFF) - 1) % _ADLER_BASE
    high = ((first >> 16) + (second >> 16) + rem * (first & 0xFFFF) - rem) % _ADLER_BASE
    return low | (high << 16)


def _chunk(f: BinaryIO, kind: bytes, data: bytes) -> None:
    f.write(struct.pack(">I", len(data)) + kind)
    f.write(data)
    f.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF))

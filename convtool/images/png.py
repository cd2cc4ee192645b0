"""PNG: libspng and libpng where they beat Pillow's decoder, and convtool's own banded writer.

Reading (:func:`decode`): after Pillow has opened the file (its format allow-list and the
size in the header are checked there), the pixels of the common kinds of PNG are
decoded by libspng or libpng through ``imagecodecs`` instead of Pillow: 25 % less time
for 8-bit colour, and one pass instead of Pillow's two for 16-bit colour. The samples are
the same; anything else (interlaced files for libpng, 16-bit with a tRNS colour, EXIF in
text chunks) is left to Pillow.

Writing (:func:`write_png`):
A band is mapped from the float image (:class:`~convtool.images.ranges.Samples`), given
the *Up* filter (each byte minus the byte above it; the band's first row reads the last
row of the band before, mapped again), deflated as a byte-aligned piece of one zlib
stream (as pigz does) and written as one IDAT chunk. Bands are independent, so they run
on a thread per CPU (numpy, zlib and ISA-L release the GIL); at most two per thread are
held at once, so memory stays bounded whatever the image size. Pillow writes the higher
levels (see :data:`FAST_PNG_MAX_LEVEL`).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import numpy as np

from convtool.images.native import native_stderr_discarded
from convtool.images.ranges import Samples

__all__ = ["FAST_PNG_MAX_LEVEL", "decode", "write_png"]

# Up to this zlib level PNGs are written here; above it Pillow's per-row adaptive filter at
# the asked level gives the smallest files, at many times the cost (see the README table).
FAST_PNG_MAX_LEVEL = 3

_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels → grey, grey+alpha, RGB, RGBA
_BAND_BYTES = 8 << 20  # raw bytes a band holds: bounds memory for any image size
_NONE, _UP = 0, 2  # PNG filter types
_ADLER_BASE = 65521


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
    """The EXIF orientation from an eXIf chunk wherever it is (1 without one); None when
    text chunks may hold one too (``Raw profile type exif``, XMP), which Pillow reads."""
    exif = None
    offset = len(_SIGNATURE)
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        if kind == b"IEND":
            break
        body = data[offset + 8 : offset + 8 + min(length, 32)] if kind != b"IDAT" else b""
        if kind == b"eXIf":
            exif = data[offset + 8 : offset + 8 + length]
        elif kind in (b"tEXt", b"zTXt", b"iTXt") and body.startswith(_ORIENTATION_TEXTS):
            return None
        offset += 12 + length
    if exif is None:
        return 1
    from PIL import Image as PILImage

    try:
        tags = PILImage.Exif()
        tags.load(exif)
        value = int(tags.get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block should not stop reading the pixels
        return 1
    return value if 1 <= value <= 8 else 1


_ORIENTATION_TEXTS = (b"XML:com.adobe.xmp\0", b"Raw profile type exif\0")


def write_png(f: BinaryIO, samples: Samples, level: int) -> None:
    """Write *samples* (8- or 16-bit) as a PNG at zlib *level* 0–3, band by band.

    Level 0 stores the rows unfiltered; levels 1–3 use the Up filter, level 1 deflated by
    ISA-L where the ``isal`` package is installed (about 3× faster than zlib's level 1 on
    filtered photographs, and a little larger), levels 2–3 (and level 1 without ISA-L)
    with zlib's run-length strategy, which on filtered rows is faster and smaller than its
    string matching.
    """
    height, width, channels = samples.shape
    bits = 16 if samples.dtype.itemsize == 2 else 8
    f.write(b"\x89PNG\r\n\x1a\n")
    header = struct.pack(">IIBBBBB", width, height, bits, _COLOUR_TYPES[channels], 0, 0, 0)
    f.write(_chunk(b"IHDR", header))
    row_bytes = width * channels * bits // 8
    band = max(1, _BAND_BYTES // row_bytes)
    starts = range(0, height, band)
    deflater = _deflater(level)
    big_endian = ">u2" if bits == 16 else None

    def piece(start: int) -> tuple[bytes, int, int]:
        end = min(start + band, height)
        above = 1 if start and level else 0  # the Up filter's row above the band
        block = samples.rows(start - above, end)
        if big_endian:
            block = block.astype(big_endian)
        rows = block.reshape(block.shape[0], -1).view(np.uint8)
        raw = _filtered(rows, above, level)
        data = deflater(raw, end == height)
        if start == 0:
            data = b"\x78\x01" + data  # zlib header: deflate, 32 KiB window (0x7801 % 31 == 0)
        return _chunk(b"IDAT", data), zlib.adler32(raw), len(raw)

    adler = 1
    for chunk, band_adler, length in _in_order(piece, starts):
        f.write(chunk)
        adler = adler32_combine(adler, band_adler, length)
    f.write(_chunk(b"IDAT", struct.pack(">I", adler)))  # the zlib stream's Adler-32 ends it
    f.write(_chunk(b"IEND", b""))


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


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF
    return b"".join((struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc)))

"""PNG and APNG files: libspng/libpng where they beat Pillow's decoder, and convtool's writer.

Reading (:func:`decode`): after Pillow has opened the file (the allow-list and the size in
the header are checked there), the pixels of the common kinds of PNG are decoded by
libspng or libpng through ``imagecodecs`` instead of Pillow: about a quarter less time for
8-bit colour, and one pass instead of Pillow's two for 16-bit colour. The samples are the
same; anything else (interlaced files for libpng, 16-bit with a tRNS colour, EXIF in text
chunks, metadata after the pixels) is left to Pillow.

Writing (:func:`write_png`): Pillow cannot hold 16-bit colour, and its filter choice is
slow, so PNGs of every depth and level are written here, band by band on all CPUs
(:func:`deflate_frame`; what each ``--compress-level`` does is said above
:data:`SUB_RLE_LEVEL`). Each band is mapped from the float results on its own thread
(:class:`~convtool.images.ranges.Samples`: range, rounding, the cast), then filtered and
deflated. Around the pixels go the chunks that carry metadata (iCCP, pHYs, eXIf,
tEXt/iTXt, XMP in iTXt) and, for several frames, APNG's acTL/fcTL/fdAT. Frames are whole
canvases (as read), so each replaces the last (``APNG_BLEND_OP_SOURCE``) and its disposal
is kept as read.

One module, though past 400 lines: reading and writing share the chunk layout, the
libraries' availability checks and the Adler-32 arithmetic, and the writer's parts (filters,
banded deflate, chunks) are one pipeline that reads top to bottom.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import numpy as np
from PIL import Image as PILImage

from convtool._system import cpu_count
from convtool.images.frames import DISPOSALS, Timing
from convtool.images.metadata import Metadata
from convtool.images.native import native_stderr_discarded
from convtool.images.png_pixels import decode_samples
from convtool.images.png_stream import isal_zlib as _isal  # one loader for reader and writer
from convtool.images.ranges import Samples

__all__ = [
    "ADAPTIVE_RLE_LEVEL",
    "SUB_RLE_LEVEL",
    "adler32_combine",
    "decode",
    "deflate_frame",
    "write_png",
]

# What each --compress-level means (measured on samples/*.png and a 3840x2160 photo-like
# image, see the README): 0 stores the rows; 1 filters every row of a band with Up (each
# byte minus the one above), or none where that looks cheaper (_up_or_none_filtered), and deflates with ISA-L's level 1 where the isal package is installed
# (about 3x faster than zlib on filtered rows, some 15% larger than level 2), else with
# zlib's run-length strategy (Z_RLE: on filtered photographs faster and smaller than
# deflate's level-1 string matching); 2 picks each row's filter as libpng does (the one of
# None, Sub, Up, Average, Paeth with the smallest sum of |signed bytes|), 3-12% smaller on
# the photographs for a few more passes over the rows; from 3 on the filters are re-picked
# by estimated Huffman cost and deflated both with Z_RLE and with string matching at that
# zlib level (Z_FILTERED), keeping the smaller per band: string matching wins on drawings
# and flat areas and costs more at each level.
SUB_RLE_LEVEL = 1
ADAPTIVE_RLE_LEVEL = 2

_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels → grey, grey+alpha, RGB, RGBA
_BAND_BYTES = 8 << 20  # raw bytes of the rows a band holds: bounds memory for any image size
# An image is cut into a band per CPU, down to bands of this size: a 512×512 RGB image
# (0.8 MB, most of a batch, where processes share the CPUs) stays one band, on no thread.
_MIN_BAND_BYTES = 1 << 20
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
    samples = decode_samples(data)
    if samples is not None:
        return samples, samples.shape[2] in (2, 4), orientation
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
    """Write 8- or 16-bit samples (mapped band by band as they are written) as a PNG, or
    as an APNG for several frames.

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
        for data in _joined(deflate_frame(frames[0], bits, level)):
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
        for data in _joined(deflate_frame(samples, bits, level)):
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


def _joined(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """The stream's pieces (header, bands, checksum) joined into as few chunks as memory
    allows: each chunk costs 12 bytes, a fifth of a small image's whole stream."""
    pending: list[bytes] = []
    held = 0
    for data in pieces:
        pending.append(data)
        held += len(data)
        if held >= _BAND_BYTES:
            yield b"".join(pending)
            pending, held = [], 0
    if pending:
        yield b"".join(pending)


def deflate_frame(samples: Samples, bits: int, level: int) -> Iterator[bytes]:
    """One frame's rows, mapped, filtered and deflated band by band on all CPUs.

    A row's filter reads only raw rows, never filtered ones, so each band needs nothing but
    its own rows and the one above (mapped again): the bands are mapped, filtered and
    deflated on all CPUs at once (see :func:`_deflate_bands`), in bounded memory. What
    each level does is said above :data:`SUB_RLE_LEVEL`.
    """
    height, width, channels = samples.shape
    row_bytes = width * channels * bits // 8
    bpp = bits // 8 * channels
    band = _band_rows(height, row_bytes, cpu_count())

    def filtered(start: int) -> memoryview:
        end = min(start + band, height)
        above = 1 if start and level else 0  # the row above the band, for the filters
        block = samples.rows(start - above, end)
        if bits == 16:
            block = block.astype(">u2")
        rows = block.reshape(block.shape[0], -1).view(np.uint8)
        if level == 0:
            out = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
            out[:, 0], out[:, 1:] = 0, rows  # filter None: stored as it is
        elif level <= SUB_RLE_LEVEL:
            out = _up_or_none_filtered(rows, above)
        else:
            prior = rows[0] if above else np.zeros(rows.shape[1], np.uint8)
            out = _adaptive_filtered(rows[above:], prior, bpp, level > ADAPTIVE_RLE_LEVEL)
        return out.data.cast("B")

    yield from _deflate_bands(filtered, range(0, height, band), level)


def _band_rows(height: int, row_bytes: int, cpus: int) -> int:
    """Rows per band: as many bands as there are CPUs (a multiple of them when bands must be
    under :data:`_BAND_BYTES`), all of one size, none under :data:`_MIN_BAND_BYTES`.

    Equal shares matter: bands capped at 8 MiB cut a 4K RGB image (24.9 MB) into 8+8+8+1,
    so one of two threads deflated 16 MB while the other had 9 (73 ms of waiting in the
    writer, measured; equal bands: four of 6.2 MB, two a thread).
    """
    total = height * row_bytes
    bands = cpus * max(1, -(-total // (cpus * _BAND_BYTES)))
    share = max(-(-total // bands), _MIN_BAND_BYTES)
    return max(1, min(-(-share // row_bytes), _BAND_BYTES // row_bytes))


def _up_filtered(rows: np.ndarray, above: int) -> np.ndarray:
    """Rows with filter 2 (Up: each byte minus the byte above it; zeros above the image's
    first row). ``rows`` holds ``above`` (0 or 1) raw row(s) of the band before, then the
    band's own."""
    own = rows[above:]
    out = np.empty((own.shape[0], own.shape[1] + 1), np.uint8)
    out[:, 0] = 2  # the filter type byte
    if above:
        np.subtract(own, rows[:-1], out=out[:, 1:])  # mod 256
    else:
        out[0, 1:] = own[0]
        np.subtract(own[1:], own[:-1], out=out[1:, 1:])
    return out


def _up_or_none_filtered(rows: np.ndarray, above: int) -> np.ndarray:
    """:func:`_up_filtered`, or the rows unfiltered where that looks cheaper to deflate.

    Up suits photographs and smooth results (a blur); an edge map (Sobel, Laplacian:
    small values, sparse detail) is better left alone, since Up turns each edge into two.
    Measured on 4K RGB results, ISA-L level 1, one thread: Sobel of a JPEG, Up 115 ms and
    13.1 MB, no filter 106 ms and 11.4 MB; a blurred photograph, Up 59 ms and 8.6 MB, no
    filter 90 ms and 18.3 MB. The band keeps its bytes unfiltered when, over up to 32 rows
    spread through it, they hold more zeros than their Up differences: that chose right on
    the five test images (Sobel of a PNG and of a JPEG, a blur, an RGB and a grey
    photograph), as did the bytes' order-0 entropy, which takes a histogram (3 ms a band,
    holding the GIL the deflating threads want); libpng's heuristic, the smallest sum of
    |signed bytes|, picks Up for the Sobel result (3.5 M against 4.8 M on those rows).
    """
    own = rows[above:]
    picked = np.arange(above, rows.shape[0], max(1, own.shape[0] // 32))
    picked = picked[picked > 0]  # rows with a row above them in the block
    if picked.size and _zeros(rows[picked]) > _zeros(rows[picked] - rows[picked - 1]):
        out = np.empty((own.shape[0], own.shape[1] + 1), np.uint8)
        out[:, 0] = 0  # filter None
        out[:, 1:] = own
        return out
    return _up_filtered(rows, above)


def _zeros(block: np.ndarray) -> int:
    return block.size - int(np.count_nonzero(block))


# Bytes of rows filtered at once by _adaptive_filtered: its ~50 bytes of temporaries per
# byte stay near 13 MiB a thread, within the memory check's headroom for the encoder.
_ADAPTIVE_CHUNK_BYTES = 1 << 18


def _adaptive_filtered(
    block: np.ndarray, above: np.ndarray, bpp: int, refine: bool = False
) -> np.ndarray:
    """Rows each with the filter of the PNG spec's heuristic (as libpng and Pillow choose):
    of None, Sub, Up, Average and Paeth, the one whose bytes, read as signed, have the
    smallest sum of magnitudes. ``above`` is the raw row before ``block`` (zeros for the
    first row of the image). ``refine`` then re-picks each row's filter by the bits its
    bytes would cost under the byte frequencies of the rows so filtered: a closer guess of
    what deflate's Huffman codes charge (0.02-0.3% smaller on the sample photographs, 4x
    smaller on a 16-bit gradient, for about one more pass of the heuristic's cost)."""
    out = np.empty((block.shape[0], block.shape[1] + 1), np.uint8)
    step = max(1, _ADAPTIVE_CHUNK_BYTES // block.shape[1])
    for r0 in range(0, block.shape[0], step):
        rows = block[r0 : r0 + step]
        up = np.concatenate([(above if r0 == 0 else block[r0 - 1])[None], rows[:-1]])
        left, upper_left = np.zeros_like(rows), np.zeros_like(rows)
        left[:, bpp:], upper_left[:, bpp:] = rows[:, :-bpp], up[:, :-bpp]
        # Paeth: the neighbour nearest to left + up - upper_left (ties: left, up, upper left)
        a, b, c = (v.astype(np.int16) for v in (left, up, upper_left))
        pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upper_left))
        average = (left & up) + ((left ^ up) >> 1)  # floor((left + up) / 2) in 8 bits
        candidates = np.stack([rows, rows - left, rows - up, rows - average, rows - paeth])
        magnitude = np.minimum(candidates, 0 - candidates)  # |byte as signed| (mod 256)
        best = magnitude.sum(axis=2, dtype=np.int64).argmin(axis=0)
        picked = np.arange(rows.shape[0])
        if refine:
            counts = np.bincount(candidates[best, picked].ravel(), minlength=256) + 0.5
            bits = (np.log2(counts.sum()) - np.log2(counts)).astype(np.float32)
            best = bits[candidates].sum(axis=2).argmin(axis=0)
        out[r0 : r0 + step, 0] = best
        out[r0 : r0 + step, 1:] = candidates[best, picked]
    return out


def _deflate_bands(make: Callable[[int], memoryview], starts: range, level: int) -> Iterator[bytes]:
    """One zlib stream of the bands ``make(start)``, made and deflated on a thread per CPU.

    As pigz does: each band is a raw deflate stream ended on a byte boundary (a sync
    flush), so the pieces join into one stream; the zlib header and the Adler-32 of all
    the bytes wrap them (each band's checksum is taken on its thread and joined here,
    :func:`adler32_combine`). zlib, ISA-L and numpy release the GIL, so the bands are made
    and compressed in parallel; at most two bands per thread are held at once. Level 1
    deflates with ISA-L where it is installed; above :data:`ADAPTIVE_RLE_LEVEL` each band
    is deflated both ways (run lengths, and string matching at ``level``), the smaller kept.
    """
    last = starts[-1]
    isal_zlib = _isal() if level == SUB_RLE_LEVEL else None
    if level == 0:
        strategies = [(0, zlib.Z_DEFAULT_STRATEGY)]
    elif level <= ADAPTIVE_RLE_LEVEL:
        strategies = [(1, zlib.Z_RLE)]  # RLE ignores the level: 1 is as good as any
    else:
        strategies = [(1, zlib.Z_RLE), (level, zlib.Z_FILTERED)]

    def deflate(start: int) -> tuple[bytes, int, int]:
        raw = make(start)
        final = start == last
        pieces = []
        if isal_zlib is not None:  # level 1: ISA-L
            compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15)
            end = isal_zlib.Z_FINISH if final else isal_zlib.Z_SYNC_FLUSH
            deflated = compressor.compress(raw) + compressor.flush(end)
            return deflated, isal_zlib.adler32(raw), len(raw)  # ISA-L's: 5x zlib's speed
        end = zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH
        for zlevel, strategy in strategies:
            compressor = zlib.compressobj(zlevel, zlib.DEFLATED, -15, 9, strategy)
            pieces.append(compressor.compress(raw) + compressor.flush(end))
        return min(pieces, key=len), zlib.adler32(raw), len(raw)

    workers = min(cpu_count(), len(starts))

    def pieces() -> Iterator[tuple[bytes, int, int]]:
        if workers == 1:  # one band (most images in a batch): no pool to start per file
            yield from map(deflate, starts)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            for first in range(0, len(starts), 2 * workers):
                yield from pool.map(deflate, starts[first : first + 2 * workers])

    yield b"\x78\x01"  # zlib header: deflate, 32 KiB window; (0x7801 % 31 == 0)
    adler = 1
    for data, band_adler, length in pieces():
        adler = adler32_combine(adler, band_adler, length)
        yield data
    yield struct.pack(">I", adler)


def _imagecodecs() -> Any:
    """The ``imagecodecs`` package (libspng, libpng), or None where it is not installed."""
    try:
        import imagecodecs
    except ImportError:
        return None
    return imagecodecs


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
    crc32 = (_isal() or zlib).crc32  # ISA-L's: 3x zlib's speed (6.5 -> 2 ms for 25 MB)
    f.write(struct.pack(">I", crc32(data, crc32(kind)) & 0xFFFFFFFF))

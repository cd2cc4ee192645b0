"""PNG and APNG files: convtool's own writer, with the metadata chunks and animation.

Pillow cannot hold 16-bit colour, and its filter choice is slow, so PNGs of every depth
and level are written here, band by band on all CPUs (:func:`deflate_frame`; what each
``--compress-level`` does is said above :data:`SUB_RLE_LEVEL`). Around the pixels go the
chunks that carry metadata (iCCP, pHYs, eXIf, tEXt/iTXt, XMP in iTXt) and, for several frames, APNG's
acTL/fcTL/fdAT. Frames are whole canvases (as read), so each replaces the last
(``APNG_BLEND_OP_SOURCE``) and its disposal is kept as read.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np

from convtool._system import cpu_count
from convtool.images.frames import DISPOSALS, Timing
from convtool.images.metadata import Metadata

__all__ = ["ADAPTIVE_RLE_LEVEL", "SUB_RLE_LEVEL", "write_png"]

# What each --compress-level means (measured on samples/*.png and a 3840x2160 photo-like
# image, see the README): 0 stores the rows; 1 filters every row with Sub and deflates with
# zlib's run-length strategy (Z_RLE: the fastest, and on filtered photographs smaller than
# deflate's level-1 string matching); 2 picks each row's filter as libpng does (the one of
# None, Sub, Up, Average, Paeth with the smallest sum of |signed bytes|), 3-12% smaller on
# the photographs for a few more passes over the rows; from 3 on the filters are re-picked
# by estimated Huffman cost and deflated both with Z_RLE and with string matching at that
# zlib level (Z_FILTERED), keeping the smaller per band: string matching wins on drawings
# and flat areas and costs more at each level.
SUB_RLE_LEVEL = 1
ADAPTIVE_RLE_LEVEL = 2

_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels → grey, grey+alpha, RGB, RGBA
_BAND_BYTES = 8 << 20  # rows filtered at once: bounds memory for any image size
_XMP_KEYWORD = b"XML:com.adobe.xmp"
_INCH = 0.0254  # metres


def write_png(
    f: BinaryIO,
    frames: list[np.ndarray],
    bits: int,
    level: int,
    metadata: Metadata | None = None,
    timing: Timing | None = None,
) -> None:
    """Write 8- or 16-bit (H, W, C) samples as a PNG, or as an APNG for several frames.

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


def deflate_frame(samples: np.ndarray, bits: int, level: int) -> Iterator[bytes]:
    """One frame's rows, filtered and deflated band by band on all CPUs, at a zlib ``level``.

    A row's filter reads only raw rows, never filtered ones, so each band needs nothing but
    its own rows and the one above: the bands are filtered and deflated on all CPUs at once
    (see :func:`_deflate_bands`), in bounded memory. What each level does is said above
    :data:`SUB_RLE_LEVEL`.
    """
    height = samples.shape[0]
    dtype = ">u2" if bits == 16 else np.uint8
    rows = samples.astype(dtype, copy=False).reshape(height, -1).view(np.uint8)
    bpp = bits // 8 * samples.shape[2]
    band = max(1, _BAND_BYTES // rows.shape[1])

    def filtered(start: int) -> bytes:
        block = rows[start : start + band]
        if level == 0:
            out = np.empty((block.shape[0], block.shape[1] + 1), np.uint8)
            out[:, 0], out[:, 1:] = 0, block  # filter None: stored as it is
            return out.tobytes()
        if level <= SUB_RLE_LEVEL:
            return _sub_filtered(block, bpp).tobytes()
        above = rows[start - 1] if start else np.zeros(rows.shape[1], np.uint8)
        refine = level > ADAPTIVE_RLE_LEVEL
        return _adaptive_filtered(block, above, bpp, refine).tobytes()

    yield from _deflate_bands(filtered, range(0, height, band), level)


def _sub_filtered(block: np.ndarray, bpp: int) -> np.ndarray:
    """Rows with filter 1 (Sub: each byte minus the same byte of the pixel to its left)."""
    out = np.empty((block.shape[0], block.shape[1] + 1), np.uint8)
    out[:, 0] = 1  # the filter type byte
    out[:, 1 : bpp + 1] = block[:, :bpp]
    np.subtract(block[:, bpp:], block[:, :-bpp], out=out[:, bpp + 1 :])  # mod 256
    return out


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


def _deflate_bands(make: Callable[[int], bytes], starts: range, level: int) -> Iterator[bytes]:
    """One zlib stream of the bands ``make(start)``, deflated on a thread per CPU.

    As pigz does: each band is a raw deflate stream ended on a byte boundary (a sync
    flush), so the pieces join into one stream; the zlib header and the Adler-32 of all
    the bytes wrap them. zlib releases the GIL, so the bands compress in parallel; at most
    two bands per thread are held at once. Above :data:`ADAPTIVE_RLE_LEVEL` each band
    is deflated both ways (run lengths, and string matching at ``level``), the smaller kept.
    """
    from concurrent.futures import ThreadPoolExecutor

    last = starts[-1]
    if level == 0:
        strategies = [(0, zlib.Z_DEFAULT_STRATEGY)]
    elif level <= ADAPTIVE_RLE_LEVEL:
        strategies = [(1, zlib.Z_RLE)]  # RLE ignores the level: 1 is as good as any
    else:
        strategies = [(1, zlib.Z_RLE), (level, zlib.Z_FILTERED)]

    def deflate(start: int) -> tuple[bytes, bytes]:
        raw = make(start)
        end = zlib.Z_FINISH if start == last else zlib.Z_SYNC_FLUSH
        pieces = []
        for zlevel, strategy in strategies:
            compressor = zlib.compressobj(zlevel, zlib.DEFLATED, -15, 9, strategy)
            pieces.append(compressor.compress(raw) + compressor.flush(end))
        return raw, min(pieces, key=len)

    workers = min(cpu_count(), len(starts))

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


def _chunk(f: BinaryIO, kind: bytes, data: bytes) -> None:
    f.write(struct.pack(">I", len(data)) + kind)
    f.write(data)
    f.write(struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

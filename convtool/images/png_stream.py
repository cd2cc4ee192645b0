"""A PNG's pixel stream: the header, the IDAT chunks joined, inflated within its size.

The standard library only (no numpy, no Pillow), so that :mod:`convtool.images.readahead`
can run it on a thread while the interpreter is still importing those. Everything here
declines (returns None) rather than raising on what it does not take: a kind of PNG it does
not decode (palette, interlaced, a tRNS colour, a bit depth under 8), a damaged chunk, a CRC
that does not match, a stream that inflates to more or fewer bytes than the header says.
The caller then decodes the file by libspng or Pillow, which say what is wrong.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = ["PngHeader", "idat_stream", "inflate", "isal_zlib", "read_header"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type → samples per pixel (grey, RGB, LA, RGBA)
# Chunks that change what the samples mean (a palette, a transparent colour): declined.
_CHANGES_SAMPLES = (b"PLTE", b"tRNS")


@dataclass(frozen=True)
class PngHeader:
    """What IHDR says of a PNG this module decodes: 8 or 16 bits, not interlaced."""

    width: int
    height: int
    bits: int  # 8 or 16
    channels: int  # 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA

    @property
    def row_bytes(self) -> int:
        return self.width * self.channels * self.bits // 8

    @property
    def pixel_bytes(self) -> int:
        """Bytes of one pixel: how far back the Sub, Average and Paeth filters look."""
        return self.channels * self.bits // 8

    @property
    def stream_bytes(self) -> int:
        """The inflated stream's size: each row its filter byte and its samples."""
        return self.height * (self.row_bytes + 1)


def read_header(data: bytes) -> PngHeader | None:
    """The header of a PNG this module decodes, from its first 33 bytes; else None."""
    if len(data) < 33 or not data.startswith(SIGNATURE) or data[12:16] != b"IHDR":
        return None
    if int.from_bytes(data[8:12], "big") != 13 or not _crc_matches(data, 8, 13):
        return None
    width, height, bits, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", data[16:29]
    )
    if (
        bits not in (8, 16)
        or colour not in _CHANNELS
        or (compression, filtering, interlace)
        != (
            0,
            0,
            0,
        )
    ):
        return None
    if not (0 < width < 2**31 and 0 < height < 2**31):
        return None
    return PngHeader(width, height, bits, _CHANNELS[colour])


def idat_stream(data: bytes) -> bytes | None:
    """The zlib stream of the IDAT chunks of *data* joined; None where this module declines.

    Every chunk's length is checked against the file, the IDAT chunks must be consecutive,
    and IEND must end the file's chunks; APNG (acTL), a palette or a tRNS chunk is
    declined. The chunks' CRCs are not checked here: the inflated stream carries its own
    checksum (Adler-32, checked by :func:`inflate`), and the chunks before the pixels have
    been checked by Pillow's reading of the header (which checks none of the IDAT ones
    either). One CRC call per 64 KiB chunk would also take the GIL back ~270 times for a
    4K photograph: on a thread beside the interpreter's imports, each wait for the GIL
    costs up to 5 ms (the switch interval), which made the read-ahead slower than the
    imports it hides behind.
    """
    offset = len(SIGNATURE)
    pieces: list[bytes] = []
    ended_idat = False
    while offset + 12 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        if length > 2**31 - 1 or offset + 12 + length > len(data):
            return None
        if kind == b"IEND":
            return b"".join(pieces) if pieces else None
        if kind == b"IDAT":
            if ended_idat:
                return None
            pieces.append(data[offset + 8 : offset + 8 + length])
        else:
            if kind in _CHANGES_SAMPLES or kind == b"acTL":
                return None
            ended_idat = bool(pieces)
        offset += 12 + length
    return None  # no IEND: a truncated file


def _crc_matches(data: bytes, offset: int, length: int) -> bool:
    """Whether the chunk at *offset* (its *length* data bytes) carries the CRC of its type
    and data."""
    stored = int.from_bytes(data[offset + 8 + length : offset + 12 + length], "big")
    return zlib.crc32(memoryview(data)[offset + 4 : offset + 8 + length]) == stored


def inflate(stream: bytes, size: int) -> bytes | None:
    """*stream* (zlib) inflated, if it holds exactly *size* bytes and ends there; else None.

    Never more than ``size + 1`` bytes are made, whatever the stream: a decompression
    bomb stops at its declared size. ISA-L's inflate where the ``isal`` package is
    installed (about 1.8x zlib's speed on a 4K photograph's stream), else zlib; both release
    the GIL while they inflate.
    """
    inflater = isal_zlib() or zlib
    try:
        engine = inflater.decompressobj()
        raw = engine.decompress(stream, size + 1)
    except (inflater.error, ValueError):
        return None
    if len(raw) != size or not engine.eof or engine.unconsumed_tail or engine.unused_data:
        return None
    return raw


def isal_zlib() -> Any:
    """ISA-L's zlib module, or None where the ``isal`` package is not installed."""
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib

"""Read a command's one PNG or JPEG input and decode its pixels on a thread, while Python imports.

A one-image ``convtool filter`` spends its first ~0.15 s importing numpy, Pillow and
convtool, on one core. Inflating a 4K PNG's pixel stream takes about as long, and zlib and
ISA-L release the GIL while they inflate; libjpeg-turbo (``simplejpeg``) releases it while
it decodes a JPEG. So the CLI calls :func:`start` before those imports, and the decoders
ask for the work done on the bytes they were handed (:func:`inflated` in
:mod:`convtool.images.png_pixels`, :func:`jpeg_samples` in :mod:`convtool.images.codecs`),
which are then the very bytes this thread read (:func:`file_bytes`): the file is read once,
and what is decoded is one snapshot of it.

A PNG's stream is inflated with the standard library and ISA-L alone, as soon as the file is
read. A JPEG is decoded by :mod:`convtool.images.jpeg`, which imports numpy: on this thread
that import runs beside the main thread's (Python's module locks make whichever comes
second wait for the first), and the decode then runs while the main thread imports Pillow
and convtool.

Nothing here raises: whatever does not fit (not a regular file, not a kind these decoders
take, over the pixel limit or :data:`MAX_SAMPLE_BYTES`, a damaged file, a file changed
since it was read) just leaves the ordinary read to do its work and say what is wrong.
Sizes are checked from the header before any memory is spent.
"""

from __future__ import annotations

import os
import stat
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

from convtool.images.png_stream import SIGNATURE as PNG_SIGNATURE
from convtool.images.png_stream import idat_stream, inflate, read_header

__all__ = ["MAX_SAMPLE_BYTES", "file_bytes", "inflated", "jpeg_samples", "start"]

MAX_SAMPLE_BYTES = 1 << 26
"""The largest decoded image (or inflated PNG stream) read ahead (64 MiB: 4K RGBA at 16
bits and under); a larger one waits for the ordinary read, which may stream it or check
its memory first."""
_HEAD_BYTES = 33  # a PNG's signature and IHDR
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_JPEG_MODES = {1: "L", 3: "RGB"}  # components → the mode Pillow gives (and jpeg.decode takes)
# Start-of-frame markers: baseline, extended, progressive, lossless, arithmetic (not DHT C4,
# JPG C8, DAC CC)
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass
class _Ahead:
    identity: tuple[int, int, int, int] | None = None  # device, inode, size, mtime of the read
    data: bytes | None = None  # the file's bytes, until file_bytes hands them out
    given: bytes | None = None  # the same bytes, handed out: the decoders know them by identity
    raw: bytes | None = None  # a PNG's inflated pixel stream
    jpeg: tuple[str, tuple[int, int], Any] | None = None  # a JPEG's mode, size, samples
    done: threading.Event = field(default_factory=threading.Event)


_ahead: _Ahead | None = None


def start(path: str, max_pixels: int | None) -> None:
    """Begin reading and decoding *path* on a daemon thread (once per process)."""
    global _ahead
    if _ahead is not None or path == "-":
        return
    _ahead = ahead = _Ahead()
    threading.Thread(
        target=_read, args=(ahead, path, max_pixels), name="convtool-readahead", daemon=True
    ).start()


def file_bytes(path: str | os.PathLike[str]) -> bytes | None:
    """The bytes read ahead, if *path* is the file read (its device and inode) and it is
    unchanged since (size and modification time); else None.

    They are handed out once: the next call returns None.
    """
    ahead = _ahead
    if ahead is None:
        return None
    ahead.done.wait()
    data, ahead.data = ahead.data, None
    if data is None:
        return None
    try:
        unchanged = _identity(os.stat(path)) == ahead.identity
    except OSError:
        unchanged = False
    if not unchanged:
        ahead.raw = ahead.jpeg = None
        return None
    ahead.given = data
    return data


def inflated(data: bytes) -> bytes | None:
    """The inflated pixel stream of the PNG *data*, if *data* is the very bytes handed out
    by :func:`file_bytes`; once."""
    ahead = _ahead
    if ahead is None or ahead.given is None or ahead.given is not data:
        return None
    raw, ahead.raw, ahead.given = ahead.raw, None, None
    return raw


def jpeg_samples(data: bytes, mode: str, size: tuple[int, int]) -> Any:
    """The samples :func:`convtool.images.jpeg.decode` gave for the JPEG *data* in *mode*
    at *size* (width, height), if *data* is the very bytes handed out by :func:`file_bytes`
    and they were decoded so; once. None otherwise."""
    ahead = _ahead
    if ahead is None or ahead.given is None or ahead.given is not data or ahead.jpeg is None:
        return None
    (read_mode, read_size, samples), ahead.jpeg, ahead.given = ahead.jpeg, None, None
    return samples if (read_mode, read_size) == (mode, tuple(size)) else None


def _read(ahead: _Ahead, path: str, max_pixels: int | None) -> None:
    try:
        _read_file(ahead, path, max_pixels)
    except (OSError, MemoryError, ValueError, ImportError):
        ahead.data = ahead.raw = ahead.jpeg = None
    finally:
        ahead.done.set()


def _read_file(ahead: _Ahead, path: str, max_pixels: int | None) -> None:
    if not stat.S_ISREG(os.stat(path).st_mode):
        return  # a pipe or a device is never opened: even opening a FIFO meets its writer
    # O_NONBLOCK: should the path have become a FIFO since, opening it does not wait
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SAMPLE_BYTES + (1 << 20):
            return  # far more bytes than the images read ahead hold: the ordinary read decides
        with os.fdopen(fd, "rb", closefd=False) as f:
            head = f.read(_HEAD_BYTES)
            png = read_header(head) if head.startswith(PNG_SIGNATURE) else None
            if png is None and not head.startswith(_JPEG_SIGNATURE):
                return
            if png is not None and not _fits(png.width, png.height, png.stream_bytes, max_pixels):
                return
            data = head + f.read()
        if _identity(os.fstat(fd)) != _identity(info) or len(data) != info.st_size:
            return
    finally:
        os.close(fd)
    ahead.identity, ahead.data = _identity(info), data
    if png is not None:
        if not _unfiltering_built():
            return  # libspng decodes it whole: an inflated stream would go unused
        stream = idat_stream(data)
        if stream is not None:
            ahead.raw = inflate(stream, png.stream_bytes)
        return
    frame = _jpeg_frame(data)
    if frame is None:
        return
    width, height, components = frame
    if components not in _JPEG_MODES or not _fits(
        width, height, width * height * components, max_pixels
    ):
        return
    from convtool.images import jpeg  # numpy, imported beside the main thread's imports

    mode = _JPEG_MODES[components]
    samples = jpeg.decode(data, mode, (width, height))
    if samples is not None:
        ahead.jpeg = (mode, (width, height), samples)


def _unfiltering_built() -> bool:
    try:
        import convtool.images._png  # noqa: F401 - the compiled unfiltering (no numpy)
    except ImportError:
        return False
    return True


def _fits(width: int, height: int, size: int, max_pixels: int | None) -> bool:
    return size <= MAX_SAMPLE_BYTES and not (max_pixels and width * height > max_pixels)


def _jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from a JPEG's start-of-frame segment, or None."""
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # no length
            offset += 2
            continue
        if marker in (0xD9, 0xDA):  # the end, or scan data before any frame header
            return None
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if offset + 10 > len(data) or length < 8:
                return None
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return (width, height, data[offset + 9]) if width and height else None
        offset += 2 + length
    return None


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

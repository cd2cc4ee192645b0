"""Read a command's one PNG input and inflate its pixels on a thread, while Python imports.

A one-image ``convtool filter`` spends its first ~0.15 s importing numpy, Pillow and
convtool, on one core; inflating a 4K PNG's pixel stream takes about as long, and zlib and
ISA-L release the GIL while they inflate. So the CLI calls :func:`start` before those
imports and the decoder (:mod:`convtool.images.png_pixels`) asks :func:`inflated` for the
stream of the bytes it was handed, which are then the same bytes this thread read
(:func:`file_bytes`): the file is read once, and what is decoded is one snapshot of it.

The standard library only, and nothing here raises: whatever does not fit (not a regular
file, not a PNG this decoder takes, over the pixel limit or :data:`MAX_STREAM_BYTES`, a
damaged stream, a file changed since it was read) just leaves the ordinary read to do its
work and say what is wrong. Sizes are checked from the header before any memory is spent.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass, field

from convtool.images.png_stream import idat_stream, inflate, read_header

__all__ = ["MAX_STREAM_BYTES", "file_bytes", "inflated", "start"]

MAX_STREAM_BYTES = 1 << 26
"""The largest inflated stream read ahead (64 MiB: 4K RGBA at 16 bits and under); a larger
image waits for the ordinary read, which may stream it or check its memory first."""
_HEAD_BYTES = 33  # signature and IHDR


@dataclass
class _Ahead:
    path: str
    identity: tuple[int, int, int, int] | None = None  # device, inode, size, mtime of the read
    data: bytes | None = None  # the file's bytes, until file_bytes hands them out
    given: bytes | None = None  # the same bytes, handed out: inflated() knows them by identity
    raw: bytes | None = None  # their inflated pixel stream
    done: threading.Event = field(default_factory=threading.Event)


_ahead: _Ahead | None = None


def start(path: str, max_pixels: int | None) -> None:
    """Begin reading and inflating *path* on a daemon thread (once per process)."""
    global _ahead
    if _ahead is not None or path == "-" or os.environ.get("RA_OFF"):
        return
    _ahead = ahead = _Ahead(path)
    threading.Thread(
        target=_read, args=(ahead, max_pixels), name="convtool-readahead", daemon=True
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
        ahead.raw = None
        return None
    ahead.given = data
    return data


def inflated(data: bytes) -> bytes | None:
    """The inflated pixel stream of *data*, if *data* is the very bytes handed out by
    :func:`file_bytes`; once."""
    ahead = _ahead
    if ahead is None or ahead.given is None or ahead.given is not data:
        return None
    raw, ahead.raw, ahead.given = ahead.raw, None, None
    return raw


def _read(ahead: _Ahead, max_pixels: int | None) -> None:
    try:
        _read_file(ahead, max_pixels)
    except (OSError, MemoryError, ValueError):
        ahead.data = ahead.raw = None
    finally:
        ahead.done.set()


def _read_file(ahead: _Ahead, max_pixels: int | None) -> None:
    if not stat.S_ISREG(os.stat(ahead.path).st_mode):
        return  # a pipe or a device is never opened: even opening a FIFO meets its writer
    # O_NONBLOCK: should the path have become a FIFO since, opening it does not wait
    fd = os.open(ahead.path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return
        with os.fdopen(fd, "rb", closefd=False) as f:
            header = read_header(f.read(_HEAD_BYTES))
            if header is None or header.stream_bytes > MAX_STREAM_BYTES:
                return
            if max_pixels and header.width * header.height > max_pixels:
                return
            if info.st_size > 2 * header.stream_bytes + (1 << 20):
                return  # more bytes than pixels could need: the ordinary read decides
            f.seek(0)
            data = f.read()
        if _identity(os.fstat(fd)) != _identity(info) or len(data) != info.st_size:
            return
    finally:
        os.close(fd)
    ahead.identity, ahead.data = _identity(info), data
    stream = idat_stream(data)
    if stream is not None:
        ahead.raw = inflate(stream, header.stream_bytes)


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

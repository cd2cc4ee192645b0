"""Standard output: every byte written, or one clear failure — never a silent partial result.

Everything convtool writes to stdout (image bytes for ``-o -``, listings, JSON, help and
``--version``) goes through one writer, installed by the CLI for the run
(:func:`install`) over file descriptor 1:

- it writes until every byte is out: a short write continues where it stopped, a
  non-blocking pipe that is full is waited on (``select``), an interrupted call resumes;
- a failure becomes :class:`~convtool.errors.StdoutError` (one line, exit 1): disk full
  (``>/dev/full``), a closed stdout (``>&-``), any other write error;
- a pipe whose reader has gone (``| head -c 10``, EPIPE) becomes
  :class:`~convtool.errors.ClosedPipe`: no message and exit 141 = 128 + SIGPIPE, what a
  shell reports for ``cat``, ``gzip -c`` or ``yes`` in the same place, so
  ``set -o pipefail`` still sees that the output was cut;
- after a failure the writer drops what is left, so nothing more is reported at exit.

:func:`install` also makes sure file descriptors 0, 1 and 2 are open (a closed one gets
``/dev/null``; stdout read-only, so that writing to it still fails), so that no file the
run opens can land on them and receive another stream's bytes. :func:`write_all` is the
same rule for any binary stream (the library's ``write_image(..., stdout=stream)``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import select
import sys
from typing import BinaryIO

from convtool.errors import ClosedPipe, StdoutError

__all__ = ["ClosedPipe", "StdoutError", "flush", "install", "write_all"]

# The reader of the pipe went away: not a failure to report, as for cat | head.
_CLOSED_PIPE_ERRNOS = (errno.EPIPE, errno.ECONNRESET)
_REASONS = {
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EBADF: "standard output is closed",
    errno.EAGAIN: "it would block (a non-blocking stream that is full)",
}


def error_for(err: OSError) -> StdoutError:
    """The one-line error for an OSError met while writing to stdout."""
    if err.errno in _CLOSED_PIPE_ERRNOS:
        return ClosedPipe("cannot write to stdout: the reader closed the pipe")
    reason = _REASONS.get(err.errno or 0) or (err.strerror or str(err)).rstrip(".").lower()
    return StdoutError(f"cannot write to stdout: {reason}")


def write_all(stream: BinaryIO, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of *data* to the binary *stream* and flush it; failures → StdoutError.

    A raw stream may take fewer bytes than offered: the rest follows. A stream that takes
    none (or would block, without saying how much it took) is a failure, never a silent cut.
    """
    view = memoryview(data).cast("B")
    try:
        while view:
            count = stream.write(view)
            if not count:
                raise OSError(errno.EAGAIN, "the stream took no bytes")
            view = view[count:]
        stream.flush()
    except OSError as err:
        raise error_for(err) from None


class _Stdout(io.RawIOBase):
    """File descriptor 1 as a raw stream that writes everything or raises StdoutError."""

    def __init__(self, fd: int = 1) -> None:
        super().__init__()
        self._fd = fd
        self.failed = False

    def fileno(self) -> int:
        return self._fd

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        if self.failed:
            return len(view)  # already reported once: drop the rest quietly
        done = 0
        while done < len(view):
            try:
                count = os.write(self._fd, view[done:])
            except BlockingIOError:  # stdout set non-blocking by someone else: wait for room
                select.select([], [self._fd], [])
                continue
            except OSError as err:
                self.failed = True
                raise error_for(err) from None
            if count == 0:
                self.failed = True
                raise StdoutError("cannot write to stdout: it took no bytes")
            done += count
        return done


_installed: _Stdout | None = None


def install() -> None:
    """Route ``sys.stdout`` through the checking writer; make fds 0–2 safe (once a process).

    Only when ``sys.stdout`` is the process's own file descriptor 1 (or missing because fd
    1 was closed): a test harness's captured stream is left as it is.
    """
    global _installed
    if _installed is not None:
        return
    _occupy_closed_descriptors()
    current = sys.stdout
    if current is not None and _fileno(current) != 1:
        return
    _installed = _Stdout(1)
    encoding = getattr(current, "encoding", None) or "utf-8"
    errors = getattr(current, "errors", None) or "backslashreplace"
    with contextlib.suppress(OSError, ValueError):
        if current is not None:
            current.flush()
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(_installed),
        encoding=encoding,
        errors=errors,
        line_buffering=_installed.isatty(),
    )
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - the process's stderr
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's stdin


def flush() -> None:
    """Flush ``sys.stdout`` now, so that a failure is reported here and not lost at exit."""
    stream = sys.stdout
    if stream is None:
        return
    try:
        stream.flush()
    except OSError as err:
        raise error_for(err) from None


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None


def _occupy_closed_descriptors() -> None:
    """Give a closed fd 0, 1 or 2 ``/dev/null``, so no file opened later can take its place.

    stdout gets it read-only: writing there still fails (EBADF), as the closed stdout did.
    """
    for fd, flags in ((0, os.O_RDONLY), (1, os.O_RDONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            try:
                opened = os.open(os.devnull, flags)
            except OSError:
                continue
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)

"""The one exception family of convtool.

The CLI catches :class:`ConvtoolError` once, prints its message as a single line on
stderr and exits with :attr:`ConvtoolError.exit_code`. Messages therefore say what
went wrong, which file or option, and what to do, in one line.
"""

from __future__ import annotations


class ConvtoolError(Exception):
    """A failure the user can act on; ``str(err)`` is the one-line message."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class UsageError(ConvtoolError):
    """The invocation is wrong: a bad option value, kernel spec or combination (exit 2)."""

    exit_code = 2


class KernelError(UsageError):
    """A kernel spec or kernel file that cannot be turned into a kernel."""


class UnknownKernelError(KernelError):
    """A spec naming no kernel; ``name`` is the name as read (lower case, ``_`` as ``-``)."""

    def __init__(self, message: str, *, name: str) -> None:
        self.name = name
        super().__init__(message)


class ImageReadError(ConvtoolError):
    """An input image that is missing, unreadable, corrupt or of an unsupported kind."""


class ImageWriteError(ConvtoolError):
    """An output that cannot be written (folder missing or read-only, disk full, bad format)."""


class ResourceLimitError(ConvtoolError):
    """The work would exceed a safety limit (pixels, kernel size, memory)."""


class StdoutError(ConvtoolError):
    """Standard output did not take every byte: disk full, closed, a write error (exit 1)."""


class ClosedPipe(StdoutError):
    """The reader of stdout went away (``| head``): exit 141 (128 + SIGPIPE), no message.

    That is what a shell reports for ``cat``, ``gzip -c`` or ``yes`` cut off the same way.
    """

    exit_code = 141
    quiet = True

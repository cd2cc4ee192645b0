"""The one exception family of convtool, and how any text is made safe to print.

The CLI catches :class:`ConvtoolError` once, prints its message as a single line on
stderr and exits with :attr:`ConvtoolError.exit_code`. Messages therefore say what
went wrong, which file or option, and what to do, in one line.

Messages carry names (file names, kernel specs) and, rarely, a piece of a file. Neither
may take over the terminal or flood it: :func:`printable` escapes control characters
(ESC, BEL, a newline in a file name, bidirectional overrides), :func:`one_line` is what
every printed line goes through (escaped, on one line, at most :data:`MAX_LINE`
characters), and :func:`excerpt` is the only way a message quotes text it did not write
itself (short, quoted, escaped).
"""

from __future__ import annotations

MAX_LINE = 500
"""Characters at most in one printed message line (longer ones lose their middle)."""

EXCERPT = 40
"""Characters at most that a message quotes from the user's or a file's text."""


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


# ------------------------------------------------------------------------- safe text

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with every character a terminal could act on written as an escape.

    What Python's ``str.isprintable`` calls unprintable is escaped: control characters (C0,
    DEL, C1: ESC, BEL, newline, ...), format characters (bidirectional overrides, zero-width
    ones), line and paragraph separators, spaces other than the ASCII one, and the
    surrogates that stand for undecodable bytes of a file name. They become ``\\n``,
    ``\\x1b``, ``\\u202e``, ``\\xff`` (the byte itself, for a surrogate). Everything else,
    non-ASCII letters included, is kept: ``printable("a\\x1b[2J.png") == "a\\\\x1b[2J.png"``.
    """
    text = str(text)
    if text.isprintable():  # the common case, checked in C
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    if char in _ESCAPES:
        return _ESCAPES[char]
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for the raw byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def one_line(message: object, limit: int = MAX_LINE) -> str:
    """``message`` as one printable line of at most ``limit`` characters.

    Escaped by :func:`printable` (so a newline in a name cannot start a new line), runs of
    spaces collapsed, and a line that is still too long cut in its middle, where an
    excerpt or a long path is, keeping the start (what and which file) and the end
    (what to do).
    """
    text = str(message)
    if len(text) > 4 * limit:  # cut first, so that a 50 MB message costs no 50 MB of work
        text = text[: 2 * limit] + " … " + text[-limit:]
    text = " ".join(printable(text).split())
    if len(text) <= limit:
        return text
    tail = limit // 3
    return text[: limit - tail - 3] + " … " + text[-tail:]


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """``text`` quoted for a message: at most ``limit`` characters, escaped (``'1.2.3'``)."""
    text = str(text)
    shown = text[:limit] + ("…" if len(text) > limit else "")
    return repr(shown)

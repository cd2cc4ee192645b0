"""Keeping C libraries' chatter off stderr, where convtool promises one line per error."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["native_stderr_discarded"]


@contextlib.contextmanager
def native_stderr_discarded(enabled: bool = True) -> Iterator[None]:
    """Point file descriptor 2 at a scratch file meanwhile (when *enabled*).

    For decoders that print from C (libtiff inside Pillow, libpng): what they say is either
    harmless or followed by an exception that becomes convtool's own message.
    """
    saved = None
    if enabled:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            saved = os.dup(2)
    if saved is None:
        yield
        return
    try:
        import tempfile  # (random, shutil...): only when a library is to be quietened

        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)

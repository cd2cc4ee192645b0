"""Everything a user would see on stderr while some code runs, gathered as lines.

That is more than ``sys.stderr``: warnings (which pytest would otherwise swallow), log
records of WARNING and above (printed by logging's last resort in a real run; pytest's own
handlers catch them) and what C libraries write straight to file descriptor 2.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"log {record.name}: {record.getMessage()}")


@contextlib.contextmanager
def warnings_as_a_user_sees_them() -> Iterator[list]:
    """Record the warnings Python's default filters would print (not pytest's filters)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for category in (
            DeprecationWarning,
            PendingDeprecationWarning,
            ImportWarning,
            ResourceWarning,
        ):
            warnings.filterwarnings("ignore", category=category)
        yield caught


@contextlib.contextmanager
def stderr_chatter() -> Iterator[list[str]]:
    """Yield a list that, after the block, holds the stderr lines the block produced."""
    lines: list[str] = []
    records = _Records()
    root = logging.getLogger()
    root.addHandler(records)
    python_err, sys.stderr = sys.stderr, io.StringIO()
    sys.__stderr__.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink, warnings_as_a_user_sees_them() as caught:
            os.dup2(sink.fileno(), 2)
            try:
                yield lines
            finally:
                os.dup2(saved, 2)
                sink.seek(0)
                native = sink.read().decode(errors="replace")
                lines += [f"{w.category.__name__}: {w.message}" for w in caught]
    finally:
        os.close(saved)
        root.removeHandler(records)
        text = sys.stderr.getvalue()
        sys.stderr = python_err
    lines += [line for line in (text + native).splitlines() if line.strip()]
    lines += records.lines

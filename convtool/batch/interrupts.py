"""Terminating signals become an exception, so that every write cleans up before exiting.

Python turns SIGINT (Ctrl-C) into :class:`KeyboardInterrupt`; every other signal whose
default is to end the process (SIGTERM, SIGHUP when the terminal goes, SIGUSR1, SIGALRM
from a timer, ...) would end it on the spot, leaving a temporary file behind. While
:func:`signals_raise` is active they raise :class:`Interrupted`, a KeyboardInterrupt, so
the same clean-up runs (the atomic writer removes its temporary file, a batch stops its
workers) and the CLI exits with ``128 + signal``, as the shell reports a killed process.

SIGPIPE is not among them: Python ignores it, and a closed pipe on stdout is a write error
(:mod:`convtool.stdio`). A signal the caller ignores (``nohup`` ignores SIGHUP) stays
ignored; a handler the program installed itself is left alone.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["TERMINATING_SIGNALS", "Interrupted", "signals_raise"]

# The asynchronous signals whose default action ends the process (terminate or core dump)
# and that a program may catch. SIGKILL and SIGSTOP cannot be caught; SIGSEGV, SIGBUS,
# SIGFPE and SIGILL are faults of the process itself, not requests to stop.
TERMINATING_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name)
    for name in (
        "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
        "SIGVTALRM", "SIGPROF", "SIGXCPU", "SIGPWR", "SIGIO",
    )
    if hasattr(signal, name)
)  # fmt: skip


class Interrupted(KeyboardInterrupt):
    """A terminating signal arrived while :func:`signals_raise` was active; ``signum`` tells which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Make the :data:`TERMINATING_SIGNALS` raise :class:`Interrupted` inside the block.

    Only signals left at their default action are taken (an ignored or otherwise handled
    one is left as it is), only in the main thread, and the previous handlers come back
    afterwards. Only the first signal raises: the clean-up it starts is not interrupted
    by a second one (a SIGHUP to the process group, then a SIGTERM).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def interrupt(signum, frame) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Interrupted(signum)

    taken = {}
    for signum in TERMINATING_SIGNALS:
        previous = signal.getsignal(signum)
        if previous in (signal.SIG_DFL, None):
            taken[signum] = previous
            signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, previous in taken.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)

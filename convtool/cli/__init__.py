"""The command line: a thin Typer app over the library (``convtool.cli.app``)."""

from __future__ import annotations

import os

# Before numpy loads: OpenBLAS starts a thread per core at import (about 40 ms of CPU on
# every run, measured with hyperfine's user time), and the command never needs them: the
# engine runs its own band threads, and its one BLAS use (small stacked products in the numpy
# fallback) runs inside those threads. A value the user set is kept.
for _variable in ("OPENBLAS_NUM_THREADS",):
    os.environ.setdefault(_variable, "1")

from convtool.cli.app import app, main  # noqa: E402 - after the environment is set

__all__ = ["app", "main"]

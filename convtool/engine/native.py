"""The compiled kernels (``convtool.engine._native``), when built, and their band binds.

The C module takes bands the engine has planned and gathered (padding stays in Python) and
writes output rows; it releases the GIL, so the band thread pool runs it in parallel. The
numpy methods in :mod:`convtool.engine.bands` compute the same results and remain the
reference the tests compare with, and the fallback: when the module was not built (no
compiler at install) or ``CONVTOOL_NATIVE=0`` is set, they run instead. ``--method`` names
the algorithm (direct, separable, fft); :func:`implementation` says which code runs it.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from convtool.engine.plan import Plan

NATIVE_ENV = "CONVTOOL_NATIVE"
"""Environment variable: ``0`` runs the numpy engine even where the compiled one is built."""

_UNSET = object()
_module: object = _UNSET


def _load() -> ModuleType | None:
    global _module
    if _module is _UNSET:
        try:
            from convtool.engine import _native
        except ImportError:
            _native = None
        _module = _native
    return _module  # type: ignore[return-value]


def module() -> ModuleType | None:
    """The compiled module, or None (not built, or switched off by ``CONVTOOL_NATIVE=0``)."""
    if os.environ.get(NATIVE_ENV, "").strip() == "0":
        return None
    return _load()


def implementation() -> str:
    """Which code runs the direct and separable methods, in words for ``--debug`` and reports."""
    if os.environ.get(NATIVE_ENV, "").strip() == "0":
        return f"numpy ({NATIVE_ENV}=0)"
    native = _load()
    if native is None:
        return "numpy (compiled kernels not built)"
    return f"compiled ({native.info()['simd']})"


# Multiply-adds per compiled call (~10 ms): a band is done in calls of at most this much
# work, so a cancelled run (Ctrl-C, an error in another band) stops within one of them.
_CALL_WORK = 1 << 24


def bind_for(plan: Plan, method: str, stop: threading.Event):
    """``bind`` (see :class:`convtool.engine.bands.BandFilter`) running ``method`` compiled,
    or None when the numpy method must run (module absent, FFT, or an integer dtype).

    A band's rows go through the kernel in calls of about ``_CALL_WORK`` multiply-adds;
    once ``stop`` is set, the remaining calls are skipped (the run is being abandoned).
    """
    native = module()
    if native is None or method not in ("direct", "separable"):
        return None
    if plan.dtype not in (np.float32, np.float64):
        return None
    from convtool.engine.bands import band_buffer

    rows, cols = plan.rows, plan.cols
    geometry = (rows.stride, rows.dilation, cols.stride, cols.dilation)
    first_col = cols.offset - plan.col_start
    if method == "direct":
        weights = np.ascontiguousarray(plan.weights, dtype=np.float64)
        per_row = cols.size * weights.size

        def call(src, out, origin):
            native.correlate_direct(src, out, weights, *geometry, first_col)

    else:
        column, row = (np.ascontiguousarray(f, dtype=np.float64) for f in plan.factors)
        per_row = plan.col_count * column.size + cols.size * row.size

        def call(src, out, origin):
            # origin: where src starts in the padded image, so that running sums give the
            # same bits however the image is cut into bands
            native.correlate_separable(src, out, column, row, *geometry, first_col, origin)

    def bind(channels: int, nr: int):
        buf = band_buffer(plan, channels, nr)
        chunk = max(1, _CALL_WORK // max(1, channels * per_row))

        def run(out: np.ndarray, j0: int) -> None:
            for r0 in range(0, nr, chunk):
                if stop.is_set():
                    return
                r1 = min(r0 + chunk, nr)
                src = buf[:, rows.stride * r0 : rows.stride * (r1 - 1) + rows.span]
                call(src, out[:, r0:r1], rows.stride * (j0 + r0) + rows.offset)

        return buf, run

    return bind


def window_sums(x: np.ndarray, h: int, w: int, threads: int):
    """Sums of ``x`` and of ``x**2`` (float64, 2-D) over every h x w window at valid positions,
    computed in bands of rows on ``threads`` threads; None when the module is absent."""
    native = module()
    if native is None:
        return None
    x = np.ascontiguousarray(x, dtype=np.float64)
    rows, cols = x.shape[0] - h + 1, x.shape[1] - w + 1
    sums, squares = np.empty((rows, cols)), np.empty((rows, cols))
    band = max(1, -(-rows // max(1, threads)))

    def part(j0: int) -> None:
        j1 = min(j0 + band, rows)
        native.window_sums(x[j0 : j1 + h - 1], sums[j0:j1], squares[j0:j1], h, w, j0)

    starts = range(0, rows, band)
    if len(starts) == 1:
        part(0)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(starts)) as pool:
            for future in [pool.submit(part, j0) for j0 in starts]:
                future.result()
    return sums, squares

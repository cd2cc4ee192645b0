"""Running a plan: bands of output rows on a thread pool, each thread reusing its arrays.

A caller who wants to follow a long run (a progress bar) sets a band observer with
:func:`observe_bands`; it is told ``(bands done, bands in all)`` after each band, on the
thread that called the engine. The engine itself never draws anything.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from convtool.engine import bands, native, passes
from convtool.engine.plan import Plan, band_within_budget

BandObserver = Callable[[int, int], None]
_observer: contextvars.ContextVar[BandObserver | None] = contextvars.ContextVar(
    "convtool_band_observer", default=None
)


@contextlib.contextmanager
def observe_bands(observer: BandObserver | None) -> Iterator[None]:
    """Within the block, call ``observer(done, total)`` as each engine call's bands finish."""
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)


def run(plan: Plan, x: np.ndarray, method: str, threads: int | None) -> np.ndarray:
    """Compute all bands of output rows, on a thread pool when there are several."""
    channels = x.shape[0]
    out = np.empty((channels, plan.rows.size, plan.cols.size), dtype=plan.dtype)
    workers = threads or os.cpu_count() or 1
    stop = threading.Event()  # set when the run is abandoned: compiled bands stop early
    if method == "fft":
        from convtool.engine import (
            fft as fftconv,  # imports scipy.fft (~0.1 s): only when an FFT is asked for
        )

        wanted = fftconv.band_rows(plan)
        band = band_within_budget(plan, channels, wanted, workers, fftconv.BAND_COPIES)
        bind = _numpy_bind(fftconv.bind_for(plan, band, workers))
    else:
        wanted = plan.tuning.band_elements // (channels * plan.col_count)
        if method == "separable" and passes.is_box(plan.factors[0], plan.tuning.box_min_taps):
            # A running sum down the rows starts each band with a whole window: make
            # bands about as tall as the kernel so that start costs ~1 step per row.
            wanted = max(wanted, min(plan.rows.span, plan.tuning.running_max_band))
        band = band_within_budget(plan, channels, wanted, workers, bands.BAND_COPIES)
        bind = native.bind_for(plan, method, stop) or _numpy_bind(
            bands.direct(plan) if method == "direct" else bands.separable(plan)
        )
    starts = range(0, plan.rows.size, band)
    local = threading.local()  # each thread filters its bands in its own arrays

    def work(j0: int) -> None:
        band_filter = getattr(local, "band_filter", None)
        if band_filter is None:
            band_filter = local.band_filter = bands.BandFilter(plan, bind)
        j1 = min(j0 + band, plan.rows.size)
        # errstate is per thread: overflow to inf is a result here (clipped on writing),
        # not a warning for every band to print on stderr
        with np.errstate(over="ignore", invalid="ignore"):
            band_filter(x, j0, j1, out[:, j0:j1])

    workers = min(workers, len(starts))
    observer = _observer.get()
    if workers <= 1:
        try:
            for done, j0 in enumerate(starts, 1):
                work(j0)
                if observer is not None:
                    observer(done, len(starts))
        finally:
            stop.set()
        return out
    pool = ThreadPoolExecutor(workers)
    try:
        futures = {}
        try:
            for j0 in starts:
                futures[j0] = pool.submit(work, j0)
        except RuntimeError:
            # No thread could be started (a limit on processes, `ulimit -u`): the bands no
            # thread took are computed here, as with one thread.
            pool.shutdown(wait=True, cancel_futures=True)
        for done, j0 in enumerate(starts, 1):
            future = futures.get(j0)
            if future is None or future.cancelled():
                work(j0)
            else:
                future.result()
            if observer is not None:
                observer(done, len(starts))
    finally:
        # On Ctrl-C (or any error) drop the queued bands instead of computing them all,
        # and let the running compiled ones stop after their current call.
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    return out


def _numpy_bind(bind):
    """A numpy method's ``bind`` whose ``run`` also takes the band's first row (and ignores it:
    only the compiled running sums need it)."""

    def bind_rows(channels: int, nr: int):
        buf, run = bind(channels, nr)
        return buf, lambda out, j0: run(out)

    return bind_rows

"""Running a plan: bands of output rows on a thread pool, each thread reusing its arrays.

A caller who wants to follow a long run (a progress bar) sets a band observer with
:func:`observe_bands`; it is told ``(bands done, bands in all)`` after each band, on the
thread that called the engine. The engine itself never draws anything.

The bands of a call form a fixed grid: band ``k`` holds output rows ``k*band`` to
``(k+1)*band - 1``, whatever part of the output is asked for. Each band's result depends
only on the band (its padded input rows and its size), so computing any run of whole
bands (:func:`run_bands`) gives the same bytes as those rows of the whole call: that is
what streaming and Dask chunks rely on (see :mod:`convtool.engine.rows`).
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
    workers = threads or os.cpu_count() or 1
    stop = threading.Event()  # set when the run is abandoned: compiled bands stop early
    band, bind = prepare(plan, x.shape[0], method, workers, stop)
    return run_bands(plan, x, band, bind, 0, plan.rows.size, workers, stop)


def prepare(plan: Plan, channels: int, method: str, workers: int, stop: threading.Event):
    """``(band, bind)``: output rows per band for ``channels`` stacked images, and the
    method's ``bind`` (see :class:`bands.BandFilter`), set up once for all bands; compiled
    bands stop early once ``stop`` is set."""
    if method == "fft":
        from convtool.engine import (
            fft as fftconv,  # imports scipy.fft (~0.1 s): only when an FFT is asked for
        )

        wanted = fftconv.band_rows(plan)
        band = band_within_budget(plan, channels, wanted, workers, fftconv.BAND_COPIES)
        return band, _numpy_bind(fftconv.bind_for(plan, band, workers))
    wanted = plan.tuning.band_elements // (channels * plan.col_count)
    if method == "separable" and passes.is_box(plan.factors[0], plan.tuning.box_min_taps):  # type: ignore[index]
        # A running sum down the rows starts each band with a whole window: make
        # bands about as tall as the kernel so that start costs ~1 step per row.
        wanted = max(wanted, min(plan.rows.span, plan.tuning.running_max_band))
    band = band_within_budget(plan, channels, wanted, workers, bands.BAND_COPIES)
    bind = native.bind_for(plan, method, stop) or _numpy_bind(
        bands.direct(plan) if method == "direct" else bands.separable(plan)
    )
    return band, bind


def run_bands(
    plan: Plan, x, band: int, bind, j0: int, j1: int, workers: int, stop: threading.Event
) -> np.ndarray:
    """Output rows ``j0..j1-1`` (``j0`` on the band grid; ``j1`` too, or the last row).

    ``x`` is the image (channels, H, W), or anything indexed like it that holds the input
    rows these bands read (:class:`convtool.engine.rows.Rows`). ``stop`` is set on return.
    """
    channels = x.shape[0]
    out = np.empty((channels, j1 - j0, plan.cols.size), dtype=plan.dtype)
    starts = range(j0, j1, band)
    local = threading.local()  # each thread filters its bands in its own arrays

    def work(start: int) -> None:
        band_filter = getattr(local, "band_filter", None)
        if band_filter is None:
            band_filter = local.band_filter = bands.BandFilter(plan, bind)
        end = min(start + band, plan.rows.size)
        # errstate is per thread: overflow to inf is a result here (clipped on writing),
        # not a warning for every band to print on stderr
        with np.errstate(over="ignore", invalid="ignore"):
            band_filter(x, start, end, out[:, start - j0 : end - j0])

    workers = min(workers, len(starts))
    observer = _observer.get()
    if workers <= 1:
        try:
            for done, start in enumerate(starts, 1):
                work(start)
                if observer is not None:
                    observer(done, len(starts))
        finally:
            stop.set()
    else:
        pool = ThreadPoolExecutor(workers)
        try:
            futures = [pool.submit(work, start) for start in starts]
            for done, future in enumerate(futures, 1):
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

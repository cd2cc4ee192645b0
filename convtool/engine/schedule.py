"""Running a plan: bands of output rows on a thread pool, each thread reusing its arrays.

A caller who wants to follow a long run (a progress bar) sets a band observer with
:func:`observe_bands`; it is told ``(bands done, bands in all)`` after each band, on the
thread that called the engine. The engine itself never draws anything.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from convtool._system import cpu_count
from convtool.engine import bands, methods
from convtool.engine.plan import Plan

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
    """Compute all bands of output rows, on a thread pool when there are several.

    ``method`` (direct, separable, fft) and the plan's dtype pick the band method from
    :data:`convtool.engine.methods.METHOD_TABLE`.
    """
    channels = x.shape[0]
    out = np.empty((channels, plan.rows.size, plan.cols.size), dtype=plan.dtype)
    workers = threads or cpu_count()
    stop = threading.Event()  # set when the run is abandoned: compiled bands stop early
    band_method = methods.prepare(plan, method, channels, workers, stop)
    band = band_method.band
    starts = range(0, plan.rows.size, band)
    local = threading.local()  # each thread filters its bands in its own arrays

    def work(j0: int) -> None:
        band_filter = getattr(local, "band_filter", None)
        if band_filter is None:
            band_filter = local.band_filter = bands.BandFilter(plan, band_method)
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

"""Running a plan: bands of output rows on a thread pool, each thread reusing its arrays.

The bands of a call form a fixed grid: band ``k`` holds output rows ``k*band`` to
``(k+1)*band - 1``, whatever part of the output is asked for. Each band's result depends
only on the band (its padded input rows and its size), so computing any run of whole
bands (:func:`run_bands`) gives the same bytes as those rows of the whole call: that is
what streaming and Dask chunks rely on (see :mod:`convtool.engine.rows`).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from convtool.engine import bands, passes
from convtool.engine.plan import Plan, band_within_budget


def run(plan: Plan, x: np.ndarray, method: str, threads: int | None) -> np.ndarray:
    """Compute all bands of output rows, on a thread pool when there are several."""
    workers = threads or os.cpu_count() or 1
    band, bind = prepare(plan, x.shape[0], method, workers)
    return run_bands(plan, x, band, bind, 0, plan.rows.size, workers)


def prepare(plan: Plan, channels: int, method: str, workers: int):
    """``(band, bind)``: output rows per band for ``channels`` stacked images, and the
    method's ``bind`` (see :class:`bands.BandFilter`), set up once for all bands."""
    if method == "fft":
        from convtool.engine import (
            fft as fftconv,  # imports scipy.fft (~0.1 s): only when an FFT is asked for
        )

        wanted = fftconv.band_rows(plan)
        band = band_within_budget(plan, channels, wanted, workers, fftconv.BAND_COPIES)
        return band, fftconv.bind_for(plan, band, workers)
    wanted = plan.tuning.band_elements // (channels * plan.col_count)
    if method == "separable" and passes.is_box(plan.factors[0], plan.tuning.box_min_taps):
        # A running sum down the rows starts each band with a whole window: make
        # bands about as tall as the kernel so that start costs ~1 step per row.
        wanted = max(wanted, min(plan.rows.span, plan.tuning.running_max_band))
    band = band_within_budget(plan, channels, wanted, workers, bands.BAND_COPIES)
    return band, bands.direct(plan) if method == "direct" else bands.separable(plan)


def run_bands(plan: Plan, x, band: int, bind, j0: int, j1: int, workers: int) -> np.ndarray:
    """Output rows ``j0..j1-1`` (``j0`` on the band grid; ``j1`` too, or the last row).

    ``x`` is the image (channels, H, W), or anything indexed like it that holds the input
    rows these bands read (:class:`convtool.engine.rows.Rows`).
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
    if workers <= 1:
        for start in starts:
            work(start)
    else:
        pool = ThreadPoolExecutor(workers)
        try:
            for future in [pool.submit(work, start) for start in starts]:
                future.result()
        finally:
            # On Ctrl-C (or any error) drop the queued bands instead of computing them all.
            pool.shutdown(wait=True, cancel_futures=True)
    return out

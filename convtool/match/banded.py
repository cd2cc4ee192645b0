"""ZNCC score maps band by band: FFT correlation, window sums and scores while a band is in cache.

OpenCV's ``matchTemplate`` computes the correlation by DFTs over tiles (``crossCorr``) and the
window sums from integral images. Here each band of output rows goes through every step at
once, on its own thread: its input rows, centred and converted to float64 in one pass, fill a
transform buffer; the window sums and sums of squares are taken from that buffer (the compiled
running sums, or numpy's blocked prefix sums); the rows are correlated with the zero-mean
template by one real 2-D FFT each way (overlap-save: the buffer is as wide as the image, a
power of two or another fast length, and ``h - 1`` rows taller than the band, so nothing
wraps into the kept outputs); and the band's scores are written from the three. No array of
the image's size is made but the score map itself, and every intermediate stays a band's
size (about 1 MiB, in a core's L2 cache).

Everything is float64: a float32 transform's rounding is relative to the whole band's
energy, not to one window's, so a low-contrast window beside bright ones would lose its
score's digits; with float64 the numerator's error stays ~1e-10 of a score.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from convtool.engine import native

# Transform height (rows) at least this, and at least this many template heights, so that
# the template's h - 1 overlap rows cost at most a fraction of each transform. Measured on a
# 1024x1024 scene, 2 threads: 128 rows for a 32x32 template and 256 for a 128x128 one are the
# fastest (taller transforms leave the L2 cache, shorter ones repeat the overlap).
MIN_TRANSFORM_ROWS = 128
TRANSFORM_ROWS_PER_TAP = 2


def plan_bands(rows: int, h: int, workers: int) -> tuple[int, int]:
    """(output rows per band, transform height) for ``rows`` output rows and an h-row template.

    Bands are as even as their count allows (the last one is not a sliver), and when there
    are only a few, their count is a multiple of the threads so that none waits alone.
    """
    import scipy.fft

    target = max(MIN_TRANSFORM_ROWS, TRANSFORM_ROWS_PER_TAP * h)
    count = -(-rows // max(1, target - h + 1))
    if 1 < count < 4 * workers and count % workers:
        count += workers - count % workers
    count = min(count, rows)
    band = -(-rows // count)
    return band, scipy.fft.next_fast_len(band + h - 1, real=True)


def zncc_bands(
    x: np.ndarray,
    t0: np.ndarray,
    t_energy: float,
    mean: float,
    flat: float,
    workers: int,
    window_sums: Callable[[np.ndarray, int, int, int], tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """The valid ZNCC map of the 2-D image ``x`` (any real dtype) against ``t0``.

    ``t0`` is the zero-mean float64 template and ``t_energy`` its sum of squares; ``mean`` is
    subtracted from the image (in float64) before anything else; a window whose energy
    ``S2 - S1**2/n`` (of the centred image) is at most ``flat`` scores 0. ``window_sums(a, h,
    w, row)`` gives the window sums and sums of squares of the rows ``a`` of the centred
    image, whose first row is image row ``row``.
    """
    import scipy.fft

    height, width = x.shape
    h, w = t0.shape
    n = h * w
    rows, cols = height - h + 1, width - w + 1
    band, tf_rows = plan_bands(rows, h, workers)
    tf_cols = scipy.fft.next_fast_len(width, real=True)
    starts = range(0, rows, band)
    workers = max(1, min(workers, len(starts)))
    fft_workers = workers if len(starts) == 1 else 1
    # The template flipped (correlation as convolution), transformed once for every band.
    spectrum = scipy.fft.rfft2(t0[::-1, ::-1], s=(tf_rows, tf_cols), workers=workers)
    scores = np.empty((rows, cols))
    local = threading.local()

    def one_band(j: int) -> None:
        r = min(band, rows - j)
        span = r + h - 1
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.zeros((tf_rows, tf_cols))
            local.filled = tf_rows
            local.mask = np.empty((band, cols), dtype=bool)
        if local.filled > span:  # a shorter last band: the rows below it must be zero
            buf[span : local.filled, :width] = 0.0
        local.filled = span
        rows_in = buf[:span, :width]
        np.subtract(x[j : j + span], mean, out=rows_in)
        s1, s2 = window_sums(rows_in, h, w, j)
        product = scipy.fft.rfft2(buf, workers=fft_workers)
        product *= spectrum
        full = scipy.fft.irfft2(
            product, s=(tf_rows, tf_cols), workers=fft_workers, overwrite_x=True
        )
        numerator = full[h - 1 : h - 1 + r, w - 1 : w - 1 + cols]
        _normalise(numerator, s1, s2, n, t_energy, flat, scores[j : j + r], local.mask[:r])

    if workers == 1:
        for j in starts:
            one_band(j)
        return scores
    with ThreadPoolExecutor(workers) as pool:
        try:
            futures = [pool.submit(one_band, j) for j in starts]
        except RuntimeError:  # no thread can be started (a process limit): here, in turn
            futures = []
        for future in futures:
            future.result()
        if not futures:
            for j in starts:
                one_band(j)
    return scores


def _normalise(numerator, s1, s2, n: int, t_energy: float, flat: float, out, live) -> None:
    """``out = numerator / sqrt((s2 - s1**2/n) * t_energy)``, 0 where the window is flat,
    clipped to [-1, 1] (rounding can push a perfect match a few ulps beyond 1). ``s1`` and
    ``s2`` are overwritten."""
    fused = native.module()
    if fused is not None and hasattr(fused, "zncc_scores"):
        fused.zncc_scores(numerator, s1, s2, out, n, t_energy, flat)
        return
    energy = s2
    np.square(s1, out=s1)
    s1 /= n
    np.subtract(s2, s1, out=energy)
    np.greater(energy, flat, out=live)  # also drops energy < 0
    energy *= t_energy
    np.sqrt(energy, out=energy, where=live)
    out[...] = 0.0
    np.divide(numerator, energy, out=out, where=live)
    np.clip(out, -1.0, 1.0, out=out)


def compiled_window_sums(a: np.ndarray, h: int, w: int, row: int):
    """The compiled running sums of one band (None-free: call only when the module is built)."""
    module = native.module()
    assert module is not None
    s1 = np.empty((a.shape[0] - h + 1, a.shape[1] - w + 1))
    s2 = np.empty_like(s1)
    module.window_sums(a, s1, s2, h, w, row)
    return s1, s2

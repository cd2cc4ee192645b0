"""Channel planes: the layout images are held and filtered in.

Files interleave their samples (R G B R G B …, shape ``(H, W, C)``); the engine filters
each channel as a plane (``(C, H, W)``, every row contiguous). :func:`to_planes` does the
one pass between them, de-interleaving and converting to float together, band by band
on a thread per CPU; an :class:`~convtool.images.Image`'s ``pixels`` is then the
``(H, W, C)`` view of those planes (``planes.transpose(1, 2, 0)``), so ``np.moveaxis(
pixels, -1, 0)`` gives the planes back without a copy. On writing, bands are mapped
straight back into the interleaved rows encoders take (:class:`~convtool.images.ranges.Samples`).
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["to_planes"]

# Elements converted per task: large enough that a thread's start and numpy's call overhead
# are noise, small enough that the source band stays in cache while it is de-interleaved.
_BAND_ELEMENTS = 1 << 20


def to_planes(samples: np.ndarray, dtype: type) -> np.ndarray:
    """``samples`` (H, W, C), any strides, as new contiguous ``(C, H, W)`` planes of *dtype*.

    Overflowing float64 → float32 values become ±inf, without a warning.
    """
    height, width, channels = samples.shape
    planes: np.ndarray = np.empty((channels, height, width), dtype)
    rows = max(1, _BAND_ELEMENTS // max(1, width * channels))
    starts = range(0, height, rows)

    def band(start: int) -> None:
        with np.errstate(over="ignore"):
            planes[:, start : start + rows] = samples[start : start + rows].transpose(2, 0, 1)

    workers = min(os.cpu_count() or 1, len(starts))
    if workers <= 1:
        for start in starts:
            band(start)
        return planes
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(band, starts):
            pass
    return planes

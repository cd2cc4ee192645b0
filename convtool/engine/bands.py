"""Bands of output rows: gathering their padded input into a thread's reused buffer.

A band buffer holds the padded input rows that a run of output rows reads, across the whole
padded width (the engine plans the bands and runs them on threads). Padding is an index map:
rows and columns outside the image are copied from where scipy.ndimage's modes say.

A band method (see methods) reads the band through window views built once per thread, on
arrays the thread reuses band after band (see :class:`BandFilter`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from convtool.engine.plan import band_within_budget
from convtool.padding import Padding

if TYPE_CHECKING:
    import threading

    from convtool.engine.plan import Plan

# Arrays of the band's size that one band holds at its peak: the buffer, the column pass's
# output and a scratch array.
BAND_COPIES = 3

# The modes whose cells outside the image hold a constant (cval or 0) rather than a copy.
FILLED = frozenset({Padding.ZERO, Padding.CONSTANT, Padding.VALID, Padding.FULL})


class BandMethod:
    """The base of the band methods (:mod:`convtool.engine.methods`). What every one shares: the band size, the buffer, no views, nothing to compute."""

    copies = BAND_COPIES  # arrays of the band's size that one band holds at its peak

    def __init__(self, plan: Plan, channels: int, workers: int, stop: threading.Event) -> None:
        self.plan, self.stop = plan, stop
        self.band = band_within_budget(
            plan, channels, self.wanted_rows(channels), workers, self.copies
        )

    def wanted_rows(self, channels: int) -> int:
        """Output rows per band before the memory budget: about ``band_elements`` a band."""
        return max(1, self.plan.tuning.band_elements // (channels * self.plan.col_count))

    def buffer(self, channels: int, nr: int) -> np.ndarray:
        return band_buffer(self.plan, channels, nr)

    def views(self, buf: np.ndarray, nr: int):
        return None

    def __call__(self, buf: np.ndarray, views, out: np.ndarray, j0: int) -> None:
        raise NotImplementedError


class BandFilter:
    """Filters bands of output rows on one thread, reusing one band's arrays band after band.

    ``method`` is a prepared band method (see :mod:`convtool.engine.methods`): its buffer
    and views are built when the band height changes. A thread takes its bands in order, so
    that happens twice at most: for the full bands, then for a shorter last one.
    """

    def __init__(self, plan: Plan, method) -> None:
        self.plan, self.method = plan, method
        self.rows: int | None = None
        self.buf: np.ndarray | None = None
        self.views = None

    def __call__(self, x: np.ndarray, j0: int, j1: int, out: np.ndarray) -> None:
        """``out`` (output rows ``j0..j1-1``) from the image ``x`` (channels, H, W)."""
        if j1 - j0 != self.rows:
            self.buf = self.views = None  # free the old arrays first: one band's worth per thread
            self.buf = self.method.buffer(x.shape[0], j1 - j0)
            self.views = self.method.views(self.buf, j1 - j0)
            self.rows = j1 - j0
        assert self.buf is not None, "the first band always builds the buffer"
        gather(self.plan, x, j0, j1, self.buf)
        self.method(self.buf, self.views, out, j0)


def band_buffer(plan: Plan, channels: int, nr: int) -> np.ndarray:
    """An empty buffer for the padded input rows that ``nr`` output rows read."""
    count = plan.rows.stride * (nr - 1) + plan.rows.span
    return np.empty((channels, count, plan.col_count), dtype=plan.dtype)


def gather(plan: Plan, x: np.ndarray, j0: int, j1: int, buf: np.ndarray) -> None:
    """Fill ``buf`` with the padded input rows read by output rows ``j0..j1-1``.

    Its columns start at input column ``plan.col_start``; every element is written.
    """
    rows = plan.rows
    r0 = rows.stride * j0 + rows.offset
    count = rows.stride * (j1 - j0 - 1) + rows.span
    h, w = x.shape[-2:]
    left = -plan.col_start  # buffer column of input column 0
    right = left + w
    fill = plan.padding in FILLED
    cval = plan.cval if plan.padding is Padding.CONSTANT else 0.0

    inside0, inside1 = max(r0, 0), min(r0 + count, h)
    if inside0 < inside1:
        buf[:, inside0 - r0 : inside1 - r0, left:right] = x[:, inside0:inside1]
    outside = np.r_[0 : max(0, min(count, -r0)), max(0, h - r0) : count]
    if outside.size:
        if fill:
            buf[:, outside, :] = cval
        else:
            buf[:, outside, left:right] = x[:, _extend(outside + r0, h, plan.padding)]
    for pad in (np.arange(0, left), np.arange(right, plan.col_count)):
        if pad.size == 0:
            continue
        if fill:
            buf[:, :, pad[0] : pad[-1] + 1] = cval
        else:
            source = left + column_sources(pad - left, w, plan.padding, plan.col_unit)
            buf[:, :, pad[0] : pad[-1] + 1] = buf[:, :, source]


def column_sources(index: np.ndarray, w: int, padding: Padding, unit: int = 1) -> np.ndarray:
    """The columns that padded columns ``index`` (outside ``0..w-1``) copy, for rows of ``w``
    samples holding pixels of ``unit`` interleaved samples each (``unit`` 1: channel planes).

    Padding extends whole pixels: sample ``c`` of a pixel outside the row copies sample ``c``
    of the pixel that scipy.ndimage's mode names, so an interleaved row pads as its
    channels' planes would, each on its own.
    """
    if unit == 1:
        return _extend(index, w, padding)
    pixel, sample = np.divmod(index, unit)
    return _extend(pixel, w // unit, padding) * unit + sample


def source_positions(index, n: int, padding: Padding) -> np.ndarray:
    """The input position that each padded position in ``index`` reads, or -1 for a constant.

    Inside ``0..n-1`` a position reads itself; outside, edge/reflect/symmetric/wrap read the
    pixel :func:`gather` copies there, and zero/constant/valid/full read the constant (-1).
    This is the band gathering's own index map, for callers that show or invert it (the
    transposed convolution folds its border back through it; ``convtool explain`` names it).
    """
    index = np.asarray(index, dtype=np.int64)
    inside = (index >= 0) & (index < n)
    if padding in FILLED:
        return np.where(inside, index, -1)
    return np.where(inside, index, _extend(index, n, padding))


def _extend(index: np.ndarray, n: int, padding: Padding) -> np.ndarray:
    """Map input positions outside ``0..n-1`` to the inside, as scipy.ndimage does (any reach)."""
    if padding is Padding.EDGE:
        return np.clip(index, 0, n - 1)
    if padding is Padding.WRAP:
        return np.mod(index, n)
    if padding is Padding.REFLECT:  # d c b | a b c d | c b a: period 2n-2
        if n == 1:
            return np.zeros_like(index)
        m = np.mod(index, 2 * n - 2)
        return np.where(m >= n, 2 * n - 2 - m, m)
    m = np.mod(index, 2 * n)  # SYMMETRIC, c b a | a b c d | d c b: period 2n
    return np.where(m >= n, 2 * n - 1 - m, m)

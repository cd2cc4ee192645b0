"""Bands of output rows: gathering their padded input, and the direct and separable filters.

A band buffer holds the padded input rows that a run of output rows reads, across the whole
padded width (the engine plans the bands and runs them on threads). Padding is an index map:
rows and columns outside the image are copied from where scipy.ndimage's modes say.

A method reads the band through window views (see passes) and its ``bind`` builds them once
per thread, on arrays the thread reuses band after band (see :class:`BandFilter`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from convtool.engine.passes import Pass, accumulate, windows
from convtool.padding import Padding

if TYPE_CHECKING:
    from convtool.engine.plan import Plan

# Arrays of the band's size that one band holds at its peak: the buffer, the column pass's
# output and a scratch array.
BAND_COPIES = 3

# The modes whose cells outside the image hold a constant (cval or 0) rather than a copy.
FILLED = frozenset({Padding.ZERO, Padding.CONSTANT, Padding.VALID, Padding.FULL})


class BandFilter:
    """Filters bands of output rows on one thread, reusing one band's arrays band after band.

    ``bind(channels, nr)`` allocates the arrays for bands of ``nr`` output rows, builds its
    views on them once (a ``sliding_window_view`` costs ~10 us, about as much as a 3x3 pass over
    10^4 pixels, so per band it would show) and returns the band buffer to gather into and
    ``run(out, j0)`` (``j0``: the band's first output row). A thread takes its bands in order, so it binds twice at most: for the full
    bands, then for a shorter last one.
    """

    def __init__(self, plan: Plan, bind) -> None:
        self.plan, self.bind = plan, bind
        self.rows, self.buf, self.run = None, None, None

    def __call__(self, x: np.ndarray, j0: int, j1: int, out: np.ndarray) -> None:
        """``out`` (output rows ``j0..j1-1``) from the image ``x`` (channels, H, W)."""
        if j1 - j0 != self.rows:
            self.buf = self.run = None  # free the old arrays first: one band's worth per thread
            self.buf, self.run = self.bind(x.shape[0], j1 - j0)
            self.rows = j1 - j0
        gather(self.plan, x, j0, j1, self.buf)
        self.run(out, j0)


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
            source = left + _extend(pad - left, w, plan.padding)
            buf[:, :, pad[0] : pad[-1] + 1] = buf[:, :, source]


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


def direct(plan: Plan):
    """``bind`` (see :class:`BandFilter`) for a general kernel: tap by tap, or line by line.

    Few taps (counting a multiply for each weight other than +-1) go tap by tap: ``out +=
    w[a, b] * windows[..., a, b]``, in-place ufuncs on strided views. Otherwise each nonzero
    kernel row (or column, whichever needs fewer and shorter products) is a 1-D :class:`Pass`
    over the band's rows shifted by that row, and the passes are summed.
    """
    rows, cols, tuning = plan.rows, plan.cols, plan.tuning
    first_col = cols.offset - plan.col_start
    weights = plan.weights.astype(plan.dtype)
    nonzero = weights != 0
    passes = np.count_nonzero(nonzero) + np.count_nonzero(nonzero & (np.abs(weights) != 1))
    by_rows = np.count_nonzero(nonzero.any(axis=1))
    by_cols = np.count_nonzero(nonzero.any(axis=0))
    if passes < tuning.pass_cost * max(1, min(by_rows, by_cols)):  # (all-zero kernels too)

        def bind(channels: int, nr: int):
            buf = band_buffer(plan, channels, nr)
            taps = windows(windows(buf, rows, 1, nr), cols, 2, plan.cols.size, first_col)
            terms = [
                (weights[a, b], taps[..., a, b]) for a in range(rows.taps) for b in range(cols.taps)
            ]
            return buf, lambda out: accumulate(out, terms)

        return bind

    # Cost of one pass ~ its span plus the block's waste and the sum; a column pass over a
    # strided column selection first copies it (BLAS needs unit steps along columns).
    block = tuning.matmul_block
    row_cost = by_rows * (cols.span + 2 * block)
    col_cost = by_cols * (rows.span + 2 * block + (16 if cols.stride > 1 else 0))
    by_kernel_rows = row_cost <= col_cost
    if by_kernel_rows:
        lines = [(a, Pass(w, cols, 2, plan)) for a, w in enumerate(plan.weights) if w.any()]
    else:
        lines = [(b, Pass(w, rows, 1, plan)) for b, w in enumerate(plan.weights.T) if w.any()]

    def bind(channels: int, nr: int):
        buf, nc = band_buffer(plan, channels, nr), plan.cols.size
        if by_kernel_rows:  # kernel row a reads the band's rows shifted by a
            shifted = windows(buf, rows, 1, nr)
            runs = [one_pass.bind(shifted[..., a], nc, first_col) for a, one_pass in lines]
        else:  # kernel column b reads the kept columns shifted by b
            shifted = windows(buf, cols, 2, nc, first_col)
            runs = [one_pass.bind(shifted[..., b], nr, 0) for b, one_pass in lines]
        tmp = np.empty((channels, nr, nc), dtype=plan.dtype) if len(runs) > 1 else None

        def run(out: np.ndarray) -> None:
            runs[0](out)
            for line_run in runs[1:]:
                line_run(tmp)
                np.add(out, tmp, out=out)

        return buf, run

    return bind


def separable(plan: Plan):
    """``bind`` (see :class:`BandFilter`) for a rank-1 kernel: a column pass, then a row pass.

    Column pass first: it turns the band's ``nr + K - 1`` padded rows into ``nr`` rows, so
    the row pass runs on no more rows than the output has (row-first would filter all
    ``nr + K - 1``), and bands need not be tall to amortise the kernel's height.
    """
    rows, cols = plan.rows, plan.cols
    column, row = plan.factors
    # A single-tap factor is only a scale: fold it into the other pass and skip its pass.
    if rows.taps == 1:
        row, column = row * column[0], None
    elif cols.taps == 1:
        row, column = None, column * row[0]
    row_pass = None if row is None else Pass(row, cols, 2, plan)
    column_pass = None if column is None else Pass(column, rows, 1, plan)
    first_col = cols.offset - plan.col_start

    def bind(channels: int, nr: int):
        buf, nc = band_buffer(plan, channels, nr), cols.size
        if column_pass is None:  # one-row kernel: the row pass reads only the kept rows
            return buf, row_pass.bind(windows(buf, rows, 1, nr)[..., 0], nc, first_col)
        if row_pass is None:  # one-column kernel: the column pass reads the kept columns
            return buf, column_pass.bind(windows(buf, cols, 2, nc, first_col)[..., 0], nr, 0)
        mid = np.empty((channels, nr, buf.shape[2]), dtype=plan.dtype)
        column_run, row_run = column_pass.bind(buf, nr, 0), row_pass.bind(mid, nc, first_col)

        def run(out: np.ndarray) -> None:
            column_run(mid)
            row_run(out)

        return buf, run

    return bind

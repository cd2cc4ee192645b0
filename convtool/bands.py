"""One band of output rows: its padded input, and the direct and separable filters over it.

A band buffer holds the padded input rows that a run of output rows reads, across the whole
padded width (see engine). Padding is an index map: rows and columns outside the image are
copied from where scipy.ndimage's extension modes say they come from.

Every read a kernel tap makes is an index into a read-only ``sliding_window_view`` of the
band: ``windows(...)[..., t]`` along one axis, ``[..., a, b]`` for both. Each is a strided
view, just as a shifted slice would be, so the taps cost no copies. Outputs are written through
ordinary slices and reshapes, never through overlapping views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .padding import Padding

if TYPE_CHECKING:
    from .engine import Axis, Plan

# Arrays of the band's size that one band holds at its peak: the buffer, the column pass's
# output and a scratch array.
BAND_COPIES = 3
# A 1-D factor whose taps agree to this relative tolerance is a box: summed, not multiplied.
_CONSTANT_RTOL = 1e-13


def gather(plan: Plan, x: np.ndarray, j0: int, j1: int) -> np.ndarray:
    """The padded input rows read by output rows ``j0..j1-1``, columns from ``plan.col_start``."""
    rows = plan.rows
    r0 = rows.stride * j0 + rows.offset
    count = rows.stride * (j1 - j0 - 1) + rows.span
    h, w = x.shape[-2:]
    buf = np.empty((x.shape[0], count, plan.col_count), dtype=plan.dtype)
    left = -plan.col_start  # buffer column of input column 0
    right = left + w
    fill = plan.padding in (Padding.ZERO, Padding.CONSTANT, Padding.VALID, Padding.FULL)
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
    return buf


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


def windows(src: np.ndarray, axis: Axis, dim: int, count: int, first: int = 0) -> np.ndarray:
    """Read-only view of what ``count`` outputs read along ``dim``, their taps on a new last axis.

    Output ``j`` reads ``src`` at ``first + stride*j + t*dilation`` along ``dim`` for tap ``t``,
    so ``windows(...)[..., t]`` is the view tap ``t`` reads. Windows of windows add a second
    tap axis: ``windows(windows(band, rows, 1, nr), cols, 2, nc)[..., a, b]`` for a 2-D kernel.
    """
    reach = axis.stride * (count - 1) + axis.span
    view = sliding_window_view(_along(src, dim, slice(first, first + reach)), axis.span, axis=dim)
    return _along(view, dim, slice(None, None, axis.stride))[..., :: axis.dilation]


def is_box(taps: np.ndarray) -> bool:
    """Whether a 1-D factor of more than two taps has (nearly) equal weights."""
    return taps.size > 2 and np.ptp(taps) <= _CONSTANT_RTOL * np.abs(taps).max()


# ----------------------------------------------------------------------------- methods


def direct(plan: Plan):
    """Band function for a general kernel: tap by tap, or as one 1-D pass per kernel line.

    Few taps (counting a multiply for each weight other than +-1) go tap by tap: ``out +=
    w[a, b] * windows[..., a, b]``, in-place ufuncs on strided views. Otherwise each nonzero
    kernel row (or column, whichever needs fewer and shorter products) is a 1-D :class:`_Pass`
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

        def compute(plan: Plan, buf: np.ndarray, out: np.ndarray) -> None:
            nr, nc = out.shape[-2:]
            taps = windows(windows(buf, rows, 1, nr), cols, 2, nc, first_col)
            _accumulate(
                out,
                (
                    (weights[a, b], taps[..., a, b])
                    for a in range(rows.taps)
                    for b in range(cols.taps)
                ),
            )

        return compute

    # Cost of one pass ~ its span plus the block's waste and the sum; a column pass over a
    # strided column selection first copies it (BLAS needs unit steps along columns).
    block = tuning.matmul_block
    row_cost = by_rows * (cols.span + 2 * block)
    col_cost = by_cols * (rows.span + 2 * block + (16 if cols.stride > 1 else 0))
    by_kernel_rows = row_cost <= col_cost
    if by_kernel_rows:
        lines = [(a, _Pass(w, cols, 2, plan)) for a, w in enumerate(plan.weights) if w.any()]
    else:
        lines = [(b, _Pass(w, rows, 1, plan)) for b, w in enumerate(plan.weights.T) if w.any()]

    def compute(plan: Plan, buf: np.ndarray, out: np.ndarray) -> None:
        nr, nc = out.shape[-2:]
        if by_kernel_rows:  # kernel row a reads the band's rows shifted by a
            shifted, first = windows(buf, rows, 1, nr), first_col
        else:  # kernel column b reads the kept columns shifted by b
            shifted, first = windows(buf, cols, 2, nc, first_col), 0
        tmp = np.empty_like(out) if len(lines) > 1 else None
        for i, (line, one_pass) in enumerate(lines):
            target = out if i == 0 else tmp
            one_pass(target, shifted[..., line], first)
            if i:
                np.add(out, tmp, out=out)

    return compute


def separable(plan: Plan):
    """Band function for a rank-1 kernel: a column pass over the band, then a row pass.

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
    row_pass = None if row is None else _Pass(row, cols, 2, plan)
    column_pass = None if column is None else _Pass(column, rows, 1, plan)
    first_col = cols.offset - plan.col_start

    def compute(plan: Plan, buf: np.ndarray, out: np.ndarray) -> None:
        nr, nc = out.shape[-2:]
        if column_pass is None:  # one-row kernel: the row pass reads only the kept rows
            row_pass(out, windows(buf, rows, 1, nr)[..., 0], first_col)
        elif row_pass is None:  # one-column kernel: the column pass reads the kept columns
            column_pass(out, windows(buf, cols, 2, nc, first_col)[..., 0], 0)
        else:
            mid = np.empty((buf.shape[0], nr, buf.shape[2]), dtype=plan.dtype)
            column_pass(mid, buf, 0)
            row_pass(out, mid, first_col)

    return compute


# ----------------------------------------------------------------------------- 1-D passes


class _Pass:
    """A 1-D correlation along one axis (``dim`` 1: rows, 2: columns) of a band, set up once.

    Three ways, by cost on the test machine: a few taps are in-place ufunc passes over
    shifted views; a constant factor (a box) is a running sum down the rows (O(1) per pixel)
    or summed by doubling (O(log taps) passes); other factors are a matrix product with a
    small banded Toeplitz block, which BLAS runs faster than ``pass_cost`` ufunc passes
    even counting the block's zeros.
    """

    def __init__(self, taps: np.ndarray, axis: Axis, dim: int, plan: Plan) -> None:
        self.axis, self.dim, self.tuning = axis, dim, plan.tuning
        self.taps = taps.astype(plan.dtype)
        if is_box(taps):
            self.kind, self.value = "sum", float(taps.mean())
        elif _ufunc_passes(taps) >= self.tuning.pass_cost:
            self.kind = "matmul"
            block = self.tuning.matmul_block
            span = axis.stride * (block - 1) + axis.span
            toeplitz = np.zeros((span, block), dtype=plan.dtype)
            for t, w in enumerate(self.taps):  # a loop over taps, not pixels
                outputs = np.arange(block)
                toeplitz[outputs * axis.stride + t * axis.dilation, outputs] = w
            # Rows pass: block of outputs = toeplitz.T @ rows; columns: columns @ toeplitz.
            self.toeplitz = toeplitz.T.copy() if dim == 1 else toeplitz
        else:
            self.kind = "taps"

    def __call__(self, out: np.ndarray, src: np.ndarray, first: int) -> None:
        """``out`` (count outputs along ``dim``) from ``src``, output 0 reading ``first`` on.

        ``src`` and ``out`` match across ``dim``. Ufunc passes run on strips across ``dim``
        small enough to stay in cache through all their passes.
        """
        if self.kind == "matmul":
            self._matmul(out, src, first)
            return
        dim = self.dim
        strip = max(1, self.tuning.strip_elements // (src.shape[0] * (src.shape[2] - first)))
        if self.kind == "taps":
            src, apply = windows(src, self.axis, dim, out.shape[dim], first), self._taps
        else:
            src, apply = _along(src, dim, slice(first, None)), self._window_sum
        if dim == 1:  # whole rows: numpy is fastest on long contiguous inner loops
            if self.kind == "sum" and self._running(out):
                self._running_sum(out, src)
            else:
                apply(out, src)
            return
        for start in range(0, out.shape[1], strip):
            part = slice(start, start + strip)
            apply(out[:, part], src[:, part])

    def _taps(self, out: np.ndarray, windows: np.ndarray) -> None:
        _accumulate(out, ((w, windows[..., t]) for t, w in enumerate(self.taps)))

    def _running(self, out: np.ndarray) -> bool:
        """Whether a running sum down the rows pays: unit steps, and rows long enough that
        three vector operations per output row beat log2(taps) passes."""
        axis = self.axis
        return (
            axis.stride == 1
            and axis.dilation == 1
            and axis.taps >= self.tuning.running_min_taps
            and out.shape[0] * out.shape[2] >= self.tuning.running_min_width
        )

    def _running_sum(self, out: np.ndarray, src: np.ndarray) -> None:
        """Box sums down the rows: add the row entering the window, drop the one leaving.

        O(1) per pixel whatever the box height. The float64 accumulator drifts by about
        ``rows * 1e-16`` of the window sum over a band, far below the tolerance.
        """
        taps, value = self.taps.size, self.value
        total = src[:, :taps].sum(axis=1, dtype=np.float64)
        np.multiply(total, value, out=out[:, 0])
        for j in range(1, out.shape[1]):  # a loop over rows; each step is vectorised
            np.add(total, src[:, j + taps - 1], out=total)
            np.subtract(total, src[:, j - 1], out=total)
            np.multiply(total, value, out=out[:, j])

    def _matmul(self, out: np.ndarray, src: np.ndarray, first: int) -> None:
        """Toeplitz products over tiles: blocks of outputs along ``dim`` x chunks across it.

        All full tiles go into one stacked matmul; the last partial block and chunk get
        their own. Tiles stay below ``gemm_max`` multiply-adds, so OpenBLAS keeps each
        product on the calling thread (its own threads would fight the band pool).
        """
        axis, dim, toeplitz = self.axis, self.dim, self.toeplitz
        size = self.tuning.matmul_block
        across = 3 - dim
        src = _along(src, dim, slice(first, None))
        if src.strides[2] != src.itemsize:  # BLAS needs unit steps along the columns
            src = np.ascontiguousarray(src)
        step = size * axis.stride  # input positions between two blocks' starts
        whole, rest = divmod(out.shape[dim], size)
        chunk = max(1, self.tuning.gemm_max // toeplitz.size)
        chunks, leftover = divmod(out.shape[across], chunk)
        for blocks, block, start in ((whole, size, 0), (int(rest > 0), rest, whole)):
            if not blocks:
                continue
            span = axis.stride * (block - 1) + axis.span
            matrix = toeplitz[:span, :block] if dim == 2 else toeplitz[:block, :span]
            block_src = _along(src, dim, slice(start * step, None))
            block_out = _along(out, dim, slice(start * size, None))
            for count, width, offset in (
                (chunks, chunk, 0),
                (int(leftover > 0), leftover, chunks * chunk),
            ):
                if not count:
                    continue
                part = slice(offset, offset + count * width)
                tiles = _tiles(_along(block_src, across, part), dim, blocks, step, span, width)
                target = _blocks(_along(block_out, across, part), dim, blocks, block, width)
                if dim == 2:
                    np.matmul(tiles, matrix, out=target)
                else:
                    np.matmul(matrix, tiles, out=target)

    def _window_sum(self, out: np.ndarray, src: np.ndarray) -> None:
        """Sums of consecutive (dilated) samples by doubling, times the constant weight.

        O(log taps) passes, each vectorised over the whole strip.

        ``sums`` holds windows of ``width`` taps; doubling adds it to itself shifted by
        ``width`` taps. Each set bit of the tap count adds the current windows to the
        result, shifted past the taps already covered. Tree-shaped sums lose no precision.
        (These shifts move partial sums by powers of two; they are slices, not tap windows.)
        """
        dim, taps = self.dim, self.taps.size
        step, gap = self.axis.stride, self.axis.dilation
        last = step * (out.shape[dim] - 1) + 1
        sums, width, covered, bits = src, 1, 0, taps
        spare = None  # two scratch arrays, reused: fresh large arrays would page-fault
        while bits:
            if bits & 1:
                part = _along(sums, dim, slice(covered * gap, covered * gap + last, step))
                if covered:
                    np.add(out, part, out=out)
                else:
                    np.copyto(out, part)
                covered += width
            bits >>= 1
            if bits:  # windows of 2*width taps, only as many as the higher bits read
                length = last + (taps - 2 * width) * gap
                if spare is None:
                    shape = list(src.shape)
                    shape[dim] = length
                    spare = [np.empty(shape, dtype=out.dtype), np.empty(shape, dtype=out.dtype)]
                target = _along(spare[0], dim, slice(0, length))
                np.add(
                    _along(sums, dim, slice(0, length)),
                    _along(sums, dim, slice(width * gap, width * gap + length)),
                    out=target,
                )
                sums = target
                spare.reverse()
                width *= 2
        if self.value != 1:
            np.multiply(out, self.value, out=out)


def _tiles(
    array: np.ndarray, dim: int, blocks: int, step: int, length: int, width: int
) -> np.ndarray:
    """Read-only view (channels, chunks, blocks, rows, columns) of 2-D tiles of a (C, rows, cols)
    array whose side across ``dim`` is a whole number of chunks.

    Tile ``(j, i)`` starts ``i*step`` along ``dim`` and ``j*width`` across it; it is
    ``length`` long along ``dim`` and ``width`` wide across it. Tiles may overlap. Blocks
    vary fastest, so one chunk's blocks reuse each other's rows while they are in cache.
    """
    across = 3 - dim
    tile = (width, length) if dim == 2 else (length, width)
    view = sliding_window_view(array, tile, axis=(1, 2))
    view = _along(view, across, slice(None, None, width))
    view = _along(view, dim, slice(0, step * (blocks - 1) + 1, step))
    return view if dim == 2 else view.transpose(0, 2, 1, 3, 4)


def _blocks(array: np.ndarray, dim: int, blocks: int, block: int, width: int) -> np.ndarray:
    """Writable view, laid out as :func:`_tiles`, of the disjoint tiles ``block`` long along
    ``dim`` and ``width`` wide across it that start ``array``.

    A reshape that only splits axes never copies, so writes through the view land in ``array``.
    """
    c, across = array.shape[0], array.shape[3 - dim] // width
    if dim == 2:
        tiles = array[:, : across * width, : blocks * block]
        return tiles.reshape(c, across, width, blocks, block).transpose(0, 1, 3, 2, 4)
    tiles = array[:, : blocks * block, : across * width]
    return tiles.reshape(c, blocks, block, across, width).transpose(0, 3, 1, 2, 4)


def _accumulate(out: np.ndarray, terms) -> None:
    """``out = sum(w * view for w, view in terms)`` with in-place ufuncs, skipping zero taps."""
    tmp = None
    first = True
    for w, view in terms:
        if w == 0:
            continue
        if first:
            if w == 1:
                np.copyto(out, view)
            else:
                np.multiply(view, w, out=out)
            first = False
        elif w == 1:
            np.add(out, view, out=out)
        elif w == -1:
            np.subtract(out, view, out=out)
        else:
            if tmp is None:
                tmp = np.empty_like(out)
            np.multiply(view, w, out=tmp)
            np.add(out, tmp, out=out)
    if first:
        out.fill(0)


def _ufunc_passes(taps: np.ndarray) -> int:
    """Ufunc passes over the band to apply ``taps`` one by one (adds, and multiplies by w)."""
    nonzero = taps[taps != 0]
    return nonzero.size + np.count_nonzero(np.abs(nonzero) != 1)


def _along(array: np.ndarray, dim: int, part: slice) -> np.ndarray:
    """``array`` sliced by ``part`` along ``dim``."""
    index = [slice(None)] * array.ndim
    index[dim] = part
    return array[tuple(index)]

"""1-D passes over a band: ufunc taps, box sums and Toeplitz products, and the window views.

Every read of a kernel tap is an index into a read-only ``sliding_window_view``:
``windows(...)[..., t]`` along one axis, ``[..., a, b]`` for both, and Toeplitz tiles are
2-D windows. Each is a strided view, as a shifted slice would be, so taps cost no copies.
Outputs are written through ordinary slices and reshapes, never through overlapping views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

if TYPE_CHECKING:
    from convtool.engine.plan import Axis, Plan, Tuning

# A 1-D factor whose taps agree to this relative tolerance is a box: summed, not multiplied.
_CONSTANT_RTOL = 1e-13


def windows(src: np.ndarray, axis: Axis, dim: int, count: int, first: int = 0) -> np.ndarray:
    """Read-only view of what ``count`` outputs read along ``dim``, their taps on a new last axis.

    Output ``j`` reads ``src`` at ``first + stride*j + t*dilation`` along ``dim`` for tap ``t``,
    so ``windows(...)[..., t]`` is the view tap ``t`` reads. Windows of windows add a second
    tap axis: ``windows(windows(band, rows, 1, nr), cols, 2, nc)[..., a, b]`` for a 2-D kernel.
    """
    reach = axis.stride * (count - 1) + axis.span
    view = sliding_window_view(_along(src, dim, slice(first, first + reach)), axis.span, axis=dim)
    return _along(view, dim, slice(None, None, axis.stride))[..., :: axis.dilation]


def is_box(taps: np.ndarray, min_taps: int = 3) -> bool:
    """Whether a 1-D factor of at least ``min_taps`` (> 2) taps has (nearly) equal weights."""
    return taps.size >= max(3, min_taps) and np.ptp(taps) <= _CONSTANT_RTOL * np.abs(taps).max()


def make_pass(taps: np.ndarray, axis: Axis, dim: int, plan: Plan) -> OnePass:
    """The cheapest 1-D pass for ``taps`` along ``dim`` (1: rows, 2: columns), by cost on the
    test machine: a constant factor is a :class:`BoxPass`; a factor needing ``pass_cost``
    ufunc passes or more is a :class:`ToeplitzPass` (BLAS runs it faster even counting the
    block's zeros, and the more at a larger stride: see :func:`uses_matmul`); others are a
    :class:`TapPass`."""
    if is_box(taps, plan.tuning.box_min_taps):
        return BoxPass(taps, axis, dim, plan)
    if uses_matmul(_ufunc_passes(taps), axis, plan.tuning):
        return ToeplitzPass(taps, axis, dim, plan)
    return TapPass(taps, axis, dim, plan)


class OnePass:
    """A 1-D correlation along one axis (``dim`` 1: rows, 2: columns) of a band.

    Built once per call (``__init__`` is the preparation) and shared by the threads.
    :meth:`views` builds, once per thread, what the pass reads of that thread's ``src``
    array (output 0 reads ``src`` from ``first`` on along ``dim``; ``src`` and the output
    match across ``dim``); :meth:`run` fills an ``out`` of ``count`` outputs along ``dim``
    from what ``src`` holds when called.
    """

    def __init__(self, taps: np.ndarray, axis: Axis, dim: int, plan: Plan) -> None:
        self.axis, self.dim, self.tuning = axis, dim, plan.tuning
        self.taps = taps.astype(plan.dtype)

    def views(self, src: np.ndarray, count: int, first: int):
        raise NotImplementedError

    def run(self, views, out: np.ndarray) -> None:
        raise NotImplementedError

    def _strip(self, src: np.ndarray, first: int) -> int:
        """Columns per strip: ufunc passes run on strips across the rows small enough to
        stay in cache through all their passes (along the rows, whole rows: numpy is
        fastest on long inner loops)."""
        return max(1, self.tuning.strip_elements // (src.shape[0] * (src.shape[2] - first)))

    def _by_strips(self, apply, out: np.ndarray, source: np.ndarray, strip: int) -> None:
        if self.dim == 1:
            apply(out, source)
            return
        for start in range(0, out.shape[1], strip):
            part = slice(start, start + strip)
            apply(out[:, part], source[:, part])


class TapPass(OnePass):
    """A few taps: in-place ufunc passes over shifted window views."""

    def views(self, src: np.ndarray, count: int, first: int):
        return windows(src, self.axis, self.dim, count, first), self._strip(src, first)

    def run(self, views, out: np.ndarray) -> None:
        source, strip = views
        self._by_strips(self._taps, out, source, strip)

    def _taps(self, out: np.ndarray, taps: np.ndarray) -> None:
        """``out`` from the windows :func:`windows` gives: tap ``t`` reads ``taps[..., t]``."""
        accumulate(out, ((w, taps[..., t]) for t, w in enumerate(self.taps)))


class BoxPass(OnePass):
    """A constant factor: a running sum down the rows (O(1) per pixel) or sums by doubling
    (O(log taps) passes), times the constant, over plain slices."""

    def __init__(self, taps: np.ndarray, axis: Axis, dim: int, plan: Plan) -> None:
        super().__init__(taps, axis, dim, plan)
        self.value = float(taps.mean())

    def views(self, src: np.ndarray, count: int, first: int):
        source = _along(src, self.dim, slice(first, None))
        running = self.dim == 1 and self._running(source)
        return source, self._strip(src, first), running

    def run(self, views, out: np.ndarray) -> None:
        source, strip, running = views
        self._by_strips(self._running_sum if running else self._window_sum, out, source, strip)

    def _running(self, src: np.ndarray) -> bool:
        """Whether a running sum down the rows pays: unit steps, and rows long enough that
        three vector operations per output row beat log2(taps) passes."""
        axis = self.axis
        return (
            axis.stride == 1
            and axis.dilation == 1
            and axis.taps >= self.tuning.running_min_taps
            and src.shape[0] * src.shape[2] >= self.tuning.running_min_width
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


class ToeplitzPass(OnePass):
    """Other factors: a matrix product with a small banded Toeplitz block per tile of
    ``matmul_block`` outputs."""

    def __init__(self, taps: np.ndarray, axis: Axis, dim: int, plan: Plan) -> None:
        super().__init__(taps, axis, dim, plan)
        self.block = block = matmul_block(axis, self.tuning)
        span = axis.stride * (block - 1) + axis.span
        toeplitz = np.zeros((span, block), dtype=plan.dtype)
        for t, w in enumerate(self.taps):  # a loop over taps, not pixels
            outputs = np.arange(block)
            toeplitz[outputs * axis.stride + t * axis.dilation, outputs] = w
        # Rows pass: block of outputs = toeplitz.T @ rows; columns: columns @ toeplitz.
        self.toeplitz = toeplitz.T.copy() if dim == 1 else toeplitz

    def views(self, src: np.ndarray, count: int, first: int):
        """Toeplitz products over tiles: blocks of outputs along ``dim`` x chunks across it.

        All full tiles go into one stacked matmul; the last partial block and chunk get
        their own. Tiles stay below ``gemm_max`` multiply-adds, so OpenBLAS keeps each
        product on the calling thread (its own threads would fight the band pool). BLAS
        needs unit steps along the columns: a strided ``src`` is copied, at each run, into
        one contiguous scratch array of this thread, on which the tiles are built here.
        """
        src = _along(src, self.dim, slice(first, None))
        scratch = None
        if src.strides[2] != src.itemsize and src.shape[2] > 1:
            # (one column has any stride, and a copy would keep it: nothing to copy then)
            scratch = np.empty(src.shape, dtype=src.dtype)
        return src, scratch, self._products(src if scratch is None else scratch, count)

    def run(self, views, out: np.ndarray) -> None:
        src, scratch, products = views
        if scratch is not None:
            np.copyto(scratch, src)
        dim = self.dim
        for tiles, matrix, (along, part), blocks, block, width in products:
            area = _along(_along(out, dim, along), across_of(dim), part)
            target = _blocks(area, dim, blocks, block, width)
            if dim == 2:
                np.matmul(tiles, matrix, out=target)
            else:
                np.matmul(matrix, tiles, out=target)

    def _products(self, src: np.ndarray, count: int) -> list:
        """(tiles of src, Toeplitz matrix, where in out, blocks, block, width) per product."""
        axis, dim, toeplitz = self.axis, self.dim, self.toeplitz
        size = self.block
        across = across_of(dim)
        step = size * axis.stride  # input positions between two blocks' starts
        whole, rest = divmod(count, size)
        chunk = max(1, self.tuning.gemm_max // toeplitz.size)
        chunks, leftover = divmod(src.shape[across], chunk)
        products = []  # (tiles of src, Toeplitz matrix, where in out, blocks, block, width)
        for blocks, block, start in ((whole, size, 0), (int(rest > 0), rest, whole)):
            if not blocks:
                continue
            span = axis.stride * (block - 1) + axis.span
            matrix = toeplitz[:span, :block] if dim == 2 else toeplitz[:block, :span]
            block_src = _along(src, dim, slice(start * step, None))
            for number, width, offset in (
                (chunks, chunk, 0),
                (int(leftover > 0), leftover, chunks * chunk),
            ):
                if not number:
                    continue
                part = slice(offset, offset + number * width)
                tiles = _tiles(_along(block_src, across, part), dim, blocks, step, span, width)
                place = (slice(start * size, None), part)
                products.append((tiles, matrix, place, blocks, block, width))

        return products


def across_of(dim: int) -> int:
    """The other axis of a (C, rows, cols) array."""
    return 3 - dim


def _tiles(
    array: np.ndarray, dim: int, blocks: int, step: int, length: int, width: int
) -> np.ndarray:
    """Read-only view (channels, chunks, blocks, rows, columns) of 2-D tiles of a (C, rows, cols)
    array whose side across ``dim`` is a whole number of chunks.

    Tile ``(j, i)`` starts ``i*step`` along ``dim`` and ``j*width`` across it; it is
    ``length`` long along ``dim`` and ``width`` wide across it. Tiles may overlap. Blocks
    vary fastest, so one chunk's blocks reuse each other's rows while they are in cache.
    """
    starts = slice(0, step * (blocks - 1) + 1, step)
    if dim == 2:
        return sliding_window_view(array, (width, length), axis=(1, 2))[:, ::width, starts]
    view = sliding_window_view(array, (length, width), axis=(1, 2))[:, starts, ::width]
    return view.transpose(0, 2, 1, 3, 4)


def _blocks(array: np.ndarray, dim: int, blocks: int, block: int, width: int) -> np.ndarray:
    """Writable view, laid out as :func:`_tiles`, of disjoint tiles from the start of ``array``:
    ``block`` long along ``dim`` and ``width`` wide across it.

    A reshape that only splits axes never copies, so writes through the view land in ``array``.
    """
    c, across = array.shape[0], array.shape[3 - dim] // width
    if dim == 2:
        tiles = array[:, : across * width, : blocks * block]
        return tiles.reshape(c, across, width, blocks, block).transpose(0, 1, 3, 2, 4)
    tiles = array[:, : blocks * block, : across * width]
    return tiles.reshape(c, blocks, block, across, width).transpose(0, 3, 1, 2, 4)


def accumulate(out: np.ndarray, terms) -> None:
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


def matmul_block(axis: Axis, tuning: Tuning) -> int:
    """Outputs per Toeplitz block along ``axis``: the tuned block, or fewer if the axis has fewer.

    Its matrix is ``stride * (block - 1) + span`` tall, so a block of outputs that do not
    exist would cost memory in proportion to the stride (a stride of 3 million on a
    512-pixel side once asked for 2.9 GB to compute one output).
    """
    return max(1, min(tuning.matmul_block, axis.size))


def uses_matmul(ufunc_passes: int, axis: Axis, tuning: Tuning) -> bool:
    """Whether a Toeplitz product beats ``ufunc_passes`` ufunc passes along ``axis``.

    At stride 1 the product wins from ``pass_cost`` passes on (measured). Its matrix, and so
    its work per output, grows with the stride (``stride * (block - 1) + span`` rows against
    ``block - 1 + span``) while the ufunc passes stay as many: they need that much more.
    """
    block = matmul_block(axis, tuning)
    growth = (axis.stride * (block - 1) + axis.span) / (block - 1 + axis.span)
    return ufunc_passes >= tuning.pass_cost * growth


def toeplitz_bytes(axis: Axis, tuning: Tuning, itemsize: int) -> int:
    """Bytes a Toeplitz pass along ``axis`` holds for the whole call: its matrix (and the
    transposed copy a pass down the rows makes)."""
    block = matmul_block(axis, tuning)
    return 2 * (axis.stride * (block - 1) + axis.span) * block * itemsize


def _ufunc_passes(taps: np.ndarray) -> int:
    """Ufunc passes over the band to apply ``taps`` one by one (adds, and multiplies by w)."""
    nonzero = taps[taps != 0]
    return nonzero.size + np.count_nonzero(np.abs(nonzero) != 1)


def _along(array: np.ndarray, dim: int, part: slice) -> np.ndarray:
    """``array`` sliced by ``part`` along ``dim``."""
    index = [slice(None)] * array.ndim
    index[dim] = part
    return array[tuple(index)]

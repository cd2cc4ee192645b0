"""One engine call planned for a whole image, computed a range of output rows at a time.

Streaming and Dask chunks filter an image in pieces, and must give the bytes of the
whole-image call. The engine's own result for an output row is not independent of where a
piece starts (a Toeplitz product blocks the rows of its band, an FFT transforms a band as
a whole, a running box sum starts at its band's first row), but it is independent of
everything outside that row's band: bands form a fixed grid (:mod:`.schedule`). So a piece
is planned as the whole image (:func:`plan_rows`) and computed as whole bands of that grid
(:meth:`RowPlan.run`), from the input rows those bands read (:meth:`RowPlan.input_rows`,
padding rows at the image border included, mapped as the padding mode says):

    call = plan_rows((1, 4000, 3000), get_kernel("gaussian:sigma=3"))
    rows = call.input_rows(1000, 1500)             # image rows these outputs read
    source = Rows(read(rows), rows, height=4000)   # just those rows
    part = call.run(source, 1000, 1500)            # == convolve(whole)[:, 1000:1500]

Pieces that start and end on the grid (:attr:`RowPlan.band`) waste nothing; others are
computed from the bands that cover them and cropped.
"""

from __future__ import annotations

import threading

import numpy as np

from convtool._system import cpu_count
from convtool.engine import methods
from convtool.engine.api import _axes, make_call
from convtool.engine.arguments import (
    as_integer,
    as_kernel,
    as_number,
)
from convtool.engine.bands import _extend, source_positions
from convtool.engine.plan import Plan
from convtool.engine.schedule import run_bands
from convtool.errors import UsageError
from convtool.padding import Padding, parse_padding

__all__ = ["RowPlan", "Rows", "carry_maps", "plan_rows", "row_ranges"]

_FILLED = (Padding.ZERO, Padding.CONSTANT, Padding.VALID, Padding.FULL)


def plan_rows(
    shape,
    kernel,
    *,
    correlate: bool = False,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    method: str = "auto",
    threads: int | None = None,
    dtype=np.float32,
) -> RowPlan:
    """Plan ``convolve`` (or ``correlate``) of a ``(C, H, W)`` stack of ``dtype``, to run
    in pieces. Arguments as for :func:`convtool.engine.convolve`; ``threads`` fixes the
    band grid (as it does for the whole call), whatever threads a piece then runs on."""
    if len(shape) != 3 or min(shape) < 1:
        raise UsageError(f"plan_rows needs a (C, H, W) shape with no empty axis, got {shape}")
    if threads is not None:
        threads = as_integer(threads, "threads")
    plan, method = make_call(
        shape[1:], dtype, kernel, not correlate, padding, cval, stride, dilation, origin, method
    )
    return RowPlan(plan, method, int(shape[0]), threads)


class RowPlan:
    """An engine call on a whole ``(C, H, W)`` stack, run on ranges of its output rows."""

    def __init__(self, plan: Plan, method: str, channels: int, threads: int | None) -> None:
        self.plan, self.method, self.channels = plan, method, channels
        self.workers = threads or cpu_count()
        self._stop = threading.Event()  # set after each piece; compiled bands watch it
        self._method = methods.prepare(plan, method, channels, self.workers, self._stop)
        self.band = self._method.band
        self.copies = self._method.copies  # band-size arrays one band holds at its peak

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.plan.rows.n, self.plan.cols.n)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The whole output's shape ``(C, rows, columns)``."""
        return (self.channels, self.plan.rows.size, self.plan.cols.size)

    def covering(self, j0: int, j1: int) -> tuple[int, int]:
        """The whole bands of the grid that hold output rows ``j0..j1-1``."""
        size, band = self.plan.rows.size, self.band
        if not 0 <= j0 < j1 <= size:
            raise UsageError(f"output rows {j0}..{j1 - 1} are outside 0..{size - 1}")
        return j0 // band * band, min(-(-j1 // band) * band, size)

    def input_rows(self, j0: int, j1: int) -> np.ndarray:
        """The image rows (sorted, each once) that the bands covering ``j0..j1-1`` read.

        Rows beyond the border are mapped inside as the padding mode says (``wrap`` reads
        the other border); ``zero``, ``constant``, ``valid`` and ``full`` read none there.
        """
        first, last = self.covering(j0, j1)
        rows = self.plan.rows
        r0 = rows.stride * first + rows.offset
        count = rows.stride * (last - first - 1) + rows.span
        positions = np.arange(r0, r0 + count)
        inside = (positions >= 0) & (positions < rows.n)
        if self.plan.padding in _FILLED:
            return positions[inside]
        return np.unique(_extend(positions, rows.n, self.plan.padding))

    def run(self, source, j0: int, j1: int, threads: int | None = None) -> np.ndarray:
        """Output rows ``j0..j1-1``, equal byte for byte to those rows of the whole call.

        ``source``: the whole stack, or a :class:`Rows` holding at least
        :meth:`input_rows` ``(j0, j1)``. ``threads``: for this piece (default: the plan's).
        """
        first, last = self.covering(j0, j1)
        workers = threads or self.workers
        self._stop.clear()  # pieces run one after another: each gets the event afresh
        out = run_bands(self.plan, source, self._method, first, last, workers, self._stop)
        if (first, last) != (j0, j1):
            out = out[:, j0 - first : j1 - first]
        return out


def carry_maps(
    shape,
    kernel,
    *,
    convolve: bool = True,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """What :func:`convtool.engine.carry` takes, row by row: ``(row source, column source,
    cval)`` for an image of ``shape`` (its last two axes).

    Output row ``j`` (column ``i``) is input row ``rows[j]`` (column ``cols[i]``), or the
    constant ``cval`` where the source is -1, as ``carry`` computes it for the whole image.
    """
    weights, _, kernel_origin = as_kernel(kernel)
    padding = parse_padding(padding)
    cval = as_number(cval, "cval") if padding is Padding.CONSTANT else 0.0  # the others fill 0
    origin = kernel_origin if origin is None else origin
    rows, cols = _axes(tuple(shape), weights.shape, convolve, padding, stride, dilation, origin)
    return (
        source_positions(rows.anchors(), rows.n, padding),
        source_positions(cols.anchors(), cols.n, padding),
        cval,
    )


class Rows:
    """Some rows of a ``(C, H, W)`` stack: ``data[:, i]`` is row ``index[i]`` of the stack.

    Indexed as the whole stack would be on the rows it holds (``rows[:, a:b]``,
    ``rows[:, [i, j]]``), which is all the engine's gathering of a band needs; asking for
    a row it does not hold is an error (a wrong :meth:`RowPlan.input_rows`), never a
    silent substitute.
    """

    def __init__(self, data: np.ndarray, index, height: int) -> None:
        self.data = data
        self.index = np.asarray(index, dtype=np.intp)
        if self.index.shape != (data.shape[1],):
            raise ValueError(f"{data.shape[1]} rows of data for {self.index.size} row numbers")
        self.shape = (data.shape[0], int(height), data.shape[2])
        self.dtype = data.dtype

    def __getitem__(self, key) -> np.ndarray:
        channels, rows = key
        if isinstance(rows, slice):
            start, stop = rows.start or 0, rows.stop
            if stop <= start:
                return self.data[channels, 0:0]
            at = self._positions(np.array([start, stop - 1]))
            if at[1] - at[0] != stop - 1 - start:
                raise IndexError(f"rows {start}..{stop - 1} are not all held")
            return self.data[channels, at[0] : at[1] + 1]
        rows = np.asarray(rows)
        if rows.size and rows[-1] - rows[0] == rows.size - 1:  # a run of rows: a view
            return self[channels, int(rows[0]) : int(rows[-1]) + 1]
        return self.data[channels, self._positions(rows)]

    def _positions(self, rows: np.ndarray) -> np.ndarray:
        at = np.searchsorted(self.index, rows)
        at = np.minimum(at, self.index.size - 1)
        if rows.size and not np.array_equal(self.index[at], rows):
            missing = rows[self.index[at] != rows]
            raise IndexError(f"row {int(missing[0])} is not held")
        return at


def row_ranges(rows: np.ndarray) -> list[tuple[int, int]]:
    """Sorted distinct row numbers as runs ``[(start, stop), ...]``."""
    rows = np.asarray(rows)
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [rows.size]])
    return [(int(rows[a]), int(rows[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)]

"""The stages of a streamed chain: each makes rows of one ``(C, H, W)`` array on demand.

A :class:`Stage` answers ``get(rows)`` with those rows of its result and ``needs(rows)``
with the rows it reads of each stage before it, so the halo of a chain is found by asking.
:class:`Source` reads the file block by block; :class:`Held` is rows already in memory (a
Dask chunk and its halo); :class:`Engine` is one engine call
(:class:`~convtool.engine.rows.RowPlan`) computed in whole bands of its grid; :class:`Pool`
pools whole windows of rows; :class:`Carry` moves what is not filtered (alpha) with the
same geometry; :class:`Select` and :class:`Map` pick channels and combine stages pixel by
pixel. Each stage that computes keeps the blocks of its latest request (:class:`_Blocks`),
so consecutive bands share their halo rows. :mod:`convtool.pipeline.stream` wires them into
the graph of a chain.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable

import numpy as np

from convtool.engine import schedule
from convtool.engine.rows import RowPlan, Rows, carry_maps, row_ranges
from convtool.pipeline.steps import pool

__all__ = ["Carry", "Engine", "Held", "Map", "Pool", "Select", "Source", "Stage", "union_rows"]


class Stage:
    """Rows of a ``(channels, height, width)`` stack, made on demand.

    ``get(rows)`` (sorted distinct row numbers) returns a new ``(channels, len(rows),
    width)`` array; ``needs(rows)`` says what that asks of each stage before it.
    """

    channels: int
    height: int
    width: int
    dtype: np.dtype
    upstream: tuple[Stage, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def get(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def needs(self, rows: np.ndarray) -> list[tuple[Stage, np.ndarray]]:
        return [(stage, rows) for stage in self.upstream]


class _Blocks:
    """Rows computed in whole blocks of ``block`` rows, kept while the latest request needs them."""

    def __init__(self, block: int, size: int) -> None:
        self.block, self.size = block, size
        self.held: dict[int, np.ndarray] = {}

    def get(self, rows: np.ndarray, compute: Callable) -> np.ndarray:
        """``rows`` from the blocks; ``compute(spans)`` makes the missing runs of blocks."""
        block = self.block
        wanted = [int(k) for k in np.unique(rows // block)]
        # Blocks this request does not need will not be asked for again: drop them first.
        self.held = {k: self.held[k] for k in wanted if k in self.held}
        missing = [k for k in wanted if k not in self.held]
        spans = [(k0 * block, min(k1 * block, self.size)) for k0, k1 in _runs(missing)]
        if spans:
            for (start, stop), out in zip(spans, compute(spans), strict=True):
                for k in range(start // block, -(-stop // block)):
                    low, high = k * block - start, min((k + 1) * block, stop) - start
                    self.held[k] = out[:, low:high]
        parts = []
        for k in wanted:
            inside = rows[(rows >= k * block) & (rows < (k + 1) * block)] - k * block
            part = self.held[k]
            if inside.size == part.shape[1]:
                parts.append(part)
            elif inside[-1] - inside[0] + 1 == inside.size:
                parts.append(part[:, inside[0] : inside[-1] + 1])
            else:
                parts.append(part[:, inside])
        return np.concatenate(parts, axis=1)  # a copy: callers may write into it


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    return row_ranges(np.asarray(numbers, dtype=np.intp))


def _empty(stage: Stage) -> np.ndarray:
    return np.empty((stage.channels, 0, stage.width), stage.dtype)


class Source(Stage):
    """The image as read: ``read(start, stop)`` gives rows as a ``(C, rows, W)`` stack.

    The file is read in blocks of ``block_rows`` (its tile or strip height), each once
    while the requests need it. ``read_ahead``: once a request is served, the blocks the
    next one will want (as many past its last as it advanced) are read on a background
    thread, while the bands it asked for are filtered and written; :meth:`finish` waits for
    that read (before the file is closed). ``read`` is called by one thread at a time.
    """

    def __init__(self, read, shape, dtype, block_rows: int, read_ahead: bool = False) -> None:
        self.read = read
        self.channels, self.height, self.width = shape
        self.dtype = np.dtype(dtype)
        self.block_rows = max(1, int(block_rows))
        self.blocks = _Blocks(self.block_rows, self.height)
        self.raw_row_bytes: int | None = None  # a row as stored (None: as in memory)
        self.read_ahead = read_ahead
        self._reading = threading.Lock()
        self._ahead: tuple[int, schedule.Task] | None = None  # (first block, its reading)
        self._early: dict[int, np.ndarray] = {}  # blocks read ahead, not yet wanted
        self._last: int | None = None  # the last block the latest request wanted
        self._advance = 1  # the most blocks a request went past the one before

    def get(self, rows: np.ndarray) -> np.ndarray:
        if rows.size == 0:
            return _empty(self)
        first, last = int(rows[0]) // self.block_rows, int(rows[-1]) // self.block_rows
        self._take_ahead(first, last)
        out = self.blocks.get(rows, lambda spans: [self._read(a, b) for a, b in spans])
        if self.read_ahead:
            self._read_next(first, last)
        return out

    def finish(self) -> None:
        """Wait for the read ahead, if one is under way (its result is dropped)."""
        ahead, self._ahead = self._ahead, None
        self._early.clear()
        if ahead is not None:
            with contextlib.suppress(Exception):
                ahead[1].result()

    def _read(self, start: int, stop: int) -> np.ndarray:
        with self._reading:
            return self.read(start, stop)

    def _read_next(self, first: int, last: int) -> None:
        """Start reading the blocks the next request will want past ``last``: as many as
        any request went past the one before (a band of rows seldom spans whole blocks,
        so that varies), less those read ahead already."""
        if self._last is not None:
            self._advance = max(self._advance, last - self._last)
        else:
            self._advance = max(self._advance, last - first + 1)
        self._last = last
        count = -(-self.height // self.block_rows)
        start = max([last, *self._early]) + 1
        stop = min(last + 1 + self._advance, count)
        if start >= stop:
            return
        a, b = start * self.block_rows, min(stop * self.block_rows, self.height)
        try:
            self._ahead = (
                start,
                schedule.in_background(functools.partial(self._read, a, b), "read"),
            )
        except RuntimeError:  # no thread could start: the next request reads them itself
            self._ahead = None

    def _take_ahead(self, first: int, last: int) -> None:
        """The blocks read ahead that this request (blocks ``first..last``) wants, into
        the blocks held; those past it kept for the next one; those before it dropped."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            start, task = ahead
            out = task.result()  # (a read that failed fails as when read here)
            block = self.block_rows
            for k in range(start, start + -(-out.shape[1] // block)):
                low = (k - start) * block
                self._early[k] = out[:, low : low + block]
        for k in [k for k in self._early if k <= last]:
            part = self._early.pop(k)
            if k >= first:
                self.blocks.held.setdefault(k, part)


class Held(Stage):
    """Rows already in memory: ``data[:, i]`` is row ``index[i]`` (a Dask chunk and its halo)."""

    def __init__(self, data: np.ndarray, index, height: int) -> None:
        self.data, self.index = data, np.asarray(index, dtype=np.intp)
        self.channels, self.height, self.width = data.shape[0], int(height), data.shape[2]
        self.dtype = data.dtype

    def get(self, rows: np.ndarray) -> np.ndarray:
        return Rows(self.data, self.index, self.height)[:, rows]


class Engine(Stage):
    """One engine call (:class:`~convtool.engine.rows.RowPlan`), computed in whole bands."""

    def __init__(self, upstream: Stage, call: RowPlan, offset: float = 0.0) -> None:
        self.upstream = (upstream,)
        self.call, self.offset = call, offset
        self.channels, self.height, self.width = call.shape
        self.dtype = call.plan.dtype
        self.threads: int | None = None  # threads for each piece (default: the plan's)
        self.blocks = _Blocks(call.band, self.height)

    def needs(self, rows: np.ndarray) -> list[tuple[Stage, np.ndarray]]:
        need = [self.call.input_rows(a, b) for a, b in row_ranges(rows)]
        return [(self.upstream[0], union_rows(need))]

    def get(self, rows: np.ndarray) -> np.ndarray:
        return self.blocks.get(rows, self._compute)

    def _compute(self, spans: list[tuple[int, int]]) -> list[np.ndarray]:
        (upstream,) = self.upstream
        need = union_rows([self.call.input_rows(a, b) for a, b in spans])
        source = Rows(upstream.get(need), need, upstream.height)
        outs = [self.call.run(source, a, b, self.threads) for a, b in spans]
        if self.offset:  # libvips .mat files add a constant after the weighted sum
            for out in outs:
                out += self.offset
        return outs


def union_rows(parts: list[np.ndarray]) -> np.ndarray:
    """The sorted distinct row numbers of ``parts`` (an empty index for none)."""
    if not parts:
        return np.empty(0, np.intp)
    return np.unique(np.concatenate(parts)) if len(parts) > 1 else parts[0]


class Pool(Stage):
    """Max or average pooling (:func:`~.steps.pool`) over windows of whole input rows."""

    def __init__(self, upstream: Stage, kind: str, size, stride) -> None:
        pool(np.empty((0, *upstream.shape[1:]), upstream.dtype), kind, size, stride)  # its checks
        self.upstream = (upstream,)
        self.kind, self.size, self.stride = kind, tuple(size), tuple(stride)
        self.channels, self.dtype = upstream.channels, upstream.dtype
        self.height = (upstream.height - size[0]) // stride[0] + 1
        self.width = (upstream.width - size[1]) // stride[1] + 1

    def _spans(self, rows: np.ndarray) -> list[tuple[int, int, int, int]]:
        step, size = self.stride[0], self.size[0]
        return [(a, b, step * a, step * (b - 1) + size) for a, b in row_ranges(rows)]

    def needs(self, rows: np.ndarray) -> list[tuple[Stage, np.ndarray]]:
        spans = self._spans(rows)
        return [(self.upstream[0], union_rows([np.arange(x, y) for _, _, x, y in spans]))]

    def get(self, rows: np.ndarray) -> np.ndarray:
        if rows.size == 0:
            return _empty(self)
        spans = self._spans(rows)
        need = union_rows([np.arange(x, y) for _, _, x, y in spans])
        data = self.upstream[0].get(need)
        outs = []
        for _, _, x, y in spans:
            at = int(np.searchsorted(need, x))
            outs.append(pool(data[:, at : at + y - x], self.kind, self.size, self.stride))
        return np.concatenate(outs, axis=1)


class Carry(Stage):
    """A stage moved as a filter moves its input, without mixing pixels (alpha, channels
    left unfiltered): :func:`convtool.engine.carry`, row by row (:func:`carry_maps`)."""

    def __init__(self, upstream: Stage, kernel_shape, **geometry) -> None:
        self.upstream = (upstream,)
        kernel = np.zeros(kernel_shape)  # only the shape matters (zeros: weights are checked)
        self.rows, self.cols, self.cval = carry_maps(upstream.shape[1:], kernel, **geometry)
        self.channels, self.dtype = upstream.channels, upstream.dtype
        self.height, self.width = self.rows.size, self.cols.size

    def needs(self, rows: np.ndarray) -> list[tuple[Stage, np.ndarray]]:
        source = self.rows[rows]
        return [(self.upstream[0], np.unique(source[source >= 0]))]

    def get(self, rows: np.ndarray) -> np.ndarray:
        source = self.rows[rows]
        need = np.unique(source[source >= 0])
        if need.size:
            data = self.upstream[0].get(need)
            out = np.take(data, np.searchsorted(need, np.maximum(source, 0)), axis=1)
        else:  # every row is the constant (a full padding's ring)
            out = np.empty((self.channels, rows.size, self.upstream[0].width), self.dtype)
        if (source < 0).any():
            out[:, source < 0] = self.cval
        out = np.take(out, np.maximum(self.cols, 0), axis=2)
        if (self.cols < 0).any():
            out[:, :, self.cols < 0] = self.cval
        return out


class Select(Stage):
    """Some channels of a stage, in the order given."""

    def __init__(self, upstream: Stage, channels) -> None:
        self.upstream = (upstream,)
        self.picked = list(channels)
        self.channels, self.height, self.width = len(self.picked), upstream.height, upstream.width
        self.dtype = upstream.dtype

    def get(self, rows: np.ndarray) -> np.ndarray:
        return self.upstream[0].get(rows)[self.picked]


class Map(Stage):
    """A pixel-by-pixel function of stages of one geometry (``channels`` out)."""

    def __init__(self, function, *upstream: Stage, channels: int | None = None) -> None:
        self.upstream = upstream
        self.function = function
        first = upstream[0]
        self.channels = first.channels if channels is None else channels
        self.height, self.width, self.dtype = first.height, first.width, first.dtype

    def get(self, rows: np.ndarray) -> np.ndarray:
        return self.function(*(stage.get(rows) for stage in self.upstream))

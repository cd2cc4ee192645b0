"""What a chunk of rows runs, how an image is cut into chunks, and the ``map_overlap`` call.

A *spec* says what each chunk computes: :class:`EngineSpec` one engine call on the last two
axes, :class:`ChainSpec` a whole :class:`~convtool.pipeline.Chain` on an image's samples.
Each builds the stream graph of its work (:mod:`convtool.pipeline.stream`) for the whole
image, so that :func:`plan_chunks` finds the halo (``depth``) by asking the graph which
input rows each chunk's output rows read, and each chunk computes its rows in the same band
grid as the whole image would (:func:`map_rows`, :func:`_chunk`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import dask.array as da
import numpy as np

from convtool._system import cpu_count
from convtool.engine.rows import plan_rows
from convtool.padding import Padding, parse_padding
from convtool.pipeline import stream
from convtool.pipeline.stream_memory import STREAM_BAND_BYTES

__all__ = [
    "ChainSpec",
    "ChunkPlan",
    "EngineSpec",
    "grid_threads",
    "map_rows",
    "plan_chunks",
    "resolved",
]


def grid_threads(threads: int | None) -> int:
    """The engine's threads: ``threads``, or its own default (this machine's CPUs)."""
    return threads or cpu_count()  # the engine's own default, so the band grid matches


def resolved(chain):
    """``chain`` with its threads fixed here: the band grid must not depend on the worker."""
    options = chain.options
    return replace(chain, options=replace(options, threads=grid_threads(options.threads)))


# ----------------------------------------------------------------------------- what a chunk runs


@dataclass(frozen=True)
class EngineSpec:
    """One engine call on the last two axes (leading axes stacked as channels)."""

    kernel: Any
    flip: bool
    padding: Any
    cval: float
    stride: Any
    dilation: Any
    origin: Any
    method: str
    threads: int
    row_axis: int = -2

    def graph(self, shape, dtype, source: stream.Stage) -> stream.Graph:
        channels = int(np.prod(shape[:-2], dtype=np.int64))
        call = plan_rows(
            (channels, *shape[-2:]), self.kernel, correlate=not self.flip,
            padding=self.padding, cval=self.cval, stride=self.stride, dilation=self.dilation,
            origin=self.origin, method=self.method, threads=self.threads, dtype=_work(dtype),
        )  # fmt: skip
        return stream.Graph(stream.Engine(source, call), None, source)

    def stack(self, block: np.ndarray, shape) -> np.ndarray:
        """A chunk as the (C, rows, W) stack the engine reads (its own numbers)."""
        return block.reshape((-1, *block.shape[-2:]))

    def source_shape(self, shape, dtype) -> tuple[tuple[int, int, int], np.dtype]:
        channels = int(np.prod(shape[:-2], dtype=np.int64))
        return (channels, *shape[-2:]), np.dtype(dtype)

    def finish(self, graph: stream.Graph, start: int, stop: int, shape, dtype) -> np.ndarray:
        out = graph.colour.get(np.arange(start, stop))
        if np.dtype(dtype).kind == "f":
            out = out.astype(dtype, copy=False)
        return out.reshape((*shape[:-2], *out.shape[-2:]))

    def out_shape(self, graph: stream.Graph, shape) -> tuple[int, ...]:
        return (*shape[:-2], graph.height, graph.width)

    def out_dtype(self, dtype) -> np.dtype:
        dtype = np.dtype(dtype)
        return dtype if dtype.kind == "f" else _work(dtype)

    def wraps(self) -> bool:
        return parse_padding(self.padding) is Padding.WRAP


def _work(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    return np.dtype(np.float32 if dtype.kind == "f" and dtype.itemsize <= 4 else np.float64)


@dataclass(frozen=True)
class ChainSpec:
    """A chain over (H, W, C) samples; ``finish`` None gives floats (alpha last), or maps
    ``(colour, alpha)`` rows to what is written."""

    chain: Any  # a pipeline.Chain, its threads fixed (resolved)
    has_alpha: bool
    depth: Any  # 8, 16, 32 or "float": the value scale
    precision: str
    gray: bool
    samples: Any  # None: floats; else (fmt, out depth, range mode, out dtype)
    row_axis: int = 0

    def _layout(self, shape) -> tuple[int, int]:
        colour = shape[2] - self.has_alpha
        return colour, (1 if self.gray and colour == 3 else colour)

    def source_shape(self, shape, dtype) -> tuple[tuple[int, int, int], np.dtype]:
        _, channels = self._layout(shape)
        work = np.float64 if self.precision == "double" else np.float32
        return (channels + self.has_alpha, shape[0], shape[1]), np.dtype(work)

    def graph(self, shape, dtype, source: stream.Stage) -> stream.Graph:
        _, channels = self._layout(shape)
        return stream.build_on(self.chain, source, channels, self.has_alpha)

    def stack(self, block: np.ndarray, shape) -> np.ndarray:
        from convtool.images.codecs import Decoded
        from convtool.images.image import PRECISIONS
        from convtool.images.reading import to_image
        from convtool.pipeline.chain import _require_finite

        if block.dtype == np.bool_:
            block = block.astype(np.uint8) * 255
        decoded = Decoded(block, self.has_alpha, self.depth, "DASK")
        image = to_image(decoded, "dask array", PRECISIONS[self.precision], self.gray)
        _require_finite(image.pixels, image.alpha, None)
        stack = np.moveaxis(image.pixels, -1, 0)
        if image.alpha is not None:
            return np.concatenate([stack, image.alpha[np.newaxis]], axis=0)
        return np.ascontiguousarray(stack)

    def finish(self, graph: stream.Graph, start: int, stop: int, shape, dtype) -> np.ndarray:
        colour, alpha = graph.rows(start, stop)
        if self.samples is not None:
            from convtool.images.ranges import output_samples

            _, out_depth, range_mode, out_dtype = self.samples
            colour, alpha = output_samples(colour, alpha, self.depth, out_depth, range_mode)
            colour = colour.astype(out_dtype, copy=False)
        if alpha is None:
            return colour
        return np.concatenate([colour, alpha[:, :, np.newaxis].astype(colour.dtype)], axis=2)

    def out_shape(self, graph: stream.Graph, shape) -> tuple[int, ...]:
        return (graph.height, graph.width, graph.channels + (graph.alpha is not None))

    def out_dtype(self, dtype) -> np.dtype:
        if self.samples is not None:
            return np.dtype(self.samples[3])
        return np.dtype(np.float64 if self.precision == "double" else np.float32)

    def wraps(self) -> bool:
        return self.chain.options.padding is Padding.WRAP


# ----------------------------------------------------------------------------- the chunks


@dataclass(frozen=True)
class ChunkPlan:
    """How an image is cut: input rows ``inputs[k]..inputs[k+1]-1`` and a halo of ``depth``
    rows give output rows ``outputs[k]..outputs[k+1]-1``."""

    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    depth: int
    out_shape: tuple[int, ...]

    @property
    def input_chunks(self) -> tuple[int, ...]:
        return tuple(np.diff(self.inputs).tolist())

    @property
    def output_chunks(self) -> tuple[int, ...]:
        return tuple(np.diff(self.outputs).tolist())


def plan_chunks(shape, dtype, spec, chunk_rows: int | None = None) -> ChunkPlan:
    """Cut an image of ``shape`` into chunks of whole rows and find their halo."""
    graph = _planning_graph(spec, tuple(shape), dtype)
    height = graph.height
    if chunk_rows is None:
        row_bytes = graph.channels * graph.width * graph.colour.dtype.itemsize
        chunk_rows = max(1, STREAM_BAND_BYTES // max(1, row_bytes))
    rows_in = shape[spec.row_axis]
    out_shape = spec.out_shape(graph, shape)
    while True:
        outputs = [*range(0, height, chunk_rows), height]
        while True:
            inputs = [0, *(round(j * rows_in / height) for j in outputs[1:-1]), rows_in]
            if len(outputs) == 2:
                return ChunkPlan((0, rows_in), tuple(outputs), 0, out_shape)
            sizes = np.diff(inputs)
            depth = _depth(graph, inputs, outputs, rows_in, spec.wraps()) if sizes.min() else 0
            if sizes.min() and depth <= sizes.min():
                return ChunkPlan(tuple(inputs), tuple(outputs), depth, out_shape)
            if sizes[:-1].min() < max(depth, 1):
                break  # the halo reaches past a neighbour: taller chunks
            del outputs[-2]  # only the short last chunk: it joins the one before
        chunk_rows *= 2


def _planning_graph(spec, shape, dtype) -> stream.Graph:
    source_shape, work = spec.source_shape(shape, dtype)
    return spec.graph(shape, dtype, stream.Source(None, source_shape, work, 1))


def _depth(graph: stream.Graph, inputs, outputs, rows_in: int, wraps: bool) -> int:
    """The most rows any chunk's outputs read beyond its own input rows."""
    depth = 0
    for k in range(len(outputs) - 1):
        asked = graph.asked(np.arange(outputs[k], outputs[k + 1]))
        rows = asked.get(id(graph.source))
        if rows is None or rows.size == 0:
            continue
        low, high = inputs[k], inputs[k + 1]
        # with wrap a row near the other border is read across it: take the nearest copy
        copies = np.stack([rows, rows - rows_in, rows + rows_in]) if wraps else rows[None]
        beyond = np.maximum(np.maximum(low - copies, copies + 1 - high), 0)
        depth = max(depth, int(beyond.min(axis=0).max()))
    return depth


def map_rows(x, spec, chunk_rows: int | None):
    """``spec`` over dask array ``x`` in chunks of whole rows with their halo (lazy)."""
    axis = spec.row_axis % x.ndim
    shape, dtype = tuple(x.shape), x.dtype
    plan = plan_chunks(shape, dtype, spec, chunk_rows)
    chunks = tuple(plan.input_chunks if a == axis else (n,) for a, n in enumerate(shape))
    x = x.rechunk(chunks)
    out_chunks = tuple(
        plan.output_chunks if a == axis else (n,) for a, n in enumerate(plan.out_shape)
    )
    depth = {a: (plan.depth if a == axis else 0) for a in range(x.ndim)}
    boundary = {a: ("periodic" if a == axis and spec.wraps() else "none") for a in range(x.ndim)}
    out_dtype = spec.out_dtype(dtype)
    return da.map_overlap(
        functools.partial(_chunk, spec=spec, plan=plan, shape=shape, dtype=dtype),
        x,
        depth=depth,
        boundary=boundary,
        trim=False,
        allow_rechunk=False,
        chunks=out_chunks,
        dtype=out_dtype,
        meta=np.empty((0,) * x.ndim, out_dtype),
    )


def _chunk(block: np.ndarray, *, spec, plan: ChunkPlan, shape, dtype, block_id=None):
    """Output rows of chunk ``block_id`` from its input rows and their halo (``block``)."""
    axis = spec.row_axis % len(shape)
    k = block_id[axis]
    rows_in = shape[axis]
    start = plan.inputs[k] - plan.depth
    if not spec.wraps():
        start = max(0, start)
    index = np.arange(start, start + block.shape[axis])
    if spec.wraps():
        index %= rows_in
    rows, first = np.unique(index, return_index=True)
    block = np.take(np.asarray(block), first, axis=axis)
    stack = spec.stack(block, shape)
    source_shape, work = spec.source_shape(shape, dtype)
    held = stream.Held(stack.astype(work, copy=False), rows, source_shape[1])
    graph = spec.graph(shape, dtype, held)
    graph.set_threads(1)  # a worker runs as many chunks as it has threads
    return spec.finish(graph, plan.outputs[k], plan.outputs[k + 1], shape, dtype)

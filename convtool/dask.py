"""One image across a Dask cluster: chunks of rows with ``dask.array.map_overlap``.

    import dask.array as da
    import convtool, convtool.dask

    x = da.from_zarr("big.zarr")                                  # (H, W) or (..., H, W)
    y = convtool.dask.convolve(x, convtool.get_kernel("gaussian:sigma=3"))
    y.to_zarr("out.zarr")                                         # == convtool.convolve(x)

The result is byte for byte that of the in-memory call (:func:`convtool.convolve`, or a
:class:`~convtool.pipeline.Chain` for :func:`filter_image`). The array is cut into chunks
of whole rows (all columns and channels in each, so every engine call is planned as the
whole image's); each chunk is filtered by convtool's engine from its rows and a halo of
neighbouring ones. The halo (``depth``) is what the chunk's output rows read through the
whole chain, with the engine's band grid (:mod:`convtool.pipeline.stream`): real
neighbours inside the image, and at its border ``boundary="none"`` so that convtool applies
its own padding mode exactly (``"periodic"`` for ``wrap``, whose border reads the other
side). No worker holds more than its chunks.

Needs ``dask`` (``pip install "convtool[dask]"``); imported when this module is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from convtool._system import cpu_count
from convtool.batch.dask_runner import CONNECT_TIMEOUT, _one_line, _task_error, require_dask
from convtool.errors import ConvtoolError, UsageError

try:
    import dask.array as da
except ImportError:  # pragma: no cover - the message is the point
    raise UsageError("convtool.dask needs dask: pip install 'convtool[dask]'") from None

from convtool.engine.rows import plan_rows
from convtool.padding import Padding, parse_padding
from convtool.pipeline import stream
from convtool.pipeline.memory import STREAM_BAND_BYTES

__all__ = ["convolve", "correlate", "filter_file", "filter_image", "plan_chunks"]


def convolve(
    array,
    kernel,
    *,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    method: str = "auto",
    threads: int | None = None,
    chunk_rows: int | None = None,
):
    """:func:`convtool.convolve` of the last two axes of a dask array, as a dask array.

    Arguments as for :func:`convtool.convolve`. ``threads`` fixes the engine's band grid as
    it does in memory (default: this machine's CPUs), so results match a local call with
    the same ``threads``; each chunk runs on one thread of its worker. ``chunk_rows``:
    output rows per chunk (default: about 64 MiB of results).
    """
    spec = _EngineSpec(
        kernel, True, padding, cval, stride, dilation, origin, method, _threads(threads)
    )
    return _map_rows(da.asarray(array), spec, chunk_rows)


def correlate(
    array,
    kernel,
    *,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    method: str = "auto",
    threads: int | None = None,
    chunk_rows: int | None = None,
):
    """:func:`convtool.correlate` of a dask array (the kernel as written); see :func:`convolve`."""
    spec = _EngineSpec(
        kernel, False, padding, cval, stride, dilation, origin, method, _threads(threads)
    )
    return _map_rows(da.asarray(array), spec, chunk_rows)


def filter_image(
    array,
    chain,
    *,
    has_alpha: bool = False,
    depth: int | str | None = None,
    precision: str = "single",
    gray: bool = False,
    chunk_rows: int | None = None,
):
    """Apply a :class:`~convtool.pipeline.Chain` to an image held as a dask array.

    ``array``: samples ``(H, W)`` or ``(H, W, C)`` as a file holds them (alpha the last
    channel when ``has_alpha``), e.g. ``da.from_zarr``. They become floats as
    :func:`convtool.read_image` makes them (``depth`` 8, 16, 32 or ``"float"``: the value
    scale, by default from the dtype; ``precision``; ``gray``). Returns the filtered
    ``(H', W', C)`` floats, with the carried (or filtered) alpha as one more last channel,
    as :meth:`Chain.apply` gives pixels and alpha.
    """
    x = da.asarray(array)
    if x.ndim == 2:
        x = x[:, :, np.newaxis]
    if x.ndim != 3 or not 1 <= x.shape[2] <= 4:
        raise UsageError(f"filter_image needs (H, W) or (H, W, C) samples, got shape {x.shape}")
    if depth is None:
        from convtool.images.decoded import depth_of_dtype

        depth = 8 if x.dtype == np.bool_ else depth_of_dtype(x.dtype)
    spec = _ChainSpec(_resolved(chain), has_alpha, depth, precision, gray, None)
    return _map_rows(x, spec, chunk_rows)


def _threads(threads: int | None) -> int:
    return threads or cpu_count()  # the engine's own default, so the band grid matches


def _resolved(chain):
    """``chain`` with its threads fixed here: the band grid must not depend on the worker."""
    options = chain.options
    return replace(chain, options=replace(options, threads=_threads(options.threads)))


# ----------------------------------------------------------------------------- what a chunk runs


@dataclass(frozen=True)
class _EngineSpec:
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
class _ChainSpec:
    """A chain over (H, W, C) samples; ``finish`` None gives floats (alpha last), or maps
    ``(colour, alpha)`` rows to what is written."""

    chain: Any  # a pipeline.Chain, its threads fixed (_resolved)
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
        from convtool.images.api import _PRECISIONS, _to_image
        from convtool.images.codecs import Decoded
        from convtool.pipeline.chain import _require_finite

        if block.dtype == np.bool_:
            block = block.astype(np.uint8) * 255
        decoded = Decoded(block, self.has_alpha, self.depth, "DASK")
        image = _to_image(decoded, "dask array", _PRECISIONS[self.precision], self.gray)
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


def _map_rows(x, spec, chunk_rows: int | None):
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


# ----------------------------------------------------------------------------- one image file


def filter_file(
    job, settings, address: str | None, *, progress=None, client=None, chunk_rows=None
) -> None:
    """Filter one image across the cluster at ``address``, into a zarr store (``job.dest``).

    The input (zarr, TIFF or ``.npy``, at a path every worker sees) is read by the workers
    chunk by chunk; each chunk is filtered with its halo (:mod:`convtool.dask`) and written
    by its worker into the store, built under a temporary name beside ``job.dest`` and
    renamed when every chunk is in. ``progress(done, total)`` is called as chunks finish.
    ``client``: an existing ``distributed.Client`` instead of connecting to ``address``;
    ``chunk_rows``: output rows per chunk (default: about 16 MiB of results).
    """
    require_dask()
    import numpy as np
    from distributed import as_completed

    from convtool import images
    from convtool.batch.streaming import output_format
    from convtool.images import tiles
    from convtool.images.atomic import atomic_directory

    fmt = output_format(job, settings)
    if fmt not in ("zarr", "zarr2"):
        raise UsageError(
            "--dask with one image writes a zarr store, which the workers fill chunk by "
            f"chunk: use -o NAME.zarr (not {fmt})",
            path=job.dest,
        )
    if job.source == "-":
        raise UsageError("--dask reads the image from a path every worker sees, not stdin")
    write = settings.write
    if write.range_mode == "rescale":
        raise UsageError("--range rescale needs the whole result, so it does not run in chunks")
    with tiles.open_reader(job.source, settings.read.stream_max_pixels) as reader:
        header = (reader.height, reader.width, reader.samples)
        dtype, depth, has_alpha = reader.dtype, reader.depth, reader.has_alpha
    out_depth = images.output_depth(fmt, depth, write.depth)
    work = np.float64 if settings.read.precision == "double" else np.float32
    out_dtype = tiles.sample_dtype(fmt, out_depth, work)
    chain = _resolved(settings.chain)
    spec = _ChainSpec(
        chain, has_alpha, depth, settings.read.precision, settings.read.gray,
        (fmt, out_depth, write.range_mode, out_dtype),
    )  # fmt: skip
    plan = plan_chunks(header, dtype, spec, chunk_rows)
    source = _file_array(job.source, header, dtype, plan.input_chunks, settings)
    result = _map_rows(source, spec, plan.output_chunks[0])
    own = client is None
    if client is None:
        if address is None:
            raise UsageError("filter_file needs a scheduler address or a client")
        client = _connect(address)
    try:
        with atomic_directory(job.dest, tiles.is_zarr_store) as temp:
            zarr = tiles.import_zarr()
            chunk_rows = plan.output_chunks[0]
            array = tiles.create_zarr(
                zarr, temp, plan.out_shape, out_dtype, fmt, write.compress_level,
                (chunk_rows, tiles.ZARR_CHUNK[1]),
            )  # fmt: skip
            del array
            stored = result.map_blocks(
                _store_block, str(temp), plan.outputs, dtype=np.int8,
                chunks=tuple((1,) * len(c) for c in result.chunks), meta=np.empty((0, 0, 0), np.int8),
            )  # fmt: skip
            futures = client.compute(list(stored.to_delayed().ravel()))
            total = len(futures)
            try:
                for done, future in enumerate(as_completed(futures, loop=client.loop), start=1):
                    if future.status != "finished":
                        raise ConvtoolError(f"a Dask task failed: {_task_error(future)}")
                    if progress is not None:
                        progress(done, total)
            finally:
                client.cancel(futures)
    finally:
        if own:
            client.close()


def _connect(address: str):
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        message = f"cannot reach the Dask scheduler at {address}: {_one_line(err)}"
        raise ConvtoolError(message) from None


def _file_array(path: str, header, dtype, chunks, settings):
    """The image's samples as a dask array whose chunks the workers read from the file."""
    height, width, samples = header
    bounds = np.concatenate([[0], np.cumsum(chunks)]).tolist()
    return da.map_blocks(
        _read_block, path, bounds, settings.read.stream_max_pixels,
        chunks=(tuple(chunks), (width,), (samples,)), dtype=dtype,
        meta=np.empty((0, 0, 0), dtype),
    )  # fmt: skip


def _read_block(path: str, bounds, max_pixels, block_id=None):
    from convtool.images import tiles

    start, stop = bounds[block_id[0]], bounds[block_id[0] + 1]
    with tiles.open_reader(path, max_pixels) as reader:
        return reader.read(start, stop)


def _store_block(block, folder: str, bounds, block_id=None):
    from convtool.images import tiles

    zarr = tiles.import_zarr()
    array = zarr.open_array(folder, mode="r+")
    start = bounds[block_id[0]]
    data = block if array.ndim == 3 else block[:, :, 0]
    array[start : start + block.shape[0]] = data
    return np.zeros((1, 1, 1), np.int8)

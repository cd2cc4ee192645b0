"""One image file across a Dask cluster, into a zarr store the workers fill chunk by chunk.

:func:`filter_file` is what ``convtool filter BIG -o OUT.zarr --dask`` runs: the workers read
the input (zarr, TIFF or ``.npy``, at a path every worker sees) chunk by chunk, filter each
with its halo (:mod:`convtool.dask.chunks`) and write it into a store built under a
temporary name beside the destination, renamed when every chunk is in.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from convtool.batch.dask_runner import CONNECT_TIMEOUT, _one_line, _task_error, require_dask
from convtool.dask.chunks import ChainSpec, map_rows, plan_chunks, resolved
from convtool.errors import ConvtoolError, UsageError

__all__ = ["filter_file"]


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
    chain = resolved(settings.chain)
    spec = ChainSpec(
        chain, has_alpha, depth, settings.read.precision, settings.read.gray,
        (fmt, out_depth, write.range_mode, out_dtype),
    )  # fmt: skip
    plan = plan_chunks(header, dtype, spec, chunk_rows)
    source = _file_array(job.source, header, dtype, plan.input_chunks, settings)
    result = map_rows(source, spec, plan.output_chunks[0])
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

"""Running batch jobs on an existing Dask distributed cluster (``--dask ADDRESS``), or one
image cut into chunks across it (:func:`filter_on_dask`).

Each job is one task, :func:`convtool.batch.process_quietly`: the worker reads the input and writes the
output by path, so the workers must share a file system with the client (the same paths
must name the same files) and have convtool installed. Results come back as the same
:class:`~convtool.batch.JobResult`\\ s as from the local pool. ``dask[distributed]`` is an
optional extra and is imported only here, only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from convtool.errors import ConvtoolError, UsageError

MISSING = "--dask needs dask.distributed: pip install 'convtool[dask]'"
# How long to wait for the scheduler before saying it cannot be reached.
CONNECT_TIMEOUT = "10s"


def require_dask() -> None:
    """Raise :class:`UsageError` telling how to install it when dask.distributed is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UsageError(MISSING) from None


def run_on_dask(jobs, settings, address: str, stop: Callable) -> Iterator:
    """Submit ``jobs`` (in order of priority) to the scheduler at ``address``; yield results.

    When ``stop(result)`` is true the tasks not yet finished are cancelled and no more
    results are yielded (tasks already running on a worker may still finish). Closing the
    iterator or an interruption cancels them too.
    """
    from distributed import Client, as_completed

    from convtool.batch.jobs import JobResult
    from convtool.batch.worker import process_quietly, with_threads

    # A Dask worker runs as many tasks at once as it has threads, and clusters are usually
    # set up with one thread per core: one engine thread per image uses them all.
    settings = with_threads(settings, 1)
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        message = f"cannot reach the Dask scheduler at {address}: {_one_line(err)}"
        raise ConvtoolError(message) from None
    futures = {}
    try:
        for rank, job in enumerate(jobs):
            # Dask runs higher priorities first: keep the caller's largest-first order.
            future = client.submit(
                process_quietly, job, settings, pure=False, priority=len(jobs) - rank
            )
            futures[future] = job
        for future in as_completed(list(futures), loop=client.loop):
            job = futures.pop(future)
            if future.status == "finished":
                result = future.result()
            else:  # the task itself failed: a worker died, or convtool is missing there
                result = JobResult(job, "failed", f"Dask task failed: {_task_error(future)}")
            yield result
            if stop(result):
                break
    finally:
        if futures:
            client.cancel(list(futures))
        client.close()


def _task_error(future) -> str:
    try:
        err = future.exception()
    except Exception as exc:  # noqa: BLE001 - a cancelled or lost future
        err = exc
    return _one_line(err) if err is not None else future.status


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# ------------------------------------------------------------------------- one image, in chunks


def filter_on_dask(
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

    from convtool import dask as cdask
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
    chain = cdask._resolved(settings.chain)
    spec = cdask._ChainSpec(
        chain, has_alpha, depth, settings.read.precision, settings.read.gray,
        (fmt, out_depth, write.range_mode, out_dtype),
    )  # fmt: skip
    plan = cdask.plan_chunks(header, dtype, spec, chunk_rows)
    source = _file_array(job.source, header, dtype, plan.input_chunks, settings)
    result = cdask._map_rows(source, spec, plan.output_chunks[0])
    own = client is None
    if own:
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
    import dask.array as da
    import numpy as np

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
    import numpy as np

    from convtool.images import tiles

    zarr = tiles.import_zarr()
    array = zarr.open_array(folder, mode="r+")
    start = bounds[block_id[0]]
    data = block if array.ndim == 3 else block[:, :, 0]
    array[start : start + block.shape[0]] = data
    return np.zeros((1, 1, 1), np.int8)

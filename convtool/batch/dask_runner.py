"""Running batch jobs on an existing Dask distributed cluster (``--dask ADDRESS``).

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

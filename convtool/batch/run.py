"""Running jobs: here, on a local process pool or on a Dask cluster, one result per file.

:func:`run` yields a :class:`~convtool.batch.jobs.JobResult` for each job as it finishes,
going on past bad files unless asked to stop. The CLI only draws them::

    the_plan = batch.plan(["photos"], "edges", recursive=True, suffix="-edges")
    with contextlib.closing(batch.run(the_plan.jobs, settings, workers=4)) as results:
        for result in results:
            print(result.job.source, result.status, result.reason or "")
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import replace

from convtool._system import cpu_count
from convtool.batch.interrupts import Interrupted, signals_raise  # noqa: F401 - re-exported
from convtool.batch.jobs import FAILED, Job, JobResult, Settings
from convtool.batch.worker import process_quietly, with_threads
from convtool.errors import ImageWriteError, UsageError
from convtool.images import atomic
from convtool.images.atomic import write_error_reason

# ------------------------------------------------------------------------------ one job


# -------------------------------------------------------------------------------- running


def run(
    jobs: Iterable[Job],
    settings: Settings,
    *,
    workers: int | None = None,
    fail_fast: bool = False,
    dask_address: str | None = None,
) -> Iterator[JobResult]:
    """Run ``jobs`` and yield one :class:`JobResult` per job as each finishes.

    ``workers``: local processes (default: the usable CPUs); 1 runs in this process. With
    N workers on C CPUs each gets ``max(1, C // N)`` engine threads unless the chain sets
    its own. Larger input files go first, so one big image does not finish alone at the
    end. ``fail_fast``: at the first failure no more jobs start (those running finish and
    are reported); a full disk stops the batch the same way. ``dask_address``: send the
    jobs to that Dask scheduler instead (its workers must see the same paths).

    Stale temporary files left in the output folders by dead processes are removed first,
    and again at the end of a local run. While iterating, SIGTERM, SIGHUP and the other
    terminating signals raise :class:`Interrupted` (a KeyboardInterrupt). On an
    interruption, or when the iterator is closed early, queued jobs are cancelled, worker
    processes are stopped (removing their temporary files) and the exception propagates. Close the iterator when leaving early (``contextlib.closing``).
    Usage errors (no Dask, a bad ``workers``) are raised at the call, before iterating.
    """
    jobs = list(jobs)
    if workers is not None and (
        isinstance(workers, bool) or int(workers) != workers or workers < 1
    ):
        raise UsageError(f"--jobs must be a whole number ≥ 1, got {workers}")
    if dask_address is not None:
        from convtool.batch import dask_runner  # logging, sockets: only for a cluster

        dask_runner.require_dask()
        dask_address = dask_runner.check_address(dask_address)

    def stop(result: JobResult) -> bool:
        return result.fatal or (fail_fast and result.status == FAILED)

    return _run(jobs, settings, workers or cpu_count(), stop, dask_address)


def _run(jobs, settings, workers, stop, dask_address) -> Iterator[JobResult]:
    if not jobs:
        return
    roots = sorted({job.root for job in jobs if job.root is not None})
    for root in roots:
        _create_folder(root)
        atomic.remove_stale_temp_files(root, recursive=True)
    ordered = largest_first(jobs)
    with signals_raise():
        if dask_address is not None:
            from convtool.batch import dask_runner

            yield from dask_runner.run_on_dask(ordered, settings, dask_address, stop)
            return  # tasks cancelled on a Dask cluster may still run: leave their temps
        try:
            if min(workers, len(jobs)) == 1:
                yield from _run_here(ordered, settings, stop)
            else:
                # multiprocessing (~10 ms to import) only for a pool: one file never needs it
                from convtool.batch.pool import run_in_pool

                count = min(workers, len(jobs))
                yield from run_in_pool(
                    ordered,
                    replace(with_threads(settings, max(1, cpu_count() // count)), workers=count),
                    count,
                    stop,
                )
        finally:
            for root in roots:
                atomic.remove_stale_temp_files(root, recursive=True)


def _create_folder(root: str) -> None:
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as err:
        message = f"cannot create the output folder: {write_error_reason(err)}"
        raise ImageWriteError(message, path=root) from None


def largest_first(jobs: list[Job]) -> list[Job]:
    """Jobs by decreasing input file size (a stable sort; stdin and missing files last)."""

    def size(job: Job) -> int:
        try:
            return os.stat(job.source).st_size if job.source != "-" else 0
        except OSError:
            return 0

    return sorted(jobs, key=size, reverse=True)


def _run_here(jobs: list[Job], settings: Settings, stop) -> Iterator[JobResult]:
    for job in jobs:
        result = process_quietly(job, settings)
        yield result
        if stop(result):
            return


sigterm_raises = signals_raise  # the name of earlier versions

"""Turning inputs into jobs and running them, one result per file.

A job is one input read, filtered by a :class:`~convtool.pipeline.Chain` and written to one
output. :func:`plan` expands files and folders into jobs (and the files it leaves out, with
why); :func:`process` runs a single job and raises on failure (the one-file CLI path);
:func:`run` runs many, on a local process pool or a Dask cluster, and yields a
:class:`JobResult` for each as it finishes, going on past bad files unless asked to stop;
:func:`summarize` counts the results and picks the exit code. The CLI only draws them::

    the_plan = batch.plan(["photos"], "edges", recursive=True, suffix="-edges")
    with contextlib.closing(batch.run(the_plan.jobs, settings, workers=4)) as results:
        for result in results:
            print(result.job.source, result.status, result.reason or "")
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .errors import ConvtoolError, ImageWriteError, UsageError
from .interrupts import Interrupted, signals_raise  # noqa: F401 - callers catch Interrupted

if TYPE_CHECKING:  # pipeline pulls in the engine and kernels; planning needs neither
    from .pipeline import Chain

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass(frozen=True)
class ReadOptions:
    """How inputs are decoded (see :func:`convtool.images.read_image`)."""

    precision: str = "single"
    gray: bool = False
    max_pixels: int | None = None


@dataclass(frozen=True)
class WriteOptions:
    """How outputs are encoded (see :func:`convtool.images.write_image`)."""

    format: str | None = None
    depth: str | None = None
    range_mode: str | None = None
    compress_level: int = 1


@dataclass(frozen=True)
class Job:
    """One input file (or ``-``) and the output it becomes (or ``-``).

    ``root``: the output folder the output must stay inside (checked again just before
    writing, after its folders are created); None for a single named output file.
    """

    source: str
    dest: str
    root: str | None = None


@dataclass(frozen=True)
class JobResult:
    """What happened to one job: ``done``, ``skipped`` or ``failed`` (with the reason).

    ``fatal``: the failure would recur for every other job (the disk is full), so a batch
    stops at it as with ``fail_fast``.
    """

    job: Job
    status: str
    reason: str | None = None
    seconds: float = 0.0
    fatal: bool = False


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to run a job; picklable, so it crosses process pools."""

    chain: Chain
    read: ReadOptions = field(default_factory=ReadOptions)
    write: WriteOptions = field(default_factory=WriteOptions)
    workers: int = 1  # images filtered at once on this machine: each gets 1/workers of memory


# ------------------------------------------------------------------------------- planning


@dataclass
class Plan:
    """The jobs to run and what was left out before any work.

    ``skipped``: results with status ``skipped`` (hidden and non-image files, folders not
    descended into, outputs already there under ``skip_existing``). ``failed``: inputs that
    cannot be run at all (an unreadable folder, an extension that cannot be written without
    ``format``). ``single``: one input file to one output file (or ``-``): the CLI's
    one-file path, where :func:`process` raises instead of reporting.
    """

    jobs: list[Job]
    skipped: list[JobResult] = field(default_factory=list)
    failed: list[JobResult] = field(default_factory=list)
    single: bool = False


def plan(
    inputs: Iterable[str],
    output: str,
    *,
    recursive: bool = False,
    suffix: str = "",
    format: str | None = None,  # noqa: A002 - the name users know from the CLI
    skip_existing: bool = False,
) -> Plan:
    """Expand input files and folders into jobs writing under ``output``.

    One input file with ``output`` a file name (not an existing folder, no trailing ``/``)
    or ``-`` is a single job. Otherwise ``output`` names a folder: each file keeps its path
    relative to its input folder (a file named as an input goes to the top), with
    ``suffix`` before the extension and ``format`` choosing the extension. Inside folders,
    hidden files and folders, files without an image extension, symbolic links to folders
    and (unless ``recursive``) subfolders are skipped; named input files are skipped only
    for their extension. The output folder is never read as input. Raises
    :class:`UsageError` before any work when two inputs would map to one output, an output
    would overwrite an input or land outside the output folder, or ``output`` is unusable.
    """
    from .planning import make_plan

    return make_plan(
        inputs,
        output,
        recursive=recursive,
        suffix=suffix,
        format=format,
        skip_existing=skip_existing,
    )


def is_inside(dest: str, root_real: str) -> bool:
    """Whether ``dest``'s folder, with every symbolic link resolved, is within ``root_real``."""
    parent = os.path.realpath(os.path.dirname(dest) or ".")
    return parent == root_real or parent.startswith(root_real.rstrip(os.sep) + os.sep)


# ------------------------------------------------------------------------------ one job


def process(job: Job, settings: Settings) -> None:
    """Read, filter and write one job; raises :class:`ConvtoolError` on failure."""
    from . import images, limits

    if job.source != "-" and job.dest != "-" and images.same_file(job.source, job.dest):
        raise UsageError(
            "the output is the input file; choose another -o so the input is not overwritten",
            path=job.dest,
        )
    image = images.read_image(
        job.source,
        precision=settings.read.precision,
        gray=settings.read.gray,
        max_pixels=settings.read.max_pixels,
    )
    # refuse with a clear message now rather than be ended by the OOM killer halfway
    limits.check_memory(settings.chain, image, share=settings.workers)
    result = settings.chain.apply_to(image)
    del image  # its pixels need not be held through the write
    images.write_image(
        job.dest,
        result,
        format=settings.write.format,
        depth=settings.write.depth,
        range_mode=settings.write.range_mode,
        compress_level=settings.write.compress_level,
        inside=job.root,  # its folders are opened with no symbolic link followed
    )


def process_quietly(job: Job, settings: Settings) -> JobResult:
    """Run one job and report it as a :class:`JobResult` instead of raising.

    Any exception but an interruption becomes a failed result, so one bad file (or a bug
    that only one file meets) never ends a batch.
    """
    start = time.perf_counter()
    try:
        process(job, settings)
    except ConvtoolError as err:
        return _failed(job, str(err), start, fatal=_is_fatal(err))
    except MemoryError:
        return _failed(job, "out of memory", start)
    except Exception as err:  # noqa: BLE001 - reported per file; the batch goes on
        return _failed(job, f"internal error: {type(err).__name__}: {err}", start)
    return JobResult(job, DONE, None, time.perf_counter() - start)


def _failed(job: Job, message: str, start: float, *, fatal: bool = False) -> JobResult:
    """A failed result with a one-line reason.

    The reason drops a leading ``source:`` (the result names its job already); a message
    about another path (the output's) keeps that path.
    """
    message = " ".join(message.split())
    prefix = f"{job.source}: "
    reason = message[len(prefix) :] if message.startswith(prefix) else message
    return JobResult(job, FAILED, reason, time.perf_counter() - start, fatal)


def _fatal_write_reasons() -> tuple[str, ...]:
    from .atomic import write_error_reason

    return tuple(write_error_reason(OSError(e, "")) for e in _FATAL_WRITE_ERRNOS)


# A full disk or quota, or a read-only file system: every later write would fail the same
# way, so the batch stops. Not EACCES: permissions may differ from folder to folder.
_FATAL_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _is_fatal(err: ConvtoolError) -> bool:
    """A write error that every later write would meet too."""
    if getattr(err, "errno", None) in _FATAL_WRITE_ERRNOS:
        return True
    return isinstance(err, ImageWriteError) and any(r in str(err) for r in _fatal_write_reasons())


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
        from . import dask_runner

        dask_runner.require_dask()

    def stop(result: JobResult) -> bool:
        return result.fatal or (fail_fast and result.status == FAILED)

    return _run(jobs, settings, workers or cpu_count(), stop, dask_address)


def _run(jobs, settings, workers, stop, dask_address) -> Iterator[JobResult]:
    if not jobs:
        return
    roots = sorted({job.root for job in jobs if job.root is not None})
    for root in roots:
        _create_folder(root)
        remove_stale_temp_files(root)
    ordered = largest_first(jobs)
    with signals_raise():
        if dask_address is not None:
            from . import dask_runner

            yield from dask_runner.run_on_dask(ordered, settings, dask_address, stop)
            return  # tasks cancelled on a Dask cluster may still run: leave their temps
        try:
            if min(workers, len(jobs)) == 1:
                yield from _run_here(ordered, settings, stop)
            else:
                from .pool import run_in_pool

                count = min(workers, len(jobs))
                yield from run_in_pool(
                    ordered,
                    replace(with_threads(settings, max(1, cpu_count() // count)), workers=count),
                    count,
                    stop,
                )
        finally:
            for root in roots:
                remove_stale_temp_files(root)


def _create_folder(root: str) -> None:
    from .atomic import write_error_reason

    try:
        os.makedirs(root, exist_ok=True)
    except OSError as err:
        message = f"cannot create the output folder: {write_error_reason(err)}"
        raise ImageWriteError(message, path=root) from None


def remove_stale_temp_files(root: str) -> int:
    """Remove temporary files of dead convtool processes anywhere under ``root``; count them."""
    from . import atomic

    return atomic.remove_stale_temp_files_below(root)


def largest_first(jobs: list[Job]) -> list[Job]:
    """Jobs by decreasing input file size (a stable sort; stdin and missing files last)."""

    def size(job: Job) -> int:
        try:
            return os.stat(job.source).st_size if job.source != "-" else 0
        except OSError:
            return 0

    return sorted(jobs, key=size, reverse=True)


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def with_threads(settings: Settings, threads: int) -> Settings:
    """``settings`` with ``threads`` engine threads per image, unless the chain sets its own."""
    options = settings.chain.options
    if options.threads is not None:
        return settings
    chain = replace(settings.chain, options=replace(options, threads=threads))
    return replace(settings, chain=chain)


def _run_here(jobs: list[Job], settings: Settings, stop) -> Iterator[JobResult]:
    for job in jobs:
        result = process_quietly(job, settings)
        yield result
        if stop(result):
            return


sigterm_raises = signals_raise  # the name of earlier versions


# -------------------------------------------------------------------------------- summary


@dataclass
class Summary:
    """Results counted: ``not_run`` jobs never finished (stopped early or interrupted)."""

    done: list[JobResult]
    skipped: list[JobResult]
    failed: list[JobResult]
    not_run: int = 0

    @property
    def exit_code(self) -> int:
        """1 if any file failed, else 0."""
        return 1 if self.failed else 0


def summarize(results: Iterable[JobResult], plan: Plan | None = None) -> Summary:
    """Sort ``results`` (and the plan's skipped and failed inputs) into a :class:`Summary`."""
    results = list(results)
    everything = results + (plan.skipped + plan.failed if plan is not None else [])
    by_status = {
        status: [r for r in everything if r.status == status] for status in (DONE, SKIPPED, FAILED)
    }
    not_run = max(0, len(plan.jobs) - len(results)) if plan is not None else 0
    return Summary(by_status[DONE], by_status[SKIPPED], by_status[FAILED], not_run)

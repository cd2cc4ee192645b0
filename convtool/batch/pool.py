"""The local process pool that runs batch jobs, and what its worker processes do.

Workers are forked while this process runs a single thread (fast, and nothing is imported
again); otherwise they come from a fork server (or are spawned where there is none): the
engine runs thread pools, and forking a process that has threads can deadlock. A worker
ignores SIGINT (Ctrl-C reaches the whole process group; the parent decides what to do) and
turns SIGTERM, SIGHUP and the other terminating signals
(:data:`convtool.batch.interrupts.TERMINATING_SIGNALS`) into an
exception while a job runs, so the atomic writer removes its temporary file before the
process exits. A worker whose parent process disappears (SIGKILL) stops the same way
instead of waiting forever for work.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from convtool.batch.heap import keep_freed_memory
from convtool.batch.interrupts import TERMINATING_SIGNALS
from convtool.batch.jobs import Job, JobResult, Settings
from convtool.batch.worker import process_quietly
from convtool.errors import ConvtoolError

# Jobs handed to the pool ahead of the free workers: enough to keep them busy, few enough
# that --fail-fast and Ctrl-C have little to cancel and the largest-first order holds.
_AHEAD_PER_WORKER = 2
# After this many new pools in a row whose workers all died before finishing anything,
# the workers cannot run at all: stop instead of failing every job one by one.
_BARREN_POOLS = 3
DIED = "the worker process died while filtering it (killed, or out of memory)"
WORKERS_DIE = (
    "worker processes die before finishing any job; run with -j 1 to see why (a script "
    "using convtool.batch with several workers needs `if __name__ == '__main__':`)"
)
CANNOT_START = (
    "cannot start {workers} worker processes: {reason} (a limit on processes or memory?); "
    "run with fewer -j, or -j 1 to filter in this process"
)
# Seconds a worker gets to remove its temporary file after SIGTERM before it is killed.
_TERMINATE_GRACE = 5.0


def run_in_pool(
    jobs: list[Job], settings: Settings, workers: int, stop: Callable[[JobResult], bool]
) -> Iterator[JobResult]:
    """Run ``jobs`` in this order on ``workers`` processes; yield results as they finish.

    A few jobs are queued ahead of the free workers. Once ``stop(result)`` is true no more
    jobs start; those running finish and are yielded. If the iterator is closed or
    interrupted first, queued jobs are dropped and the workers are stopped (see
    :func:`terminate`).

    When a worker process dies (killed, out of memory) every job on the pool fails alike,
    so those are retried on a new pool one at a time: the one that kills its worker alone
    is reported as failed, the others run normally.
    """
    run = _PoolRun(jobs, settings, workers)
    finished = False
    try:
        while run.busy():
            run.schedule()
            for result in run.results(run.finished()):
                yield result
                run.stopping = run.stopping or stop(result)
        finished = True
    finally:
        if finished:
            run.pool.shutdown(wait=True)
        else:
            terminate(run.pool)


class _PoolRun:
    """The state of one :func:`run_in_pool`: what to start, the pool, and its suspects.

    Three concerns, one method each: :meth:`schedule` (what may start now),
    :meth:`finished` (waiting, and replacing a pool whose worker died) and :meth:`results`
    (the results, with the jobs of a broken pool set aside as suspects to run alone).
    """

    def __init__(self, jobs: list[Job], settings: Settings, workers: int) -> None:
        self.queue: deque[Job] = deque(jobs)
        self.suspects: deque[Job] = deque()  # on a pool that broke: each to run alone
        self.running: dict[Any, Job] = {}  # future -> job
        self.solo: Job | None = None  # the suspect running alone, if any
        self.settings, self.workers = settings, workers
        self.stopping = False  # no more jobs start (``stop`` said so)
        self.barren = 0  # pools in a row whose workers all died before finishing anything
        self.pool = _new_pool(workers)

    def busy(self) -> bool:
        """Whether anything runs, or is still to start."""
        return bool(self.running) or (not self.stopping and bool(self.queue or self.suspects))

    def schedule(self) -> None:
        """Start what may start: a suspect alone on an idle pool, else jobs ahead of the workers."""
        if self.stopping:
            return
        if self.suspects:  # one at a time, alone on the pool, to find which one kills
            if not self.running:
                self.solo = self.suspects.popleft()
                if not self._start(self.solo):
                    self.suspects.appendleft(self.solo)
                    self.solo = None
            return
        while self.queue and len(self.running) < self.workers * _AHEAD_PER_WORKER:
            job = self.queue.popleft()
            if not self._start(job):
                self.queue.appendleft(job)  # it never started: it goes first on the next pool
                return

    def _start(self, job: Job) -> bool:
        """Submit ``job``; False if the pool broke since the last wait (a worker died after
        its job, or while the others run): the job did not start. With nothing left running
        to show the break, the pool is replaced here; else :meth:`finished` sees it."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            future = _submit(self.pool, self.workers, job, self.settings)
        except BrokenProcessPool:
            if not self.running:
                self._replace_pool(barren=False)  # it ran jobs before it broke
            return False
        self.running[future] = job
        return True

    def finished(self) -> set:
        """The futures that finish next; if the pool broke, all of its futures (pool replaced)."""
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(self.running, return_when=FIRST_COMPLETED)
        if any(_broke(future) for future in done):
            done = set(done) | wait(self.running).done  # the others fail the same way soon
            self._replace_pool(all(_broke(future) for future in done))
        return done

    def _replace_pool(self, barren: bool) -> None:
        """A new pool for a broken one; after :data:`_BARREN_POOLS` barren ones, give up."""
        self.barren = self.barren + 1 if barren else 0
        if self.barren >= _BARREN_POOLS:
            raise ConvtoolError(WORKERS_DIE)
        self.pool.shutdown(wait=False)
        self.pool = _new_pool(self.workers)

    def results(self, done: set) -> Iterator[JobResult]:
        """The results of ``done``. A job whose pool broke becomes a suspect, to run again
        alone; a suspect that broke its pool alone has killed its worker: it failed."""
        for future in done:
            job = self.running.pop(future)
            if not _broke(future):
                yield future.result()
            elif job is self.solo:
                yield JobResult(job, "failed", DIED)
            else:
                self.suspects.append(job)


def _submit(pool, workers: int, job: Job, settings: Settings):
    """``pool.submit`` of one job; a worker process that cannot be started is one error line.

    The pool starts its processes on the first submissions: that is where ``fork`` fails
    when a process limit (``ulimit -u``) or memory is exhausted.
    """
    try:
        return pool.submit(_work, job, settings)
    except OSError as err:
        # The workers that did start have run nothing, so they hold no temporary file:
        # killed, not sent SIGTERM, which one still starting would meet with the parent's
        # handler and answer with a traceback.
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                process.kill()
                process.join(1.0)
        reason = (err.strerror or type(err).__name__).lower()
        raise ConvtoolError(CANNOT_START.format(workers=workers, reason=reason)) from None


def _broke(future) -> bool:
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(future.exception(), BrokenProcessPool)


def _new_pool(workers: int):
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    if sys.platform == "linux" and threading.active_count() == 1:
        # Fast, and the caller's script is not imported again in each worker; safe only
        # while this process runs no other thread (forking one that holds a lock deadlocks).
        context: multiprocessing.context.BaseContext = multiprocessing.get_context("fork")
    elif "forkserver" in methods:
        # Workers forked from a clean single-threaded server (the CLI draws its progress
        # bar from a thread; the engine runs thread pools).
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(
            ["convtool.batch.pool", "convtool.pipeline", "convtool.images"]
        )
    else:
        context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)


def terminate(pool) -> None:
    """Stop a pool now: drop queued jobs, SIGTERM the workers, kill those that linger."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    deadline = time.monotonic() + _TERMINATE_GRACE
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)
    _forget_wakeup(pool)


def _forget_wakeup(pool) -> None:
    """Keep interpreter exit quiet after a pool was stopped this way.

    At exit concurrent.futures wakes every executor's manager thread through a pipe; once the
    workers were killed the manager closes that pipe, and CPython 3.11 can still write to it
    (a race fixed in later releases), printing an OSError traceback on stderr. Wait for the
    manager thread to end, then drop its entry so nothing writes to the closed pipe.
    """
    thread = getattr(pool, "_executor_manager_thread", None)
    if thread is None:
        return
    with contextlib.suppress(Exception):
        thread.join(_TERMINATE_GRACE)
        if not thread.is_alive():
            from concurrent.futures import process as futures_process

            futures_process._threads_wakeups.pop(thread, None)


# ----------------------------------------------------------------------------- worker side


class _Terminated(BaseException):
    """Raised in a worker by a terminating signal; not an Exception, so no handler swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_in_job = False


def _init_worker() -> None:
    keep_freed_memory()  # a worker filters image after image: reuse their memory
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in TERMINATING_SIGNALS:
        if signal.getsignal(signum) != signal.SIG_IGN:  # nohup's SIGHUP stays ignored
            signal.signal(signum, _on_signal)
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch_parent() -> None:
        # The sentinel becomes ready when the process that started the pool dies (even by
        # SIGKILL, and also under a fork server, which outlives it while workers live);
        # orphaned workers would otherwise wait for work forever.
        multiprocessing.connection.wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=watch_parent, name="convtool-watch-parent", daemon=True)
    with contextlib.suppress(RuntimeError):  # no thread allowed (a process limit): unwatched
        watcher.start()


def _on_signal(signum, frame) -> None:
    # A second signal (the parent's SIGTERM after a SIGHUP to the group) must not interrupt
    # the clean-up. A Python handler that does nothing, not SIG_IGN: a signal already
    # pending when the handler changes would make Python print "Signal N ignored due to
    # race condition" on stderr.
    for other in TERMINATING_SIGNALS:
        signal.signal(other, _ignore)
    if _in_job:
        raise _Terminated(signum)
    os._exit(128 + signum)


def _ignore(signum, frame) -> None:
    """A terminating signal after the first: the worker is already stopping."""


def _work(job: Job, settings: Settings) -> JobResult:
    global _in_job
    _in_job = True
    try:
        return process_quietly(job, settings)
    except _Terminated as stopped:
        os._exit(128 + stopped.signum)
    finally:
        _in_job = False

"""Running a plan: bands of output rows on a thread pool, each thread reusing its arrays.

A caller who wants to follow a long run (a progress bar) sets a band observer with
:func:`observe_bands`; it is told ``(bands done, bands in all)`` after each band, on the
thread that called the engine. The engine itself never draws anything.

The bands of a call form a fixed grid: band ``k`` holds output rows ``k*band`` to
``(k+1)*band - 1``, whatever part of the output is asked for. Each band's result depends
only on the band (its padded input rows and its size), so computing any run of whole
bands (:func:`run_bands`) gives the same bytes as those rows of the whole call: that is
what streaming and Dask chunks rely on (see :mod:`convtool.engine.rows`).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import numpy as np

from convtool._system import cpu_count
from convtool.engine import bands, methods, native
from convtool.engine.plan import Plan

T = TypeVar("T")

BandObserver = Callable[[int, int], None]
_observer: contextvars.ContextVar[BandObserver | None] = contextvars.ContextVar(
    "convtool_band_observer", default=None
)


@contextlib.contextmanager
def observe_bands(observer: BandObserver | None) -> Iterator[None]:
    """Within the block, call ``observer(done, total)`` as each engine call's bands finish."""
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)


def run(
    plan: Plan,
    x: np.ndarray,
    method: str,
    threads: int | None,
    rounded: bool = False,
    target: np.ndarray | None = None,
) -> np.ndarray:
    """Compute all bands of output rows, on a thread pool when there are several.

    ``method`` (direct, separable, fft) and the plan's dtype pick the band method from
    :data:`convtool.engine.methods.METHOD_TABLE`. ``rounded``: a float plan's bands are
    rounded to uint8 as each is done (see :func:`run_bands`). ``target``: the array of
    the output's shape and dtype to write into, instead of a new one.
    """
    workers = threads or cpu_count()
    stop = threading.Event()  # set when the run is abandoned: compiled bands stop early
    # the image read as it is and each band written straight to the output: the compiled
    # methods then take taller bands (methods.IN_PLACE_BANDS)
    in_place = x.flags.aligned and methods.reads_straight(plan, method, x.dtype, rounded)
    band_method = methods.prepare(
        plan, method, x.shape[0], workers, stop, in_place, preallocated=target is not None
    )
    return run_bands(plan, x, band_method, 0, plan.rows.size, workers, stop, rounded, target)


def run_bands(
    plan: Plan,
    x,
    band_method,
    j0: int,
    j1: int,
    workers: int,
    stop: threading.Event,
    rounded: bool = False,
    target: np.ndarray | None = None,
) -> np.ndarray:
    """Output rows ``j0..j1-1`` (``j0`` on the band grid, ``band_method.band``; ``j1`` too,
    or the last row).

    ``x`` is the image (channels, H, W), or anything indexed like it that holds the input
    rows these bands read (:class:`convtool.engine.rows.Rows`). ``stop`` is set on return.
    ``rounded`` (a float plan): the result is uint8, each band computed in the plan's
    dtype in a scratch array of the thread's, then rounded half to even and clipped to
    0..255 while it is in cache, so no float image is ever held.
    """
    channels = x.shape[0]
    rounded = rounded and plan.dtype != np.uint8
    shape = (channels, j1 - j0, plan.cols.size)
    dtype = np.dtype(np.uint8) if rounded else plan.dtype
    if target is not None:
        assert target.shape == shape and target.dtype == dtype, "the caller checked the target"
        out = target
    else:
        out = np.empty(shape, dtype=dtype)
    band = band_method.band
    starts = range(j0, j1, band)
    workers = min(workers, len(starts))
    if getattr(_band_thread, "inside", False):
        workers = 1  # an engine call from a band thread: waiting on the pool could deadlock
    observer = _observer.get()
    converts = getattr(band_method, "converts", False)  # (rounds its own outputs)
    bound = None if rounded and not converts else _bound_calls(band_method, x, starts, j0, j1, out)
    if bound is not None:
        calls, counts = bound
        _run_items(_call, calls, workers, stop, observer, counts)
        return out
    local = threading.local()  # each thread filters its bands in its own arrays

    def work(start: int) -> None:
        band_filter = getattr(local, "band_filter", None)
        if band_filter is None:
            band_filter = local.band_filter = bands.BandFilter(plan, band_method)
        end = min(start + band, plan.rows.size)
        target = out[:, start - j0 : end - j0]
        # errstate is per thread: overflow to inf is a result here (clipped on writing),
        # not a warning for every band to print on stderr
        with np.errstate(over="ignore", invalid="ignore"):
            if not rounded:
                band_filter(x, start, end, target)
                return
            scratch = getattr(local, "scratch", None)
            if scratch is None or scratch.shape[1] != end - start:
                scratch = local.scratch = np.empty(target.shape, dtype=plan.dtype)
            band_filter(x, start, end, scratch)
            np.clip(np.rint(scratch, out=scratch), 0, 255, out=scratch)
            np.copyto(target, scratch, casting="unsafe")

    _run_items(work, starts, workers, stop, observer)
    return out


def _bound_calls(
    band_method, x, starts: range, j0: int, j1: int, out: np.ndarray
) -> tuple[list, np.ndarray] | None:
    """Every compiled call of these bands, bound to its arguments, and the counts they are
    done in (see :func:`_on_pool`), when the band method computes its bands straight from the image (the
    compiled methods, on an image of the plan's dtype); else None.

    Binding them all at once, before the first runs, leaves the band threads nothing to do
    in Python but start the next call: done band by band, the ~30 us of Python between two
    bands ran with its code and data evicted by the band before (a 2048^2 Sobel's 256-row
    band moves 4 MiB through a 2 MiB cache). Each call counts itself done, without the GIL,
    in ``counts[0]``.
    """
    image_calls = getattr(band_method, "image_calls", None)
    if image_calls is None:
        return None
    counts = np.zeros(3, dtype=np.int64)
    calls: list = []
    for start in starts:
        end = min(start + band_method.band, j1)
        bound = image_calls(x, start, end, out[:, start - j0 : end - j0], counts)
        if bound is None:
            return None
        calls.extend(bound)
    return calls, counts


# How long the calling thread spins for the other threads' last calls before it sleeps
# until they wake it: about one band's time (a call is at most CALL_WORK multiply-adds).
AWAIT_SECONDS = 0.002


def _call(call: Callable[[], None]) -> None:
    call()


def _run_items(
    work,
    items: Sequence,
    workers: int,
    stop: threading.Event,
    observer,
    counts: np.ndarray | None = None,
) -> None:
    """``work(item)`` for every item, on the pool when there are several workers (see
    :func:`_on_pool` for ``counts``); the observer told after each one; ``stop`` set
    on return."""
    workers = min(workers, len(items))
    if workers <= 1:
        try:
            for done, item in enumerate(items, 1):
                if stop.is_set():
                    break
                work(item)
                if observer is not None:
                    observer(done, len(items))
        finally:
            stop.set()
        return
    _on_pool(work, items, workers, stop, observer, counts)


def _on_pool(
    work,
    starts: Sequence,
    workers: int,
    stop: threading.Event,
    observer,
    counts: np.ndarray | None = None,
) -> None:
    """``work(start)`` for every band start: on the calling thread and ``workers - 1`` threads
    of the kept pool, each taking the next band not yet taken.

    The caller works too, rather than waiting for ``workers`` pool threads: its first band
    starts at once instead of after a pool thread wakes (~0.15 ms of a 2.6 ms float32 2048^2
    Sobel on 2 threads, whose first band began 0.5 ms into the call). A band that fails stops
    the others from taking more; the observer is told, on the calling thread, after each band
    the caller finishes and at the end, how many are done.

    ``counts``: the int64 array of 3 in which each band counts itself done (``counts[0]``,
    by the compiled calls: :func:`_bound_calls`) and the pool's threads their entering and
    leaving the work (``counts[1]``, ``counts[2]``). The caller, once it finds no band left,
    then spins without the GIL until every band is done and no thread is at work
    (``native.await_count``, for at most ``AWAIT_SECONDS``), and returns without waiting to
    be woken. Woken from a lock by the thread of the last band, it took 0.1-0.3 ms more on
    a 1.3 ms call (float32 2048^2 Sobel, 2 threads), on the 2-CPU VM this was measured on:
    a CPU asleep for longer than the guest polls for work is slow to wake there.
    """
    pending = iter(starts)
    lock = threading.Lock()
    done = [0]

    def take() -> int | None:
        with lock:
            return None if stop.is_set() else next(pending, None)

    def finished() -> int:
        with lock:
            done[0] += 1
            return done[0]

    def helper() -> None:
        try:
            while (start := take()) is not None:
                work(start)
                finished()
        except BaseException:
            stop.set()  # the others take no more bands; the caller raises this one
            raise

    if counts is not None:
        helper = _counted(helper, counts)
    tasks: list[Task] = []
    counted = False
    try:
        _submit(helper, workers - 1, tasks)
        told = 0
        while (start := take()) is not None:
            work(start)
            count = finished()
            while observer is not None and told < count:
                told += 1
                observer(told, len(starts))
        # (every call counted done: the threads' last steps are their own, on no array
        # of this call's, and nothing is left to raise)
        counted = counts is not None and _all_counted(counts, len(starts), stop)
        if not counted:
            for task in tasks:
                task.result()
        while observer is not None and told < len(starts):
            told += 1
            observer(told, len(starts))
    finally:
        # On Ctrl-C (or any error) no band is taken any more, the running compiled ones stop
        # after their current call, and this waits for them: once it returns, no thread
        # touches this call's arrays.
        stop.set()
        if not counted:
            for task in tasks:
                task.wait()


def _submit(helper: Callable[[], None], helpers: int, tasks: list[Task]) -> None:
    """``helper`` on ``helpers`` threads of the kept pool, their tasks added to ``tasks``."""
    pool = _pool(helpers)
    try:
        for _ in range(helpers):
            tasks.append(pool.submit(helper))
    except RuntimeError:
        # No thread could be started (a limit on processes, `ulimit -u`): the caller
        # computes the bands no thread takes, as with one thread; the pool is not kept.
        _drop_pool(helpers, pool)


def _counted(helper: Callable[[], None], counts: np.ndarray) -> Callable[[], None]:
    """``helper`` counting, in ``counts[1]`` and ``counts[2]``, that a thread entered the
    work and left it (under the GIL: the pool's threads alone write these two)."""

    def counting() -> None:
        counts[1] += 1
        try:
            helper()
        finally:
            counts[2] += 1

    return counting


def _all_counted(counts: np.ndarray, total: int, stop: threading.Event) -> bool:
    """Whether all ``total`` calls were counted done, no thread still at work, within
    ``AWAIT_SECONDS`` of spinning (not once the run was stopped: some never will be)."""
    return not stop.is_set() and native.await_count(counts, total, AWAIT_SECONDS)


def share_work(work: Callable[[T], None], items: Sequence[T], workers: int) -> None:
    """``work(item)`` for every item, on the calling thread and ``workers - 1`` of the kept
    band threads, as an engine call's bands (the first error stops the rest and is raised
    here). For the engine's peers with work of their own to spread (template matching's
    tiles): a new thread pool per call cost ~0.3 ms of a 16 ms match, and more on a busy
    machine, to start its threads."""
    workers = min(workers, len(items))
    if workers <= 1 or getattr(_band_thread, "inside", False):
        for item in items:
            work(item)
        return
    _on_pool(work, items, workers, threading.Event(), None)


# The band threads are kept between calls: starting two threads and joining them cost
# ~0.5 ms of CPU time and up to several ms of waiting on a loaded machine, more than a
# 1024x1024 3x3 filter itself. One pool per worker count, per process (a forked child
# starts its own); a band thread that calls the engine runs that call's bands itself.
BAND_THREAD_PREFIX = "convtool-band"
"""The names of the kept pools' threads (the CLI's quick exit knows them as idle ones)."""
_pools: dict[int, _BandThreads] = {}
_pools_pid = os.getpid()
_pools_lock = threading.Lock()
_band_thread = threading.local()


class Task:
    """One piece of work handed to a band thread: :meth:`result` waits for it to end and
    returns what it returned or raises what it raised, as a ``Future`` would."""

    __slots__ = ("_error", "_finished", "_result", "_work")

    def __init__(self, work: Callable[[], object]) -> None:
        self._work: Callable[[], object] | None = work
        self._error: BaseException | None = None
        self._result: object = None
        self._finished = threading.Lock()
        self._finished.acquire()  # released once the work has ended

    def run(self) -> None:
        assert self._work is not None, "a task runs once"
        try:
            self._result = self._work()
        except BaseException as error:  # noqa: BLE001 - raised again by result()
            self._error = error
        finally:
            self._work = None  # (what it held is freed with it)
            self._finished.release()

    def wait(self) -> None:
        with self._finished:
            pass

    def result(self):
        self.wait()
        if self._error is not None:
            raise self._error
        return self._result


class _BandThreads:
    """``count`` threads, started at the first :meth:`submit`, taking work from one queue.

    Not a ``ThreadPoolExecutor``: its ``submit`` (a Future with its condition, the work
    item, the idle-thread semaphore) took ~35 us on the calling thread of a 1.2 ms float32
    2048^2 Sobel on 2 threads, before its first band, with its code cold after each image;
    a ``SimpleQueue`` and one lock per piece of work do what the engine needs. Daemon
    threads: one waiting on the queue keeps no interpreter from exiting.
    """

    def __init__(self, count: int, band_threads: bool = True, name: str = "") -> None:
        self.count, self.name = count, name or BAND_THREAD_PREFIX
        self.band_threads = band_threads  # (an engine call on a band thread runs alone)
        self.queue: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def submit(self, work: Callable[[], object]) -> Task:
        """Hand ``work`` to the next free thread; RuntimeError when no thread could start."""
        if len(self.threads) < self.count:
            self._start()
        task = Task(work)
        self.queue.put(task)
        return task

    def _start(self) -> None:
        with self.lock:
            while len(self.threads) < self.count:
                thread = threading.Thread(
                    target=self._serve,
                    name=f"{self.name}_{len(self.threads)}",
                    daemon=True,
                )
                thread.start()
                self.threads.append(thread)

    def _serve(self) -> None:
        _band_thread.inside = self.band_threads
        while (task := self.queue.get()) is not None:
            task.run()

    def shutdown(self) -> None:
        """The threads end once they have taken what was queued before."""
        for _ in self.threads:
            self.queue.put(None)


def _forget_if_forked() -> None:
    """In a forked child the parent's threads do not exist: start afresh (under the lock)."""
    global _pools_pid
    if _pools_pid != os.getpid():
        _pools.clear()
        _lanes.clear()
        _pools_pid = os.getpid()


def _pool(workers: int) -> _BandThreads:
    with _pools_lock:
        _forget_if_forked()
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = _BandThreads(workers)
        return pool


def in_background(work: Callable[[], T], lane: str) -> Task:
    """``work()`` on the kept thread of ``lane``, beside the band threads (a stream reads
    ahead in lane "read" and filters the next band in lane "bands"); ``.result()`` waits
    for it and gives what it returned or raises what it raised. Work in one lane runs in
    turn; work in a lane may wait for work in another, never for its own. Engine calls
    from a lane's thread use the band threads. RuntimeError when no thread could start."""
    with _pools_lock:
        _forget_if_forked()
        pool = _lanes.get(lane)
        if pool is None:
            pool = _lanes[lane] = _BandThreads(
                1, band_threads=False, name=f"{BAND_THREAD_PREFIX}-{lane}"
            )
    return pool.submit(work)


_lanes: dict[str, _BandThreads] = {}
_END = object()


def made_ahead(items: Iterator[T], lane: str) -> Iterator[T]:
    """The items of ``items``, each next one made on the thread of ``lane`` while the
    caller uses the one before (a stream filters its next band while the last is
    converted and written). Closing this closes ``items``, once its thread is done."""
    source = iter(items)

    def following():
        return next(source, _END)

    task = in_background(following, lane)
    try:
        while (item := task.result()) is not _END:
            task = in_background(following, lane)
            yield item
    finally:
        task.wait()  # (the item under way, if any, is dropped)
        close = getattr(source, "close", None)
        if close is not None:
            close()


def _drop_pool(workers: int, pool: _BandThreads) -> None:
    with _pools_lock:
        if _pools.get(workers) is pool:
            del _pools[workers]
    pool.shutdown()

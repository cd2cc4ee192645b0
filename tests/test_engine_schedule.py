"""Bands on threads: the calling thread works beside the kept pool's threads (schedule._on_pool).

Whatever thread takes a band, the result is the one-thread result; the observer hears every
band, in order, on the calling thread; a band that fails fails the call; and a machine that
starts no thread still gets its result.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from convtool.engine import bands, correlate, observe_bands, schedule

KERNEL = np.outer([1.0, 2, 1], [-1.0, 0, 1])


@pytest.fixture
def image():
    return np.random.default_rng(3).uniform(-1, 1, (3, 300, 170)).astype(np.float32)


@pytest.fixture
def small_bands(monkeypatch):
    from convtool.engine import plan

    monkeypatch.setattr(plan, "_BAND_ELEMENTS", 3000)  # many bands for a small image


def test_threads_give_the_one_thread_bytes(image, small_bands, implementation):
    alone = correlate(image, KERNEL, threads=1)
    for threads in (2, 3, 8):
        np.testing.assert_array_equal(correlate(image, KERNEL, threads=threads), alone)


def test_the_observer_hears_every_band_in_order_on_the_calling_thread(image, small_bands):
    heard = []
    caller = threading.get_ident()

    def observer(done, total):
        heard.append((done, total, threading.get_ident() == caller))

    with observe_bands(observer):
        correlate(image, KERNEL, threads=2)
    total = heard[-1][1]
    assert total > 4
    assert heard == [(done, total, True) for done in range(1, total + 1)]


def test_a_failing_band_fails_the_call(image, small_bands, monkeypatch):
    call = bands.BandFilter.__call__
    taken = []

    def fails_on_the_third(self, x, j0, j1, out):
        taken.append(j0)
        if len(taken) == 3:
            raise ValueError("band failed")
        call(self, x, j0, j1, out)

    monkeypatch.setattr(bands.BandFilter, "__call__", fails_on_the_third)
    with pytest.raises(ValueError, match="band failed"):
        correlate(image, KERNEL, threads=2)
    # of the 16 bands, none is taken once one has failed (one more may be under way then)
    assert len(taken) <= 5


def test_no_thread_started_still_gives_the_result(image, small_bands, monkeypatch):
    class Refusing:
        def submit(self, *args, **kwargs):
            raise RuntimeError("can't start new thread")

        def shutdown(self, **kwargs):
            pass

    alone = correlate(image, KERNEL, threads=1)
    monkeypatch.setattr(schedule, "_pool", lambda workers: Refusing())
    np.testing.assert_array_equal(correlate(image, KERNEL, threads=2), alone)


def test_shared_work_runs_every_item_once_on_the_kept_threads():
    done: list[int] = []
    names: set[str] = set()
    lock = threading.Lock()

    def work(item: int) -> None:
        with lock:
            done.append(item)
            names.add(threading.current_thread().name)

    schedule.share_work(work, list(range(40)), workers=2)
    assert sorted(done) == list(range(40))
    # the caller and the engine's kept band threads, no thread of a pool of its own
    others = names - {threading.current_thread().name}
    assert all(name.startswith(schedule.BAND_THREAD_PREFIX) for name in others)


def test_shared_work_raises_the_first_failure_and_takes_no_more_items():
    taken: list[int] = []

    def work(item: int) -> None:
        taken.append(item)
        if item == 3:
            raise ValueError("tile 3 failed")

    with pytest.raises(ValueError, match="tile 3"):
        schedule.share_work(work, list(range(1000)), workers=2)
    assert len(taken) < 1000

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


def fail_the_third_band(patch) -> list:
    """The third band to start raises, whichever way bands run: gathered into a band buffer
    (the numpy engine) or as compiled calls bound beforehand (schedule._call); the list
    returned grows by one per band started."""
    taken: list = []

    def failing(run):
        def counted(*args):
            taken.append(1)
            if len(taken) == 3:
                raise ValueError("band failed")
            return run(*args)

        return counted

    patch.setattr(bands.BandFilter, "__call__", failing(bands.BandFilter.__call__))
    patch.setattr(schedule, "_call", failing(schedule._call))
    return taken


@pytest.fixture
def third_band_fails(monkeypatch):
    return fail_the_third_band(monkeypatch)


def test_a_failing_band_fails_the_call(image, small_bands, third_band_fails, implementation):
    with pytest.raises(ValueError, match="band failed"):
        correlate(image, KERNEL, threads=2)
    # of the 16 bands, none is taken once one has failed (one more may be under way then)
    assert len(third_band_fails) <= 5


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


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])  # bands read in place; gathered
def test_a_call_after_an_abandoned_one_computes_every_band(
    image, small_bands, implementation, dtype
):
    """The band method prepared for a call is kept for the next call alike, with a stop of
    its own: the stop of a run abandoned half-way leaves nothing undone in the next."""
    image = (image * 100 + 100).astype(dtype)
    alone = correlate(image, KERNEL, threads=1)
    with pytest.MonkeyPatch.context() as patch:
        fail_the_third_band(patch)
        with pytest.raises(ValueError, match="band failed"):
            correlate(image, KERNEL, threads=2)
    np.testing.assert_array_equal(correlate(image, KERNEL, threads=2), alone)


def test_an_engine_call_from_a_background_lane_still_runs_on_the_band_threads(
    image, small_bands, monkeypatch
):
    """A stream filters its next band on a lane's thread (schedule.in_background); that
    call's bands still go to the band threads, not all to the lane's own thread."""
    names = set()
    run = schedule._call

    def recorded(call):
        names.add(threading.current_thread().name)
        run(call)

    monkeypatch.setattr(schedule, "_call", recorded)
    lane = schedule.in_background(lambda: correlate(image, KERNEL, threads=2), "test")
    np.testing.assert_array_equal(lane.result(), correlate(image, KERNEL, threads=1))
    if names:  # (the compiled calls; the numpy engine's bands are not bound calls)
        assert len(names) == 2 and any(
            n.startswith(schedule.BAND_THREAD_PREFIX + "_") for n in names
        )


def test_items_made_ahead_come_in_order_and_an_error_comes_where_it_was_raised():
    def items():
        yield from range(5)
        raise ValueError("the sixth")

    got = []
    with pytest.raises(ValueError, match="the sixth"):
        for item in schedule.made_ahead(items(), "test"):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]

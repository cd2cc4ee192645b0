"""The engine computed a range of rows at a time gives the bytes of the whole call.

That is the property streaming and Dask chunks stand on (convtool/engine/rows.py): a call is
planned for the whole image and run in whole bands of its grid, from just the input rows
those bands read. Checked for every method, padding, stride and dilation, kernels odd,
even, non-square and taller than a band, with bands made small so that band edges fall in
the middle of kernels.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from convtool.engine import convolve, correlate
from convtool.engine import plan as engine_plan
from convtool.engine.rows import Rows, plan_rows, row_ranges
from convtool.errors import UsageError
from convtool.kernels import get_kernel

PADDINGS = ["zero", "constant", "edge", "reflect", "symmetric", "wrap", "valid", "full"]


def kernel_cases(rng):
    """Kernels for every method: separable (and box sums), direct, FFT, and odd shapes."""
    return {
        "gaussian 5x5 (separable)": get_kernel("gaussian:sigma=1"),
        "random 4x6 (even, direct)": rng.uniform(-1, 1, (4, 6)),
        "random 3x9 (non-square)": rng.uniform(-1, 1, (3, 9)),
        "box 41x1 (taller than a band)": np.ones((41, 1)) / 41,
        "random 15x15 (fft)": rng.uniform(-1, 1, (15, 15)),
    }


@pytest.fixture
def small_bands(monkeypatch):
    """Engine bands of a few rows, so a piece's edge falls inside the kernel."""
    monkeypatch.setattr(engine_plan, "_BAND_ELEMENTS", 300)
    monkeypatch.setattr(engine_plan, "_BOX_MIN_TAPS", 3)  # box sums (running, doubling) too
    monkeypatch.setattr(engine_plan, "_RUNNING_MIN_WIDTH", 8)


def pieces(size: int, rng) -> list[tuple[int, int]]:
    """Row ranges: the whole, single rows at both ends, and random cuts."""
    cuts = sorted({0, size, *rng.integers(0, size, 4).tolist()})
    return [(0, size), (0, 1), (size - 1, size), *zip(cuts, cuts[1:], strict=False)]


def run_in_pieces(call, x, start: int, stop: int, threads: int | None = None) -> np.ndarray:
    rows = call.input_rows(start, stop)
    return call.run(Rows(x[:, rows], rows, x.shape[1]), start, stop, threads)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(("stride", "dilation"), [(1, 1), (2, 1), (1, 2), (3, 2)])
def test_any_range_of_rows_is_the_whole_call_byte_for_byte(
    small_bands, rng, padding, stride, dilation
):
    x = rng.uniform(-100, 100, (2, 53, 37)).astype(np.float32)
    several = 0  # calls whose output has more than one band
    for name, kernel in kernel_cases(rng).items():
        options = {"padding": padding, "stride": stride, "dilation": dilation, "cval": 2.5}
        if padding != "constant":
            options["cval"] = 0.0
        try:
            whole = convolve(x, kernel, **options)
        except UsageError:  # valid padding with a kernel larger than the image
            continue
        call = plan_rows(x.shape, kernel, **options)
        several += call.band < whole.shape[1]
        for start, stop in pieces(whole.shape[1], rng):
            part = run_in_pieces(call, x, start, stop)
            assert part.dtype == whole.dtype
            assert part.tobytes() == whole[:, start:stop].tobytes(), (name, start, stop)
    assert several >= 3  # band edges were crossed


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
def test_each_method_is_band_exact_in_double_precision_and_when_correlating(
    small_bands, rng, method
):
    x = rng.uniform(-1, 1, (1, 60, 45))  # float64: running sums drift if started elsewhere
    kernel = get_kernel("box:31") if method == "separable" else rng.uniform(-1, 1, (7, 5))
    whole = correlate(x, kernel, method=method, padding="symmetric")
    call = plan_rows(x.shape, kernel, correlate=True, method=method, padding="symmetric",
                     dtype=np.float64)  # fmt: skip
    assert call.method == method
    for start, stop in pieces(60, rng):
        assert np.array_equal(run_in_pieces(call, x, start, stop), whole[:, start:stop])


def test_the_band_grid_is_the_plans_whatever_threads_a_piece_runs_on(small_bands, rng):
    x = rng.uniform(0, 255, (3, 80, 31)).astype(np.float32)
    kernel = rng.uniform(-1, 1, (6, 6))
    whole = convolve(x, kernel, threads=2)
    call = plan_rows(x.shape, kernel, threads=2)
    for threads in (1, 2, 3):
        assert np.array_equal(run_in_pieces(call, x, 17, 61, threads), whole[:, 17:61])


def test_a_piece_needs_only_the_rows_its_bands_read(small_bands, rng):
    x = rng.uniform(0, 1, (1, 100, 20)).astype(np.float32)
    call = plan_rows(x.shape, np.ones((5, 3)), padding="reflect")
    first, last = call.covering(40, 41)
    assert first <= 40 < last <= first + call.band
    rows = call.input_rows(40, 41)
    assert rows.tolist() == list(range(first - 2, last + 2))  # the kernel's two rows each side
    with pytest.raises(IndexError, match="not held"):  # one row short is an error, not a guess
        Rows(x[:, rows[1:]], rows[1:], 100)[:, rows]


def test_wrap_reads_the_far_border_and_zero_padding_reads_nothing_there(small_bands):
    call = plan_rows((1, 500, 10), np.ones((7, 1)), padding="wrap")
    assert call.band < 100
    assert row_ranges(call.input_rows(0, 1))[-1] == (497, 500)  # rows -3..-1: 497..499
    call = plan_rows((1, 500, 10), np.ones((7, 1)), padding="zero")
    assert row_ranges(call.input_rows(0, 1)) == [(0, call.band + 3)]


def test_whole_images_and_pieces_share_one_path(rng):
    x = rng.uniform(0, 1, (2, 30, 30)).astype(np.float32)
    for kernel in kernel_cases(rng).values():
        call = plan_rows(x.shape, kernel)
        assert np.array_equal(call.run(x, 0, 30), convolve(x, kernel))


def test_row_ranges_and_bad_pieces():
    assert row_ranges(np.array([0, 1, 2, 5, 6, 9])) == [(0, 3), (5, 7), (9, 10)]
    assert row_ranges(np.array([], dtype=int)) == []
    call = plan_rows((1, 10, 10), np.ones((3, 3)))
    with pytest.raises(UsageError, match="outside"):
        call.covering(5, 11)
    with pytest.raises(UsageError, match=r"\(C, H, W\)"):
        plan_rows((10, 10), np.ones((3, 3)))


def test_plain_sub_images_are_not_enough(small_bands, rng):
    """Why pieces are planned as the whole: a sub-image filtered on its own has bands that
    start elsewhere, and the Toeplitz product's blocks (or an FFT) round differently."""
    x = rng.uniform(0, 255, (1, 400, 64)).astype(np.float32)
    kernel = rng.uniform(0, 1, (15, 15))  # the FFT: every output reads its whole band
    whole = convolve(x, kernel, method="fft")
    differs = []
    for start in itertools.islice(range(101, 160, 7), 6):
        sub = convolve(x[:, start - 7 : start + 57], kernel, method="fft")[:, 7:57]
        differs.append(not np.array_equal(sub, whole[:, start : start + 50]))
    assert any(differs)
    call = plan_rows(x.shape, kernel, method="fft")
    assert np.array_equal(run_in_pieces(call, x, 101, 151), whole[:, 101:151])

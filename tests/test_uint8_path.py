"""uint8 -> uint8 (``out_dtype=np.uint8``): the integer kernels where exact, equal to float64 then rounding.

The reference is scipy.ndimage in float64, then ``np.rint`` (ties to even) and a clip to
0..255: what writing the float path's result to an 8-bit file with ``--range clip`` gives.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from convtool import engine
from convtool.engine import methods
from convtool.engine.integer import integer_factors, integer_weights
from convtool.kernels import get_kernel
from convtool.pipeline import Chain, FilterOptions, parse_steps

RNG = np.random.default_rng(8)

EXACT = [
    "sobel-x",
    "prewitt-y",
    "scharr-x",
    "laplacian",
    "sharpen",
    "binomial:3",
    "binomial:5",
    "box:3",
    "box:15",
]
FLOAT_ONLY = ["gaussian:sigma=1", "box:6"]  # not integers; an even divisor that is not 2^k


def images():
    shape = (3, 37, 41)
    return {
        "random": RNG.integers(0, 256, shape, dtype=np.uint8),
        "zeros": np.zeros(shape, np.uint8),
        "full": np.full(shape, 255, np.uint8),
        "zero-or-full": (RNG.integers(0, 2, shape) * 255).astype(np.uint8),
    }


def reference(x, kernel, convolve, mode="mirror"):  # convtool reflect = scipy mirror
    run = ndi.convolve if convolve else ndi.correlate
    out = np.stack([run(c.astype(np.float64), kernel.weights, mode=mode) for c in x])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.fixture
def chosen(monkeypatch):
    """The band method classes each engine call prepared."""
    seen = []
    prepare = methods.prepare

    def spy(plan, method, *args, **kwargs):
        made = prepare(plan, method, *args, **kwargs)
        seen.append(type(made).__name__)
        return made

    monkeypatch.setattr(methods, "prepare", spy)
    return seen


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("convolve", [False, True])
def test_uint8_result_equals_float64_then_round(implementation, name, convolve):
    kernel = get_kernel(name)
    run = engine.convolve if convolve else engine.correlate
    for label, x in images().items():
        got = run(x, kernel, out_dtype=np.uint8)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, reference(x, kernel, convolve), err_msg=label)


@pytest.mark.parametrize("name", EXACT)
def test_qualifying_kernels_run_in_integers(implementation, chosen, name):
    x = images()["random"]
    engine.convolve(x, get_kernel(name), out_dtype=np.uint8)
    if implementation == "compiled":
        assert chosen and all(c.endswith("U8") for c in chosen), chosen
    else:
        assert not any(c.endswith("U8") for c in chosen), chosen


@pytest.mark.parametrize("name", FLOAT_ONLY)
def test_other_kernels_keep_the_float_path(implementation, chosen, name):
    # (a 6x6 box has exact ties, k + 1/2, that float64 sums in another order, as scipy's,
    # may round either way: the result is the engine's own float64 result, rounded)
    x = images()["random"]
    got = engine.convolve(x, get_kernel(name), out_dtype=np.uint8)
    assert chosen and not any(c.endswith("U8") for c in chosen), chosen
    want = engine.convolve(x.astype(np.float64), get_kernel(name))
    np.testing.assert_array_equal(got, np.clip(np.rint(want), 0, 255).astype(np.uint8))


def test_ties_round_to_even(implementation):
    # [1, 1] / 2 over 0 and 1 is exactly 0.5: rint gives 0; over 1 and 2, 1.5 gives 2
    x = np.array([[[0, 1, 1, 2, 3, 4]]], np.uint8)
    got = engine.correlate(x, [[0.5, 0.5]], padding="valid", out_dtype=np.uint8)
    np.testing.assert_array_equal(got, [[[0, 1, 2, 2, 4]]])


@pytest.mark.parametrize("padding", ["reflect", "edge", "wrap", "symmetric", "zero", "valid"])
def test_paddings_strides_and_dilations(implementation, padding):
    x = images()["random"]
    kernel = get_kernel("binomial:5")
    for stride, dilation in ((1, 1), (2, 1), (1, 2), (3, 2)):
        got = engine.convolve(
            x, kernel, padding=padding, stride=stride, dilation=dilation, out_dtype=np.uint8
        )
        want = engine.convolve(
            x.astype(np.float64), kernel, padding=padding, stride=stride, dilation=dilation
        )
        np.testing.assert_array_equal(got, np.clip(np.rint(want), 0, 255).astype(np.uint8))


def test_the_bound_refuses_what_float32_cannot_round():
    # 255 * sum|n| * g must stay below 2^24 for power-of-two scales
    assert integer_weights(np.full((3, 3), 1 / 8)) is not None
    assert integer_weights(np.full((3, 3), 8000.0)) is None  # 255 * 9 * 8000 > 2^24
    assert integer_weights(np.ones((6, 6)) / 36) is None  # even, not a power of two
    assert integer_weights(np.ones((15, 15)) / 225) is not None  # odd divisor
    assert integer_factors(np.ones(1), np.ones(3)) is None  # the separable kernel needs 2 taps


def test_the_chain_gives_uint8_for_one_convolution():
    pixels = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    alpha = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    chain = Chain(parse_steps(["sobel-x"]), FilterOptions())
    out, carried = chain.apply_uint8(pixels, alpha)
    floats, float_alpha = chain.apply(pixels.astype(np.float32), alpha.astype(np.float32))
    np.testing.assert_array_equal(out, np.clip(np.rint(floats), 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(carried, float_alpha.astype(np.uint8))
    assert Chain(parse_steps(["sobel-x", "box:3"])).apply_uint8(pixels) is None
    assert Chain(parse_steps(["grad:sobel"])).apply_uint8(pixels) is None


@pytest.mark.parametrize("shift", range(9))
def test_power_of_two_scales_round_in_integers_like_rint(shift):
    # the compiled integer-only final step (clamp, then a shift with ties to even) against
    # float64 then np.rint, over random small kernels and every scale 1 / 2^shift up to 1/256
    native = pytest.importorskip("convtool.engine._native")
    rng = np.random.default_rng(shift)
    x = rng.integers(0, 256, (2, 40, 50), dtype=np.uint8)
    for _ in range(5):
        weights = rng.integers(-3, 4, (3, 3))
        if not weights.any():
            continue
        got = np.empty((2, 38, 48), np.uint8)
        native.correlate_direct_u8(x, got, weights.astype(np.int32), 2.0**-shift, 1, 1, 1, 1, 0)
        want = ndi.correlate(x.astype(np.float64), weights[None] * 2.0**-shift, mode="constant")
        want = np.clip(np.rint(want[:, 1:-1, 1:-1]), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(got, want)


# Wide rows: the compiled kernels' register blocks (128 outputs of 16-bit sums, 64 of 32-bit)
# and the pieces of a row they read in place or from copies at the borders, which the small
# images above never reach. Interleaved RGB rows (channel_axis=-1) and planes; "big" needs
# 32-bit sums (255 * 390 > 2^16).
WIDE_KERNELS = {
    "sobel": np.outer([1.0, 2, 1], [-1.0, 0, 1]),
    "binomial": np.outer([1.0, 4, 6, 4, 1], [1.0, 4, 6, 4, 1]) / 256,
    "box": np.ones((15, 15)) / 225,
    "box-4x8": np.ones((4, 8)) / 32,  # (running sums from 4 rows, doubling from 4 columns)
    "laplacian": np.array([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]),
    "big": np.array([[10.0, 50, 10], [50, 150, 50], [10, 50, 10]]) / 256,
    "sharpen": np.array([[0.0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
}


def wide_image(name):
    shape = (23, 157, 3)
    if name == "extremes":
        return (RNG.integers(0, 2, shape) * 255).astype(np.uint8)
    return RNG.integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("kernel", list(WIDE_KERNELS))
@pytest.mark.parametrize("padding", ["reflect", "edge", "wrap", "symmetric", "zero"])
@pytest.mark.parametrize("method", ["auto", "direct"])
def test_wide_interleaved_rows_equal_float64_then_round(implementation, kernel, padding, method):
    weights = WIDE_KERNELS[kernel]
    for picture in ("random", "extremes"):
        x = wide_image(picture)
        want = engine.correlate(x.astype(np.float64), weights, padding=padding, channel_axis=-1)
        want = np.clip(np.rint(want), 0, 255).astype(np.uint8)
        got = engine.correlate(
            x, weights, padding=padding, method=method, out_dtype=np.uint8, channel_axis=-1
        )
        np.testing.assert_array_equal(got, want, err_msg=picture)
        planes = np.ascontiguousarray(np.moveaxis(x, -1, 0))
        got = engine.correlate(planes, weights, padding=padding, method=method, out_dtype=np.uint8)
        np.testing.assert_array_equal(got, np.moveaxis(want, -1, 0), err_msg=picture)


@pytest.mark.parametrize("kernel", ["sobel", "binomial", "big", "box"])
def test_wide_rows_with_strides_and_dilations(implementation, kernel):
    weights = WIDE_KERNELS[kernel]
    x = np.ascontiguousarray(np.moveaxis(wide_image("random"), -1, 0))
    for stride, dilation in ((1, 2), (2, 1), (3, 2)):
        kwargs = {"padding": "reflect", "stride": stride, "dilation": dilation}
        want = engine.correlate(x.astype(np.float64), weights, **kwargs)
        got = engine.correlate(x, weights, out_dtype=np.uint8, **kwargs)
        np.testing.assert_array_equal(got, np.clip(np.rint(want), 0, 255).astype(np.uint8))


def test_raw_binomial_weights_run_separable_in_integers(implementation, chosen):
    # the engine's own factors of these weights are [1 4 6 4 1] * 6/256 and [1 4 6 4 1] / 6,
    # which have no exact integer form: the separable 8-bit kernel takes the 2-D form's
    binomial = np.array([1.0, 4, 6, 4, 1]) / 16
    x = wide_image("random")
    engine.correlate(x, np.outer(binomial, binomial), out_dtype=np.uint8, channel_axis=-1)
    if implementation == "compiled":
        assert chosen == ["CompiledSeparableU8"], chosen
    assert integer_factors([6.0, 24, 36, 24, 6], np.array([1.0, 4, 6, 4, 1]) / 6) is None
    column, row, scale = integer_factors(
        [6.0, 24, 36, 24, 6], np.array([1.0, 4, 6, 4, 1]) / 6, np.outer(binomial, binomial)
    )
    assert column.tolist() == row.tolist() == [1, 4, 6, 4, 1] and scale == 1 / 256

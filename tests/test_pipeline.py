"""Chains of steps: gradients, pooling, iterations and alpha, against scipy and by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from convtool.errors import KernelError, UsageError
from convtool.pipeline import Chain, FilterOptions, GradientStep, PoolStep, parse_step, parse_steps

SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], float)


def rng_image(h=12, w=15, c=1, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (h, w, c))


def run(specs, pixels, alpha=None, iterations=1, alpha_mode="carry", **options):
    chain = Chain(parse_steps(specs), FilterOptions(**options), iterations, alpha_mode)
    return chain.apply(pixels, alpha)


# ----------------------------------------------------------------------- gradients


@pytest.mark.parametrize("norm", ["l2", "l1", "max"])
def test_sobel_gradient_magnitude_matches_scipy(norm):
    x = rng_image()
    out, _ = run([f"grad:sobel,norm={norm}"], x)
    gx = ndimage.convolve(x[..., 0], SOBEL_X, mode="mirror")
    gy = ndimage.convolve(x[..., 0], SOBEL_X.T, mode="mirror")
    expected = {
        "l2": np.hypot(gx, gy),
        "l1": np.abs(gx) + np.abs(gy),
        "max": np.maximum(np.abs(gx), np.abs(gy)),
    }[norm]
    np.testing.assert_allclose(out[..., 0], expected, rtol=1e-5, atol=1e-3)


def test_gradient_uses_the_chain_padding():
    x = rng_image()
    out, _ = run(["grad:prewitt"], x, padding="wrap")
    px = np.array([[1, 0, -1]] * 3, float)
    gx = ndimage.convolve(x[..., 0], px, mode="grid-wrap")
    gy = ndimage.convolve(x[..., 0], px.T, mode="grid-wrap")
    np.testing.assert_allclose(out[..., 0], np.hypot(gx, gy), rtol=1e-5, atol=1e-3)


def test_grad_without_operator_is_sobel():
    step = parse_step("grad")
    assert isinstance(step, GradientStep)
    assert step.kx.weights.tolist() == SOBEL_X.tolist()


@pytest.mark.parametrize(
    "spec", ["grad:canny", "grad:sobel,norm=l3", "grad:sobel,colour=red", "grad:op=sobel,op=sobel"]
)
def test_bad_gradient_specs_are_usage_errors(spec):
    with pytest.raises(KernelError):
        parse_step(spec)


# ------------------------------------------------------------------------- pooling


def test_max_and_average_pooling_by_hand():
    x = np.arange(16, dtype=float).reshape(4, 4, 1)
    maxed, _ = run(["maxpool:2"], x)
    averaged, _ = run(["avgpool:2"], x)
    assert maxed[..., 0].tolist() == [[5, 7], [13, 15]]
    assert averaged[..., 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]


def test_pooling_with_its_own_stride():
    x = np.arange(16, dtype=float).reshape(4, 4, 1)
    out, _ = run(["maxpool:3,stride=1"], x)
    assert out[..., 0].tolist() == [[10, 11], [14, 15]]


@pytest.mark.parametrize(
    ("n", "size", "stride", "side"), [(5, 2, 2, 2), (7, 3, 2, 3), (9, 3, 3, 3)]
)
def test_pool_output_side_is_pytorch_formula(n, size, stride, side):
    out, _ = run([f"avgpool:{size},stride={stride}"], rng_image(n, n))
    assert out.shape[:2] == (side, side) == ((n - size) // stride + 1,) * 2


def test_pool_window_larger_than_image_is_refused():
    with pytest.raises(UsageError, match="larger than the image"):
        run(["maxpool:5"], rng_image(3, 3))


def test_pool_rectangle_spec():
    step = parse_step("avgpool:2x3")
    assert isinstance(step, PoolStep) and step.size == (2, 3) and step.stride == (2, 3)


# ------------------------------------------------------------------- chain options


def test_chain_runs_steps_in_order_n_times():
    x = rng_image()
    out, _ = run(["box:3", "sobel-x"], x, iterations=2, padding="edge")
    expected = x[..., 0]
    for _ in range(2):
        expected = ndimage.convolve(expected, np.full((3, 3), 1 / 9), mode="nearest")
        expected = ndimage.convolve(expected, SOBEL_X, mode="nearest")
    np.testing.assert_allclose(out[..., 0], expected, rtol=1e-6, atol=1e-6)


def test_every_colour_channel_is_filtered_independently():
    x = rng_image(c=3)
    out, _ = run(["laplacian"], x)
    lap = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], float)
    for c in range(3):
        np.testing.assert_allclose(
            out[..., c], ndimage.convolve(x[..., c], lap, mode="mirror"), atol=1e-9
        )


def test_correlate_option_applies_kernel_as_written():
    x = rng_image()
    out, _ = run(["sobel-x"], x, correlate=True)
    np.testing.assert_allclose(
        out[..., 0], ndimage.correlate(x[..., 0], SOBEL_X, mode="mirror"), atol=1e-9
    )


def test_normalize_divides_by_sum():
    x = rng_image()
    out, _ = run(["[1 2 1]"], x, normalize=True)
    np.testing.assert_allclose(
        out[..., 0], ndimage.convolve(x[..., 0], [[0.25, 0.5, 0.25]], mode="mirror"), atol=1e-9
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stride": 0}, "--stride"),
        ({"dilation": -1}, "--dilation"),
        ({"method": "magic"}, "--method"),
        ({"padding": "mirorr"}, "mirror"),
    ],
)
def test_bad_options_name_the_flag(options, message):
    with pytest.raises(UsageError, match=message):
        FilterOptions(**options)


@pytest.mark.parametrize("iterations", [0, -1, 10**6])
def test_iterations_out_of_range(iterations):
    with pytest.raises(UsageError, match="--iterations"):
        Chain(parse_steps(["box"]), FilterOptions(), iterations)


def test_empty_chain_is_a_usage_error():
    with pytest.raises(UsageError, match="-k"):
        parse_steps([])


# ---------------------------------------------------------------------------- alpha


def test_alpha_is_carried_untouched_by_default():
    x, alpha = rng_image(), np.linspace(0, 255, 12 * 15).reshape(12, 15)
    _, out_alpha = run(["gaussian:sigma=2"], x, alpha)
    np.testing.assert_array_equal(out_alpha, alpha)


@pytest.mark.parametrize("channels", ["all", "luma"])
def test_carried_alpha_and_channels_never_read_unwritten_memory(poisoned_empty, channels):
    x, alpha = rng_image(12, 15, 3), np.linspace(0, 255, 12 * 15).reshape(12, 15)
    chain = Chain(parse_steps(["gaussian:sigma=1", "sobel-x"]), FilterOptions(), 2, "carry")
    chain = dataclasses.replace(chain, channels=channels)
    out, out_alpha = chain.apply(x, alpha)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out_alpha, alpha)


@pytest.mark.parametrize("correlate", [False, True])
@pytest.mark.parametrize("shape", [(3, 3), (2, 2), (4, 5)])
def test_alpha_is_cropped_like_the_colour_under_valid_padding(shape, correlate):
    # A kernel whose only tap is its centre (index k // 2, scipy's rule for both modes)
    # copies the pixel each output is centred on; alpha must come from the same place.
    h, w = 9, 11
    ramp = np.arange(h * w, dtype=float).reshape(h, w)
    kernel = np.zeros(shape)
    kernel[tuple(k // 2 for k in shape)] = 1
    spec = "[" + ";".join(" ".join(str(v) for v in row) for row in kernel) + "]"
    out, alpha = run([spec], ramp[..., None], ramp.copy(), padding="valid", correlate=correlate)
    assert out.shape[:2] == alpha.shape == (h - shape[0] + 1, w - shape[1] + 1)
    np.testing.assert_array_equal(out[..., 0], alpha)


def test_alpha_follows_stride_and_full_padding():
    x, alpha = rng_image(8, 8), np.full((8, 8), 255.0)
    out, out_alpha = run(["box:3"], x, alpha, padding="full", stride=2)
    assert out.shape[:2] == out_alpha.shape == (5, 5)
    assert out_alpha[0, 0] == 0  # the ring that full padding adds is transparent
    assert out_alpha[2, 2] == 255


def test_alpha_is_pooled_with_the_colour():
    x, alpha = rng_image(4, 4), np.arange(16, dtype=float).reshape(4, 4)
    _, out_alpha = run(["maxpool:2"], x, alpha)
    assert out_alpha.tolist() == [[5, 7], [13, 15]]


def test_weighted_alpha_keeps_hidden_colour_out():
    # Left half opaque grey 100, right half fully transparent with a vivid hidden 255.
    pixels = np.full((6, 10, 1), 100.0)
    pixels[:, 5:] = 255.0
    alpha = np.zeros((6, 10))
    alpha[:, :5] = 255.0
    carried, _ = run(["box:3"], pixels, alpha)
    weighted, out_alpha = run(["box:3"], pixels, alpha, alpha_mode="weighted")
    assert carried[0, 4, 0] > 100  # the hidden colour bleeds in without weighting
    np.testing.assert_allclose(weighted[:, :5, 0], 100.0, rtol=1e-6)
    np.testing.assert_array_equal(out_alpha, alpha)


def test_weighted_alpha_equals_plain_filter_where_opaque():
    x, alpha = rng_image(c=3), np.full((12, 15), 255.0)
    plain, _ = run(["sobel-x"], x)
    weighted, _ = run(["sobel-x"], x, alpha, alpha_mode="weighted")
    np.testing.assert_allclose(weighted, plain, rtol=1e-9, atol=1e-9)


def test_filter_alpha_mode_filters_alpha_like_a_channel():
    x, alpha = rng_image(c=3), rng_image()[..., 0]
    out, out_alpha = run(["box:3"], x, alpha, alpha_mode="filter")
    assert out.shape == x.shape
    np.testing.assert_allclose(
        out_alpha, ndimage.convolve(alpha, np.full((3, 3), 1 / 9), mode="mirror"), atol=1e-9
    )


# ------------------------------------------------------------------------- channels


def test_only_picked_channels_are_filtered():
    x = rng_image(c=3)
    chain = Chain(parse_steps(["box:3"]), FilterOptions(), channels="R,B")
    out, _ = chain.apply(x)
    np.testing.assert_array_equal(out[..., 1], x[..., 1])
    box = np.full((3, 3), 1 / 9)
    for c in (0, 2):
        np.testing.assert_allclose(
            out[..., c], ndimage.convolve(x[..., c], box, mode="mirror"), atol=1e-9
        )


def test_unpicked_channels_follow_the_geometry():
    x = rng_image(c=3)
    chain = Chain(parse_steps(["box:3"]), FilterOptions(padding="valid", stride=2), channels="0")
    out, _ = chain.apply(x)
    np.testing.assert_array_equal(out[..., 1], x[1:-1:2, 1:-1:2, 1][: out.shape[0], : out.shape[1]])


def test_luma_filters_luminance_and_keeps_colour():
    x = rng_image(c=3)
    chain = Chain(parse_steps(["box:3"]), FilterOptions(), channels="luma")
    out, _ = chain.apply(x)
    to_ycc = np.array(
        [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
    )
    ycc_in, ycc_out = x @ to_ycc.T, out @ to_ycc.T
    np.testing.assert_allclose(ycc_out[..., 1:], ycc_in[..., 1:], atol=1e-9)
    np.testing.assert_allclose(
        ycc_out[..., 0],
        ndimage.convolve(ycc_in[..., 0], np.full((3, 3), 1 / 9), mode="mirror"),
        atol=1e-9,
    )


def test_identity_through_luma_round_trips_exactly():
    x = rng_image(c=3)
    out, _ = Chain(parse_steps(["identity"]), FilterOptions(), channels="luma").apply(x)
    np.testing.assert_allclose(out, x, atol=1e-9)


@pytest.mark.parametrize("text", ["R,R", "purple", "R,,"])
def test_bad_channel_lists(text):
    with pytest.raises(UsageError, match="--channels"):
        Chain(parse_steps(["box"]), FilterOptions(), channels=text)


def test_channel_beyond_the_image_is_refused():
    with pytest.raises(UsageError, match="has 1 channel"):
        Chain(parse_steps(["box"]), FilterOptions(), channels="G").apply(rng_image())

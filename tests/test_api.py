"""The Python API: what the CLI does, a short call does too."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

import convtool
from convtool import engine


def test_import_is_light():
    code = "import convtool, sys; print('numpy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False"


def test_convolve_with_a_named_kernel_matches_scipy():
    x = np.random.default_rng(3).normal(size=(3, 17, 19))
    out = convtool.convolve(x, convtool.get_kernel("sobel-x"), padding="edge")
    sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], float)
    for c in range(3):
        np.testing.assert_allclose(
            out[c], ndimage.convolve(x[c], sobel, mode="nearest"), atol=1e-12
        )


def test_gradient_magnitude_matches_the_cli_step():
    x = np.random.default_rng(4).uniform(0, 255, (16, 16))
    magnitude = convtool.gradient_magnitude(x, "prewitt", norm="l1", padding="wrap")
    chain = convtool.Chain(
        convtool.parse_steps(["grad:prewitt,norm=l1"]), convtool.FilterOptions(padding="wrap")
    )
    out, _ = chain.apply(x[..., None])
    np.testing.assert_allclose(magnitude, out[..., 0], atol=1e-9)


def test_read_filter_write_round_trip(tmp_path):
    pixels = np.random.default_rng(5).uniform(-50, 50, (8, 9))
    path = tmp_path / "x.npy"
    convtool.write_image(path, convtool.Image(pixels, depth="float"))
    image = convtool.read_image(path, precision="double")
    np.testing.assert_array_equal(image.pixels[..., 0], pixels)
    blurred = convtool.correlate(image.pixels[..., 0], convtool.get_kernel("box:3"))
    np.testing.assert_allclose(
        blurred, ndimage.uniform_filter(pixels, 3, mode="mirror"), atol=1e-12
    )


def test_unknown_name_is_an_attribute_error():
    try:
        convtool.no_such_thing  # noqa: B018
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("expected AttributeError")


# ------------------------------------------------- channel_axis and kernels as specs


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_channels_last_without_channel_axis_are_refused_with_the_fix(channels, tmp_path):
    pixels = np.random.default_rng(6).integers(0, 256, (12, 14, channels), dtype=np.uint8)
    np.save(tmp_path / "x.npy", pixels)
    image = convtool.read_image(tmp_path / "x.npy").pixels  # (H, W, C), as Pillow gives it
    for call in (
        lambda: convtool.convolve(image, "box:3"),
        lambda: convtool.correlate(np.stack([image, image]), "box:3"),
        lambda: convtool.gradient_magnitude(image, "sobel"),
    ):
        with pytest.raises(convtool.UsageError, match=r"channel_axis=-1"):
            call()
    assert convtool.convolve(image, "box:3", channel_axis=-1).shape == image.shape


@pytest.mark.parametrize("filter_name", ["convolve", "correlate"])
def test_channel_axis_last_filters_each_channel_and_keeps_the_layout(filter_name):
    rgba = np.random.default_rng(7).uniform(0, 255, (12, 14, 4))
    run = getattr(convtool, filter_name)
    out = run(rgba, "sobel-x", channel_axis=-1, padding="valid", stride=2)
    assert out.shape == (5, 6, 4) and out.flags.c_contiguous
    for c in range(4):
        np.testing.assert_array_equal(out[..., c], run(rgba[..., c], "sobel-x", padding="valid",
                                                       stride=2))  # fmt: skip


def test_channel_axis_anywhere_gives_the_channels_first_result():
    x = np.random.default_rng(8).normal(size=(2, 3, 9, 11))  # (N, C, H, W)
    expected = convtool.correlate(x, "gaussian:sigma=1")
    np.testing.assert_array_equal(convtool.correlate(x, "gaussian:sigma=1", channel_axis=1),
                                  expected)  # fmt: skip
    hwc = np.moveaxis(x, 1, -1)  # (N, H, W, C)
    np.testing.assert_array_equal(convtool.correlate(hwc, "gaussian:sigma=1", channel_axis=-1),
                                  np.moveaxis(expected, 1, -1))  # fmt: skip


def test_stacks_of_narrow_images_pass_with_any_leading_channel_axis():
    narrow = np.random.default_rng(9).normal(size=(5, 8, 3))  # five images 3 pixels wide
    out = convtool.convolve(narrow, "box:3", channel_axis=0)
    np.testing.assert_array_equal(out[2], convtool.convolve(narrow[2], "box:3"))
    assert convtool.convolve(narrow[0], "box:3").shape == (8, 3)  # 2-D: width 3 is a width


@pytest.mark.parametrize(
    ("axis", "image", "message"),
    [
        (True, np.ones((4, 4, 3)), "integer or None"),
        (3, np.ones((4, 4, 3)), "out of range"),
        (-1, np.ones((4, 4)), "at least 3 dimensions"),
    ],
)
def test_bad_channel_axis_is_a_usage_error(axis, image, message):
    with pytest.raises(convtool.UsageError, match=message):
        convtool.convolve(image, "box:3", channel_axis=axis)


def test_a_kernel_may_be_a_spec_a_kernel_a_file_or_an_array(tmp_path):
    x = np.random.default_rng(10).normal(size=(9, 10))
    path = tmp_path / "k.txt"
    path.write_text("1 2 1\n2 4 2\n1 2 1\n")
    expected = convtool.convolve(x, np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16)
    for kernel in ("binomial:3", convtool.get_kernel("binomial:3"), "[1 2 1; 2 4 2; 1 2 1]/16"):
        np.testing.assert_allclose(convtool.convolve(x, kernel), expected, atol=1e-12)
    np.testing.assert_allclose(convtool.convolve(x, path), 16 * expected, atol=1e-12)
    np.testing.assert_allclose(
        convtool.correlate(x, "sobel-x@origin=1,0"),
        convtool.correlate(x, convtool.get_kernel("sobel-x@origin=1,0")),
    )


def test_gradient_magnitude_takes_a_pair_of_kernels():
    x = np.random.default_rng(11).uniform(0, 255, (13, 12, 3))
    by_name = convtool.gradient_magnitude(x, "scharr", channel_axis=-1)
    by_pair = convtool.gradient_magnitude(x, ("scharr-x", "scharr-y"), channel_axis=-1)
    np.testing.assert_array_equal(by_pair, by_name)
    assert by_name.shape == x.shape
    with pytest.raises(convtool.UsageError, match="pair"):
        convtool.gradient_magnitude(x[..., 0], "sobel-x")


def test_a_bad_spec_says_what_is_wrong():
    with pytest.raises(convtool.ConvtoolError, match="unknown kernel"):
        convtool.convolve(np.ones((5, 5)), "bxo:3")
    with pytest.raises(convtool.UsageError, match="convtool.correlate"):
        engine.correlate(np.ones((5, 5)), "box:3")


def test_transposes_take_specs_and_channel_axis_too():
    rgb = np.random.default_rng(12).normal(size=(6, 7, 3))
    out = convtool.correlate_transposed(rgb, "box:3", channel_axis=-1, padding="valid")
    assert out.shape == (8, 9, 3)
    for c in range(3):
        np.testing.assert_array_equal(
            out[..., c], engine.correlate_transposed(rgb[..., c], np.full((3, 3), 1 / 9),
                                                     padding="valid"),
        )  # fmt: skip
    with pytest.raises(convtool.UsageError, match="channel_axis=-1"):
        convtool.convolve_transposed(rgb, "box:3")


# ----------------------------------------------------------------------------- out=

SOBEL = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
RNG = np.random.default_rng(11)

OUT_CASES = {
    "float32 image": (RNG.random((40, 300), dtype=np.float32), {}),
    "float64 stack": (RNG.random((2, 3, 20, 33)), {"padding": "constant", "cval": 2.0}),
    "RGB interleaved": (RNG.random((30, 41, 3), dtype=np.float32), {"channel_axis": -1}),
    "RGB with a stride (moved)": (
        RNG.random((30, 41, 3), dtype=np.float32),
        {"channel_axis": -1, "stride": 2},
    ),
    "uint8 to uint8 (integer kernels)": (
        RNG.integers(0, 256, (3, 25, 70), dtype=np.uint8),
        {"out_dtype": np.uint8},
    ),
    "uint8 to uint8, float path": (
        RNG.integers(0, 256, (25, 70), dtype=np.uint8),
        {"out_dtype": np.uint8, "work_dtype": np.float32},
    ),
    "int16 image (float64 result)": (RNG.integers(-500, 500, (25, 70), dtype=np.int16), {}),
    "float16 image": (RNG.random((25, 70)).astype(np.float16), {}),
    "valid padding, dilation": (RNG.random((25, 70)), {"padding": "valid", "dilation": 2}),
}


@pytest.mark.parametrize("name", OUT_CASES)
@pytest.mark.parametrize("function", [engine.correlate, engine.convolve])
def test_out_receives_the_same_bytes_as_a_new_result(name, function, implementation):
    image, options = OUT_CASES[name]
    fresh = function(image, SOBEL, **options)
    out = np.full_like(fresh, 7)
    returned = function(image, SOBEL, out=out, **options)
    assert returned is out
    np.testing.assert_array_equal(out, fresh)


@pytest.mark.parametrize("name", ["float32 image", "float64 stack", "RGB interleaved"])
def test_out_stored_streaming_receives_the_same_bytes(name, monkeypatch):
    """An ``out=`` larger than the cache takes streaming stores: the same bytes (forced
    here on small images, whose rows start at every alignment)."""
    from convtool.engine import native

    image, options = OUT_CASES[name]
    fresh = engine.correlate(image, SOBEL, **options)
    monkeypatch.setattr(native, "streams", lambda nbytes: True)
    for shift in range(4):  # outputs starting 0..3 elements past an aligned address
        room = np.zeros(fresh.size + 64, fresh.dtype)
        out = room[shift : shift + fresh.size].reshape(fresh.shape)
        engine.correlate(image, SOBEL, out=out, **options)
        np.testing.assert_array_equal(out, fresh)


@pytest.mark.parametrize(
    ("caches", "cpus", "mib"),
    [
        ({1: 48 << 10, 2: 2 << 20, 3: 480 << 20}, 2, 32),  # a VM shown the host's whole L3
        ({1: 32 << 10, 2: 1 << 20, 3: 32 << 20}, 2, 16),  # a small L3: the L2s still decide
        ({1: 32 << 10, 2: 256 << 10, 3: 8 << 20}, 4, 8),  # a desktop's L3 below the rule
        ({1: 32 << 10, 2: 4 << 20}, 2, 4),  # no L3: the L2 is the last level
        ({}, 2, 32),  # the system does not say
    ],
)
def test_the_cache_that_decides_streaming_is_at_most_eight_private_caches(
    caches, cpus, mib, monkeypatch
):
    from convtool.engine import native

    monkeypatch.setattr(native, "cache_sizes", lambda: caches)
    monkeypatch.setattr(native, "cpu_count", lambda: cpus)
    assert native.stream_cache.__wrapped__() == mib << 20


def test_out_may_be_the_image_itself():
    image = RNG.random((30, 40))
    expected = engine.correlate(image, SOBEL)
    assert engine.correlate(image, SOBEL, out=image) is image
    np.testing.assert_array_equal(image, expected)


def test_out_of_another_shape_dtype_or_read_only_is_refused_in_one_line():
    image = RNG.random((30, 40), dtype=np.float32)
    with pytest.raises(convtool.UsageError, match=r"shape \(30, 40\) and dtype float32, got"):
        engine.correlate(image, SOBEL, out=np.empty((30, 40)))
    with pytest.raises(convtool.UsageError, match="shape"):
        engine.correlate(image, SOBEL, out=np.empty((28, 38), np.float32))
    frozen = np.empty((30, 40), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(convtool.UsageError, match="writable numpy array"):
        engine.correlate(image, SOBEL, out=frozen)
    with pytest.raises(convtool.UsageError, match="writable numpy array"):
        engine.correlate(image, SOBEL, out=[[0.0] * 40] * 30)


# ----------------------------------------------------------------------------- plans kept


def test_a_kernel_changed_in_place_between_calls_gives_the_new_result():
    """Plans are kept between calls, with their own copies of the weights."""
    image = RNG.random((20, 30))
    kernel = SOBEL.copy()
    before = engine.correlate(image, kernel)
    kernel *= -2  # the caller's array, changed after the call
    assert np.allclose(engine.correlate(image, kernel), -2 * before)
    kernel /= -2
    assert np.array_equal(engine.correlate(image, kernel), before)


def test_calls_alike_share_one_plan_and_calls_that_differ_do_not():
    from convtool.engine import api

    image = RNG.random((20, 30))
    first = api._plan(
        api._normalise(image, SOBEL, False, "reflect", 0, 1, 1, None, "auto", None, None)
    )
    again = api._plan(
        api._normalise(image, SOBEL, False, "reflect", 0, 1, 1, None, "auto", None, None)
    )
    other = api._plan(
        api._normalise(image, SOBEL, False, "wrap", 0, 1, 1, None, "auto", None, None)
    )
    assert again[0] is first[0] and other[0] is not first[0]
    assert not first[0].weights.flags.writeable


# ----------------------------------------------------------------------------- calls kept


def test_a_call_like_a_recent_one_is_checked_like_it():
    """Recent calls' checked arguments are kept by what was given, types included: an
    argument refused before is refused after a call that was accepted."""
    image = RNG.random((20, 30))
    engine.correlate(image, SOBEL, stride=1, padding="reflect")
    with pytest.raises(convtool.UsageError, match="stride"):
        engine.correlate(image, SOBEL, stride=True, padding="reflect")
    frozen = np.empty((20, 30))
    engine.correlate(image, SOBEL, out=np.empty((20, 30)))
    frozen.flags.writeable = False
    with pytest.raises(convtool.UsageError, match="writable numpy array"):
        engine.correlate(image, SOBEL, out=frozen)
    with pytest.raises(convtool.UsageError, match="at least 1"):
        engine.correlate(image, SOBEL, dilation=(1, 0))


def test_calls_kept_give_what_the_first_call_gives(implementation):
    rgb = RNG.random((24, 31, 3), dtype=np.float32)
    kernel = RNG.random((3, 4))
    for options in ({}, {"stride": (1, 2)}, {"padding": "constant", "cval": 2.5}):
        first = engine.convolve(rgb, kernel, channel_axis=-1, **options)
        again = engine.convolve(rgb, kernel, channel_axis=-1, **options)
        np.testing.assert_array_equal(again, first)
        for c in range(3):
            np.testing.assert_array_equal(
                engine.convolve(rgb[..., c], kernel, **options), first[..., c]
            )


def test_switching_the_compiled_kernels_off_between_calls_is_heard(monkeypatch):
    """CONVTOOL_NATIVE is read at each call, kept calls or not (a kept compiled plan run
    without the module would fail)."""
    image = RNG.random((64, 64))
    expected = ndimage.correlate(image, SOBEL, mode="mirror")
    np.testing.assert_allclose(engine.correlate(image, SOBEL), expected, atol=1e-12)
    monkeypatch.setenv("CONVTOOL_NATIVE", "0")
    np.testing.assert_allclose(engine.correlate(image, SOBEL), expected, atol=1e-12)
    monkeypatch.delenv("CONVTOOL_NATIVE")
    np.testing.assert_allclose(engine.correlate(image, SOBEL), expected, atol=1e-12)

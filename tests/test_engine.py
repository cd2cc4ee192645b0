"""The engine against scipy (float64 references), worked examples and validation."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal

from convtool.engine import choose_method, convolve, correlate, separable_factors
from convtool.engine import plan as engine_plan
from convtool.errors import UsageError
from convtool.padding import Padding

# Every test runs on the compiled kernels and on the numpy engine (see conftest.py).
pytestmark = pytest.mark.usefixtures("implementation")

SCIPY_MODE = {
    Padding.ZERO: "constant",
    Padding.CONSTANT: "constant",
    Padding.EDGE: "nearest",
    Padding.REFLECT: "mirror",
    Padding.SYMMETRIC: "reflect",
    Padding.WRAP: "grid-wrap",
}
CVAL = 1.5  # used with Padding.CONSTANT; the other modes ignore it or use 0
# Kernel shapes: single tap, one row, one column, even, odd, mixed, large, and one larger
# than the 11x13 test image on both axes.
KERNEL_SHAPES = [(1, 1), (1, 5), (5, 1), (2, 2), (3, 3), (4, 5), (7, 7), (12, 15)]
FLOAT64_RTOL = 1e-12  # of sum|k| * max|x|
FLOAT32_RTOL = 1e-5


def make_kernel(shape, separable: bool) -> np.ndarray:
    """A deterministic random kernel of ``shape``; rank 1 if ``separable`` else full rank."""
    gen = np.random.default_rng(shape[0] * 100 + shape[1])
    if separable:
        return np.outer(gen.uniform(-1, 1, shape[0]), gen.uniform(-1, 1, shape[1]))
    return gen.uniform(-1, 1, shape)


def dilate(kernel: np.ndarray, dilation: int) -> np.ndarray:
    """The zero-inserted kernel with taps ``dilation`` apart."""
    kh, kw = kernel.shape
    out = np.zeros(((kh - 1) * dilation + 1, (kw - 1) * dilation + 1))
    out[::dilation, ::dilation] = kernel
    return out


def reference(x, kernel, padding, *, flip, stride=1, dilation=1, origin=(0, 0)):
    """scipy's result in float64: ndimage for the same-size modes, signal for valid/full."""
    x = np.asarray(x, dtype=np.float64)
    k = dilate(np.asarray(kernel, dtype=np.float64), dilation)
    if padding in (Padding.VALID, Padding.FULL):
        op = scipy.signal.convolve2d if flip else scipy.signal.correlate2d
        planes = [op(p, k, mode=padding.value) for p in x.reshape(-1, *x.shape[-2:])]
        out = np.stack(planes).reshape(x.shape[:-2] + planes[0].shape)
    else:
        op = ndi.convolve if flip else ndi.correlate
        cval = CVAL if padding is Padding.CONSTANT else 0.0
        lead = (1,) * (x.ndim - 2)
        origin = (0,) * (x.ndim - 2) + tuple(origin)
        out = op(x, k.reshape(lead + k.shape), mode=SCIPY_MODE[padding], cval=cval, origin=origin)
    return out[..., ::stride, ::stride]


def assert_matches(got, expected, kernel, x, rtol):
    """``got == expected`` within ``rtol`` of the largest possible output, sum|k| * max|x|."""
    scale = np.abs(kernel).sum() * max(np.abs(x).max(), CVAL)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=rtol * scale)


# ----------------------------------------------------------------------------- vs scipy


@pytest.mark.parametrize("method", ["direct", "separable", "fft", "auto"])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("flip", [False, True], ids=["correlate", "convolve"])
@pytest.mark.parametrize("shape", KERNEL_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("padding", list(Padding), ids=lambda p: p.value)
def test_matches_scipy(stack, padding, shape, flip, stride, dilation, method):
    kernel = make_kernel(shape, separable=method == "separable")
    run = convolve if flip else correlate
    args = dict(padding=padding, cval=CVAL, stride=stride, dilation=dilation, method=method)
    span = [(k - 1) * dilation + 1 for k in shape]
    if padding is Padding.VALID and (span[0] > stack.shape[1] or span[1] > stack.shape[2]):
        with pytest.raises(UsageError, match="valid padding leaves no output"):
            run(stack, kernel, **args)
        return
    got = run(stack, kernel, **args)
    expected = reference(stack, kernel, padding, flip=flip, stride=stride, dilation=dilation)
    assert got.dtype == np.float64
    assert_matches(got, expected, kernel, stack, FLOAT64_RTOL)


def test_scalar_kernel_scales_the_image(stack):
    np.testing.assert_allclose(convolve(stack, 2.5), 2.5 * stack)


@pytest.mark.parametrize("flip", [False, True], ids=["correlate", "convolve"])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("origin", [(0, 0), (1, -1), (-1, 0), (-2, 1)])
@pytest.mark.parametrize("shape", [(3, 3), (4, 5), (2, 2)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("padding", [Padding.REFLECT, Padding.CONSTANT], ids=lambda p: p.value)
def test_origin_as_scipy(stack, padding, shape, origin, dilation, flip):
    kernel = make_kernel(shape, separable=False)
    run = convolve if flip else correlate
    span = [(k - 1) * dilation + 1 for k in shape]
    if any(not -(s // 2) <= o <= (s - 1) // 2 for o, s in zip(origin, span, strict=True)):
        with pytest.raises(UsageError, match="origin"):
            run(stack, kernel, padding=padding, origin=origin, dilation=dilation)
        return
    for method in ("direct", "fft"):
        got = run(stack, kernel, padding=padding, cval=CVAL, origin=origin, dilation=dilation,
                  method=method)  # fmt: skip
        expected = reference(stack, kernel, padding, flip=flip, dilation=dilation, origin=origin)
        assert_matches(got, expected, kernel, stack, FLOAT64_RTOL)


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
@pytest.mark.parametrize("padding", [Padding.REFLECT, Padding.WRAP, Padding.FULL], ids=str)
@pytest.mark.parametrize("shape", [(3, 3), (1, 9), (6, 4), (15, 15)], ids=str)
def test_float32_stays_float32_within_tolerance(stack, shape, padding, method):
    x = (stack * 1000).astype(np.float32)
    kernel = make_kernel(shape, separable=True)
    got = convolve(x, kernel, padding=padding, method=method)
    assert got.dtype == np.float32
    expected = reference(x, kernel, padding, flip=True)
    assert_matches(got, expected, kernel, x, FLOAT32_RTOL)


def test_box_kernels_by_running_sums_and_doubling(rng, monkeypatch):
    """A box of any size is exact both ways: running sums down rows and doubling across."""
    x = rng.uniform(0, 255, size=(3, 40, 37))
    monkeypatch.setattr(engine_plan, "_BOX_MIN_TAPS", 3)  # the box paths for small boxes too
    for width in (1, 10**6):  # forces running sums on, then off
        monkeypatch.setattr(engine_plan, "_RUNNING_MIN_WIDTH", width)
        for shape in [(3, 3), (17, 17), (16, 33), (1, 31)]:
            kernel = np.full(shape, 1 / (shape[0] * shape[1]))
            for stride, dilation in [(1, 1), (2, 1), (1, 2)]:
                got = correlate(x, kernel, stride=stride, dilation=dilation, method="separable")
                expected = reference(x, kernel, Padding.REFLECT, flip=False, stride=stride,
                                     dilation=dilation)  # fmt: skip
                assert_matches(got, expected, kernel, x, FLOAT64_RTOL)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
def test_many_small_bands_and_tiles_on_threads(rng, monkeypatch, method, threads):
    """Tiny bands, strips and matrix tiles (every partial-block path) give the same result."""
    for name, value in [("_BAND_ELEMENTS", 50), ("_STRIP_ELEMENTS", 40), ("_GEMM_MAX", 200),
                        ("_MATMUL_BLOCK", 3), ("_RUNNING_MIN_WIDTH", 1)]:  # fmt: skip
        monkeypatch.setattr(engine_plan, name, value)
    x = rng.uniform(-1, 1, size=(3, 29, 31))
    for shape in [(3, 3), (5, 7), (9, 9)]:
        kernel = make_kernel(shape, separable=method == "separable")
        for stride in (1, 2):
            got = convolve(x, kernel, stride=stride, method=method, threads=threads)
            expected = reference(x, kernel, Padding.REFLECT, flip=True, stride=stride)
            assert_matches(got, expected, kernel, x, FLOAT64_RTOL)


@pytest.mark.parametrize("padding", [Padding.REFLECT, Padding.SYMMETRIC, Padding.WRAP], ids=str)
@pytest.mark.parametrize("width", [1, 2, 3])
def test_kernel_many_times_wider_than_the_image(rng, padding, width):
    """Padding reaches around the image several times, as numpy.pad extends it.

    The reference is numpy.pad + a valid correlation: scipy.ndimage.correlate's N-D path
    reads garbage for mode='reflect' when the pad exceeds about 4x the image (scipy 1.17),
    while its correlate1d and numpy.pad agree with the engine.
    """
    x = rng.uniform(-1, 1, size=(5, width))
    kernel = make_kernel((3, 31), separable=False)
    numpy_mode = {Padding.REFLECT: "reflect", Padding.SYMMETRIC: "symmetric"}.get(padding, "wrap")
    padded = np.pad(x, ((1, 1), (15, 15)), mode=numpy_mode)
    expected = scipy.signal.correlate2d(padded, kernel, mode="valid")
    for method in ("direct", "fft"):
        got = correlate(x, kernel, padding=padding, method=method)
        assert_matches(got, expected, kernel, x, FLOAT64_RTOL)


# ----------------------------------------------------------------------------- worked examples


def test_impulse_gives_the_kernel_under_convolve_and_flipped_under_correlate():
    kernel = np.arange(1.0, 10.0).reshape(3, 3)
    impulse = np.zeros((7, 7))
    impulse[3, 3] = 1.0
    for method in ("direct", "fft"):
        conv = convolve(impulse, kernel, padding="zero", method=method)
        corr = correlate(impulse, kernel, padding="zero", method=method)
        np.testing.assert_allclose(conv[2:5, 2:5], kernel, atol=1e-12)
        np.testing.assert_allclose(corr[2:5, 2:5], kernel[::-1, ::-1], atol=1e-12)
        assert np.abs(conv).sum() == pytest.approx(kernel.sum())


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
def test_constant_image_gives_the_kernel_sum(method):
    kernel = np.outer([1.0, 2.0, 1.0], [1.0, 4.0, 6.0, 4.0, 1.0]) / 64
    image = np.full((9, 10), 3.0)
    got = convolve(image, kernel, method=method)  # reflect padding
    np.testing.assert_allclose(got, np.full((9, 10), 3.0 * kernel.sum()), atol=1e-12)


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (3, 3), (5, 5), (8, 1)], ids=str)
def test_all_zero_kernel_gives_zeros(method, shape):
    image = np.full((2, 6, 7), 5.0)
    np.testing.assert_array_equal(convolve(image, np.zeros(shape), method=method), 0.0)


def test_sobel_x_is_positive_where_intensity_rises_to_the_right():
    sobel_x = np.array([[1, 0, -1],
                        [2, 0, -2],
                        [1, 0, -1]], dtype=float)  # fmt: skip
    step = np.zeros((5, 8))
    step[:, 4:] = 1.0  # dark left half, bright right half
    expected = np.zeros((5, 8))
    expected[:, 3:5] = 4.0  # the two columns either side of the edge
    np.testing.assert_allclose(convolve(step, sobel_x, padding="edge"), expected, atol=1e-12)
    np.testing.assert_allclose(correlate(step, sobel_x, padding="edge"), -expected, atol=1e-12)


def test_small_examples_worked_by_hand():
    x = np.array([[1, 2, 3],
                  [4, 5, 6],
                  [7, 8, 9]], dtype=float)  # fmt: skip
    # 3x3 box with zero padding: a corner sees four pixels, the centre all nine.
    box = correlate(x, np.ones((3, 3)), padding="zero")
    np.testing.assert_allclose(box, [[12, 21, 16], [27, 45, 33], [24, 39, 28]])
    # [1 2] has its centre on the 2: correlate gives 1*left + 2*here ...
    np.testing.assert_allclose(correlate(x, [1, 2], padding="zero")[0], [2, 5, 8])
    # ... convolve flips it to [2 1] with the centre moved onto the 2 (scipy's even rule).
    np.testing.assert_allclose(convolve(x, [1, 2], padding="zero")[0], [4, 7, 6])
    # valid and full as numpy.convolve: [1 2 3] * [1 1].
    np.testing.assert_allclose(convolve(x[:1], [1, 1], padding="full"), [[1, 3, 5, 3]])
    np.testing.assert_allclose(convolve(x[:1], [1, 1], padding="valid"), [[3, 5]])
    # Stride 2 keeps outputs 0 and 2; dilation 2 makes [1 0 1] of [1 1].
    np.testing.assert_allclose(correlate(x, np.ones((3, 3)), padding="zero", stride=2),
                               [[12, 16], [24, 28]])  # fmt: skip
    np.testing.assert_allclose(correlate(x[:1], [1, 1], padding="zero", dilation=2), [[2, 4, 2]])


def test_padding_pictures_on_one_row():
    """Each mode extends ``a b c d`` as the padding table draws it (read by a one-tap kernel)."""
    row = np.array([[1.0, 2.0, 3.0, 4.0]])
    shift_right = np.zeros((1, 7))
    shift_right[0, 0] = 1.0  # reads 3 pixels left of each output pixel
    pictures = {
        "zero": [0, 0, 0, 1],
        "constant": [CVAL, CVAL, CVAL, 1],
        "edge": [1, 1, 1, 1],
        "reflect": [4, 3, 2, 1],
        "symmetric": [3, 2, 1, 1],
        "wrap": [2, 3, 4, 1],
    }
    for padding, expected in pictures.items():
        got = correlate(row, shift_right, padding=padding, cval=CVAL)
        np.testing.assert_allclose(got[0], expected, err_msg=padding)


def test_leading_axes_are_filtered_in_one_call(rng):
    images = rng.uniform(size=(2, 3, 9, 8))
    kernel = make_kernel((3, 4), separable=False)
    got = convolve(images, kernel)
    assert got.shape == images.shape
    for index in np.ndindex(2, 3):
        np.testing.assert_allclose(got[index], convolve(images[index], kernel), atol=1e-12)
    assert convolve(np.zeros((0, 9, 8)), kernel).shape == (0, 9, 8)


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
def test_channels_last_views_need_no_copy_first(rng, method):
    """A (C, H, W) view of an (H, W, C) image, as images.py holds pixels, filters the same."""
    pixels = rng.uniform(size=(9, 8, 3))
    kernel = make_kernel((3, 5), separable=True)
    view = pixels.transpose(2, 0, 1)
    expected = convolve(np.ascontiguousarray(view), kernel, method=method)
    np.testing.assert_array_equal(convolve(view, kernel, method=method), expected)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [(np.uint8, np.float64), (np.int16, np.float64), (np.int64, np.float64),
     (np.bool_, np.float64), (np.float16, np.float16), (np.float32, np.float32),
     (np.float64, np.float64)],
)  # fmt: skip
def test_float_dtypes_are_kept_and_integers_computed_in_float64(dtype, expected):
    image = (np.arange(30) % 7).reshape(5, 6).astype(dtype)
    got = convolve(image, np.ones((3, 3)) / 9)
    assert got.dtype == expected
    reference_result = ndi.convolve(image.astype(np.float64), np.ones((3, 3)) / 9, mode="mirror")
    np.testing.assert_allclose(got, reference_result, rtol=1e-3 if dtype == np.float16 else 1e-6)


# ----------------------------------------------------------------------------- kernels


@dataclass(frozen=True)
class DuckKernel:
    """What kernels.Kernel offers the engine, without importing it."""

    weights: np.ndarray
    factors: tuple[np.ndarray, np.ndarray] | None = None
    origin: tuple[int, int] = (0, 0)


def test_kernel_objects_give_weights_factors_and_origin(stack):
    column, row = np.array([1.0, 2.0, 1.0]), np.array([1.0, 0.0, -1.0])
    weights = np.outer(column, row)
    plain = convolve(stack, weights)
    assert np.array_equal(convolve(stack, DuckKernel(weights, (column, row))), plain)
    shifted = DuckKernel(weights, (column, row), origin=(1, -1))
    np.testing.assert_allclose(
        convolve(stack, shifted, method="separable"),
        ndi.convolve(stack, weights[None], mode="mirror", origin=(0, 1, -1)),
        atol=1e-12,
    )
    # An explicit origin wins over the kernel's own.
    np.testing.assert_allclose(convolve(stack, shifted, origin=(0, 0)), plain, atol=1e-12)


def test_separable_factors():
    column, row = np.array([1.0, 2.0, 1.0]), np.array([-1.0, 0.0, 1.0, 3.0])
    found = separable_factors(np.outer(column, row))
    assert found is not None
    np.testing.assert_allclose(np.outer(*found), np.outer(column, row), atol=1e-15)
    assert separable_factors(np.eye(3)) is None
    assert separable_factors(np.outer(column, row) + 1e-9 * np.eye(3, 4)) is None
    assert separable_factors([[1.0, 2.0, 3.0]])[1].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("shape", "separable", "image", "expected"),
    [
        ((3, 3), True, (512, 512), "separable"),
        ((101, 101), True, (512, 512), "separable"),
        ((1, 1), True, (512, 512), "direct"),
        ((5, 5), False, (512, 512), "direct"),
        ((3, 101), False, (512, 512), "direct"),
        ((31, 31), False, (512, 512), "fft"),
        ((31, 31), False, (16, 16), "direct"),
    ],
)
def test_choose_method(shape, separable, image, expected):
    assert choose_method(shape, separable, image) == expected


@pytest.mark.parametrize("method", ["direct", "separable", "auto"])
def test_direct_and_separable_do_not_import_scipy(method):
    code = (
        "import sys, numpy as np\n"
        "from convtool.engine import convolve\n"
        f"convolve(np.ones((40, 40)), np.outer([1, 2, 1], [1, 0, -1]), method={method!r})\n"
        "convolve(np.ones((40, 40)), np.ones((9, 9)), method='auto')\n"
        "assert 'scipy' not in sys.modules, sorted(m for m in sys.modules if 'scipy' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("image", "kernel", "kwargs", "match"),
    [
        (np.ones((4, 4)), [], {}, "kernel is empty"),
        (np.ones((4, 4)), [[1.0, np.nan]], {}, "finite"),
        (np.ones((4, 4)), [[1.0, np.inf]], {}, "finite"),
        (np.ones((4, 4)), np.ones((2, 2, 2)), {}, "kernel must be 2-D"),
        (np.ones((4, 4)), [["a"]], {}, "kernel must be a 2-D array of numbers"),
        (np.ones((4, 4)), None, {}, "kernel must be a 2-D array of numbers, got NoneType"),
        (np.ones((4, 4)), [[1.0, None]], {}, "kernel must be a 2-D array of numbers"),
        (np.ones(4), np.ones((3, 3)), {}, "image must have at least 2 dimensions"),
        (np.ones((0, 4)), np.ones((3, 3)), {}, "image is empty"),
        (np.ones((4, 4), dtype=complex), np.ones((3, 3)), {}, "real numbers"),
        (np.ones((4, 4)), np.ones((3, 3)), {"stride": 0}, "stride must be at least 1, got 0"),
        (np.ones((4, 4)), np.ones((3, 3)), {"stride": (1, -2)}, r"stride .* got \(1, -2\)"),
        (np.ones((4, 4)), np.ones((3, 3)), {"stride": 1.5}, "stride must be an integer"),
        (np.ones((4, 4)), np.ones((3, 3)), {"dilation": 0}, "dilation must be at least 1"),
        (np.ones((4, 4)), np.ones((3, 3)), {"threads": 0}, "threads must be at least 1"),
        (np.ones((4, 4)), np.ones((3, 3)), {"method": "magic"}, "unknown method 'magic'"),
        (np.ones((4, 4)), np.eye(3), {"method": "separable"}, "needs a rank-1 kernel"),
        (np.ones((4, 4)), np.ones((3, 3)), {"padding": "mirrror"}, "did you mean 'mirror'"),
        (np.ones((4, 4)), np.ones((3, 3)), {"cval": "x"}, "cval must be a number"),
        (np.ones((4, 4)), np.ones((3, 3)), {"origin": (2, 0)}, "origin 2 on rows"),
        (np.ones((4, 4)), np.ones((3, 3)), {"origin": (1, 0), "padding": "valid"},
         r"origin \(1, 0\) \(the centre at row 2, column 1 of the kernel\) has no meaning with valid"),
        (np.ones((4, 4)), np.ones((3, 3)), {"origin": (0, 1), "padding": "full"},
         "no meaning with full padding"),
        (np.ones((4, 4)), np.ones((5, 3)), {"padding": "valid"}, "kernel side 5 exceeds"),
        (np.ones((4, 4)), DuckKernel(np.ones((2, 2)), (np.ones(2), np.arange(2.0))), {},
         "factors"),
    ],
)  # fmt: skip
def test_bad_arguments_are_usage_errors_naming_the_parameter(image, kernel, kwargs, match):
    with pytest.raises(UsageError, match=match):
        convolve(image, kernel, **kwargs)


def test_one_column_image_with_a_tall_dilated_kernel():
    # found by the transposed convolution's adjoint test: a band of one column has any stride,
    # and the banded product's copy-to-unit-stride step recursed forever on it
    x = np.random.default_rng(9).normal(size=(9, 1))
    w = np.array([[1.0], [-2.0], [3.0], [0.5]])
    dilated = np.zeros((10, 1))
    dilated[::3] = w
    expected = ndi.correlate(x, dilated, mode="nearest")[::2]
    ours = correlate(x, w, padding="edge", stride=2, dilation=3, method="direct")
    np.testing.assert_allclose(ours, expected, atol=1e-12)


# ----------------------------------------------------------------------------- channels last


@pytest.mark.parametrize("method", ["direct", "separable", "fft", "auto"])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (1, 2), (2, 1), ((1, 3), (2, 1))], ids=str)
@pytest.mark.parametrize("flip", [False, True], ids=["correlate", "convolve"])
@pytest.mark.parametrize("shape", [(1, 5), (2, 2), (3, 3), (4, 5), (7, 7)], ids=str)
@pytest.mark.parametrize("padding", list(Padding), ids=lambda p: p.value)
def test_interleaved_channels_match_scipy_per_channel(
    stack, padding, shape, flip, stride, dilation, method
):
    # An (H, W, C) image as a decoder gives it: each channel filtered as scipy filters that
    # channel alone, the result interleaved the same way (padding copies whole pixels).
    pixels = np.ascontiguousarray(np.moveaxis(np.concatenate([stack, -stack[:1]]), 0, -1))
    kernel = make_kernel(shape, separable=method == "separable")
    run = convolve if flip else correlate
    args = dict(padding=padding, cval=CVAL, stride=stride, dilation=dilation, method=method)
    spans = [(k - 1) * d + 1 for k, d in zip(shape, np.broadcast_to(dilation, 2), strict=True)]
    if padding is Padding.VALID and (spans[0] > pixels.shape[0] or spans[1] > pixels.shape[1]):
        return
    got = run(pixels, kernel, **args, channel_axis=-1)
    planes = np.moveaxis(pixels, -1, 0)
    expected = np.moveaxis(run(planes, kernel, **args), 0, -1)
    sy, sx = np.broadcast_to(stride, 2)
    dy, dx = np.broadcast_to(dilation, 2)
    if dy == dx and sy == sx:  # scipy's reference takes one stride and one dilation
        scipy_planes = reference(planes, kernel, padding, flip=flip, stride=sy, dilation=dy)
        assert_matches(got, np.moveaxis(scipy_planes, 0, -1), kernel, pixels, FLOAT64_RTOL)
    assert got.shape == expected.shape
    assert_matches(got, expected, kernel, pixels, FLOAT64_RTOL)


def test_interleaved_uint8_is_the_planes_result_bit_for_bit(rng):
    pixels = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    for kernel in ([[1, 2, 1], [2, 4, 2], [1, 2, 1]], [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]):
        for padding in ("reflect", "edge", "wrap", "zero", "valid", "full"):
            got = convolve(pixels, kernel, padding=padding, out_dtype=np.uint8, channel_axis=-1)
            planes = convolve(
                np.moveaxis(pixels, -1, 0), kernel, padding=padding, out_dtype=np.uint8
            )
            assert got.flags.c_contiguous and got.dtype == np.uint8
            np.testing.assert_array_equal(got, np.moveaxis(planes, 0, -1))


def test_channel_axis_other_than_last_is_refused(stack):
    with pytest.raises(UsageError, match="channel_axis must be None or -1"):
        correlate(stack, np.ones((3, 3)), channel_axis=0)

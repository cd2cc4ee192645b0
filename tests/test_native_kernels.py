"""The compiled kernels (convtool.engine._native) against float64 references, bit-stability, NaN/Inf, integer exactness.

Every kernel is compared with a float64 evaluation of its contract: output (j, i) is
``sum_ab w[a, b] * src[row_step*j + a*row_gap, col_first + col_step*i + b*col_gap]``.
"""

from __future__ import annotations

import itertools
import os
import threading

import numpy as np
import pytest

from convtool.engine import native

_native = native._load()
if _native is None:
    if os.environ.get("CI"):
        raise RuntimeError("the compiled kernels were not built (python setup.py build_ext)")
    pytest.skip("the compiled kernels were not built", allow_module_level=True)

RNG = np.random.default_rng(20240613)


# ----------------------------------------------------------------------------- references


def reference(src, weights, row_step=1, row_gap=1, col_step=1, col_gap=1, col_first=0, shape=None):
    """The contract in float64, tap by tap (src: (C, R, W) or (R, W))."""
    src = np.asarray(src, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    kh, kw = w.shape
    rows, cols = (
        shape
        if shape is not None
        else output_shape(src.shape[-2:], w.shape, row_step, row_gap, col_step, col_gap, col_first)
    )
    out = np.zeros(src.shape[:-2] + (rows, cols))
    for a, b in itertools.product(range(kh), range(kw)):
        if w[a, b] == 0:
            continue
        r0, c0 = a * row_gap, col_first + b * col_gap
        view = src[
            ...,
            r0 : r0 + row_step * (rows - 1) + 1 : row_step,
            c0 : c0 + col_step * (cols - 1) + 1 : col_step,
        ]
        out += w[a, b] * view
    return out


def output_shape(src_shape, kernel_shape, row_step, row_gap, col_step, col_gap, col_first):
    (r, w), (kh, kw) = src_shape, kernel_shape
    rows = (r - (kh - 1) * row_gap - 1) // row_step + 1
    cols = (w - col_first - (kw - 1) * col_gap - 1) // col_step + 1
    return rows, cols


def tolerance(src, weights, dtype):
    """A bound on rounding: eps times the sum of |terms| (a few times over)."""
    eps = np.finfo(dtype).eps
    scale = np.abs(np.asarray(weights, dtype=np.float64)).sum() * max(np.abs(src).max(), 1)
    return 8 * eps * scale * max(1, np.asarray(weights).size ** 0.5)


def weights_of(kind: str, shape) -> np.ndarray:
    """Kernels that reach every kind of term: plain, mirror pairs, opposite pairs, +-1, 0."""
    kh, kw = shape
    w = RNG.standard_normal(shape)
    if kind == "random":
        return w
    if kind == "symmetric":  # w[a, b] == w[-a, -b]: folded pairs
        return w + w[::-1, ::-1]
    if kind == "antisymmetric":  # w[a, b] == -w[-a, -b]
        return w - w[::-1, ::-1]
    if kind == "units":  # +-1 and 0 only: the multiply-free terms
        return RNG.integers(-1, 2, shape).astype(np.float64)
    if kind == "box":
        return np.full(shape, 1.0 / (kh * kw))
    raise ValueError(kind)


KINDS = ["random", "symmetric", "antisymmetric", "units", "box"]
SHAPES = [(1, 1), (1, 5), (5, 1), (3, 3), (4, 4), (2, 7), (7, 2), (5, 3), (1, 2)]
GEOMETRIES = [  # row_step, row_gap, col_step, col_gap, col_first
    (1, 1, 1, 1, 0),
    (2, 1, 3, 1, 0),
    (1, 2, 1, 3, 0),
    (3, 2, 2, 2, 1),
    (1, 1, 1, 1, 4),
]


def image(dtype, channels, rows, cols):
    return (RNG.standard_normal((channels, rows, cols)) * 10).astype(dtype)


def fresh_out(dtype, channels, rows, cols):
    """An output that is not contiguous across channels (a band of a larger output)."""
    whole = np.full((channels, rows + 3, cols), np.nan, dtype=dtype)
    return whole[:, 2 : 2 + rows]


# ----------------------------------------------------------------------------- direct


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_direct_matches_float64_reference(dtype, shape, kind, geometry):
    w = weights_of(kind, shape)
    src = image(dtype, 2, 23, 61)
    rows, cols = output_shape(src.shape[-2:], shape, *geometry)
    out = fresh_out(dtype, 2, rows, cols)
    _native.correlate_direct(src, out, w, *geometry)
    expected = reference(src, w, *geometry)
    np.testing.assert_allclose(out, expected, rtol=0, atol=tolerance(src, w, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [(1, 1), (3, 1), (1, 300), (2, 1500), (70, 9)])
def test_direct_tiny_and_wide_images(dtype, size):
    """Outputs from 1 to 1500 columns: register blocks, their tails and the chunks between."""
    w = weights_of("random", (3, 3))
    src = image(dtype, 1, size[0] + 2, size[1] + 2)
    out = fresh_out(dtype, 1, *size)
    _native.correlate_direct(src, out, w, 1, 1, 1, 1, 0)
    np.testing.assert_allclose(out, reference(src, w), atol=tolerance(src, w, dtype))


def test_a_2d_image_is_one_channel():
    w = weights_of("random", (3, 2))
    src = image(np.float64, 1, 9, 9)[0]
    out = np.empty((7, 8))
    _native.correlate_direct(src, out, w, 1, 1, 1, 1, 0)
    np.testing.assert_allclose(out, reference(src, w), atol=1e-12)


def test_all_zero_kernel_gives_zeros():
    src = image(np.float32, 1, 5, 5)
    out = fresh_out(np.float32, 1, 3, 3)
    _native.correlate_direct(src, out, np.zeros((3, 3)), 1, 1, 1, 1, 0)
    assert (out == 0).all()


# ----------------------------------------------------------------------------- separable


def factors_of(kind: str, kh: int, kw: int):
    if kind == "box":
        return np.full(kh, 1.0 / kh), np.full(kw, 1.0 / kw)
    column, row = RNG.standard_normal(kh), RNG.standard_normal(kw)
    if kind == "symmetric":
        return column + column[::-1], row + row[::-1]
    if kind == "antisymmetric":
        return column + column[::-1], row - row[::-1]  # Sobel-like
    if kind == "units":
        return RNG.integers(-1, 2, kh).astype(float), RNG.integers(-1, 2, kw).astype(float)
    return column, row


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES + [(9, 9), (12, 3), (1, 13), (13, 1)])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("sums", [-1, 0, 1])
def test_separable_matches_float64_reference(dtype, shape, kind, geometry, sums):
    column, row = factors_of(kind, *shape)
    src = image(dtype, 2, 40, 75)
    rows, cols = output_shape(src.shape[-2:], shape, *geometry)
    out = fresh_out(dtype, 2, rows, cols)
    _native.correlate_separable(src, out, column, row, *geometry, 0, sums)
    w = np.outer(column, row)
    np.testing.assert_allclose(out, reference(src, w, *geometry), atol=tolerance(src, w, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("taps", [8, 31, 64])
def test_large_boxes_by_running_sums_and_doubling(dtype, taps):
    """Box factors long enough for the running sums (and a strip narrower than the image)."""
    column = row = np.full(taps, 1.0 / taps)
    src = image(dtype, 1, 3 * taps + 5, 2600)
    rows, cols = output_shape(src.shape[-2:], (taps, taps), 1, 1, 1, 1, 0)
    out = fresh_out(dtype, 1, rows, cols)
    _native.correlate_separable(src, out, column, row, 1, 1, 1, 1, 0)
    w = np.outer(column, row)
    np.testing.assert_allclose(out, reference(src, w), atol=tolerance(src, w, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [(1, 1), (1, 700), (3, 2000)])
def test_separable_tiny_and_wide_images(dtype, size):
    column, row = factors_of("random", 5, 5)
    src = image(dtype, 1, size[0] + 4, size[1] + 4)
    out = fresh_out(dtype, 1, *size)
    _native.correlate_separable(src, out, column, row, 1, 1, 1, 1, 0)
    w = np.outer(column, row)
    np.testing.assert_allclose(out, reference(src, w), atol=tolerance(src, w, dtype))


# ----------------------------------------------------------------------------- bit-stability


def in_bands(call, src, rows_out, band, reach, row_step=1):
    """The same call over bands of output rows, each on its own copy of its input rows."""
    pieces = []
    for j0 in range(0, rows_out, band):
        j1 = min(j0 + band, rows_out)
        r0 = row_step * j0
        part = src[..., r0 : row_step * (j1 - 1) + reach, :].copy()
        pieces.append(call(part, j1 - j0, r0))
    return np.concatenate(pieces, axis=-2)


SEPARABLE_CASES = {
    "box 17 (running sums)": (np.full(17, 1 / 17), np.full(17, 1 / 17), 1),
    "box 5 (taps)": (np.full(5, 0.2), np.full(5, 0.2), 1),
    "gaussian-like 9": (np.hanning(11)[1:-1], np.hanning(11)[1:-1], 1),
    "random 6x4 stride 2": (RNG.standard_normal(6), RNG.standard_normal(4), 2),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", SEPARABLE_CASES)
@pytest.mark.parametrize("band", [1, 3, 7, 16])
def test_separable_bits_do_not_depend_on_bands(dtype, case, band):
    column, row, step = SEPARABLE_CASES[case]
    src = image(dtype, 1, 80, 301)
    rows, cols = output_shape(src.shape[-2:], (column.size, row.size), step, 1, 1, 1, 0)

    def call(part, nr, origin):
        out = np.empty((1, nr, cols), dtype)
        _native.correlate_separable(part, out, column, row, step, 1, 1, 1, 0, origin)
        return out

    whole = call(src, rows, 0)
    banded = in_bands(call, src, rows, band, column.size, step)
    assert np.array_equal(whole, banded)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_bits_do_not_depend_on_bands_or_columns(dtype):
    """Row bands, and a shift of the first column (blocks and tails fall elsewhere)."""
    w = weights_of("symmetric", (5, 5))
    src = image(dtype, 1, 50, 700)
    rows, cols = output_shape(src.shape[-2:], w.shape, 1, 1, 1, 1, 0)

    def call(part, nr, origin, first=0):
        out = np.empty((1, nr, cols - first), dtype)
        _native.correlate_direct(part, out, w, 1, 1, 1, 1, first)
        return out

    whole = call(src, rows, 0)
    assert np.array_equal(whole, in_bands(call, src, rows, 7, 5))
    assert np.array_equal(whole[..., 37:], call(src, rows, 0, first=37))


# Kernels whose columns make each kind of group of the row pairs (equal, opposite, unequal
# mirror columns, the middle one), with rows of zeros and weights of +-1.
ROW_PAIR_KERNELS = {
    "sobel-x (opposite columns, weight 2)": np.outer([1.0, 2, 1], [1.0, 0, -1]),
    "sobel-y (a zero row)": np.outer([1.0, 0, -1], [1.0, 2, 1]),
    "laplacian (middle column alone in two rows)": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0.0]]),
    "gaussian 5x5 (equal columns)": np.outer(np.hanning(7)[1:-1], np.hanning(7)[1:-1]),
    "random 4x6 (unequal columns, even width)": RNG.standard_normal((4, 6)),
    "units 7x3": RNG.integers(-1, 2, (7, 3)).astype(np.float64),
    "mixed (one row opposite, one equal: unequal)": np.array([[1.0, 0, -1], [2, 5, 2]]),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [5, 70, 131, 1000])
def test_streaming_stores_give_the_bits_of_plain_ones(dtype, width):
    """``stream=True`` (outputs past the cache) at every alignment of the output rows, odd
    and even row counts, kernels taken in row pairs: the bytes of plain stores."""
    if not _native.info()["streaming"]:
        pytest.skip("this build has no streaming stores")
    # (a one-row kernel too: a lone last row then reads a single padded row ahead)
    kernels = (np.outer([1.0, 2, 1], [1.0, 0, -1]), RNG.standard_normal((5, 4)), RNG.random((1, 3)))
    for kernel in kernels:
        kh, kw = kernel.shape
        for rows in (1, 6, 7):
            src = image(dtype, 2, rows + kh - 1, width + kw - 1)
            plain = fresh_out(dtype, 2, rows, width)
            _native.correlate_direct(src, plain, kernel, 1, 1, 1, 1, 0)
            for shift in range(5):
                room = np.full(plain.size + 64, np.nan, dtype)
                out = room[shift : shift + plain.size].reshape(plain.shape)
                _native.correlate_direct(src, out, kernel, 1, 1, 1, 1, 0, stream=True)
                assert np.array_equal(out, plain, equal_nan=True), (rows, shift)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_all_zero_kernel_gives_positive_zeros(dtype):
    src = image(dtype, 1, 9, 300)
    out = np.full((1, 7, 298), np.nan, dtype)
    _native.correlate_direct(src, out, np.zeros((3, 3)), 1, 1, 1, 1, 0)
    assert (out == 0).all() and not np.signbit(out).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ROW_PAIR_KERNELS)
def test_direct_rows_give_the_same_bits_in_pairs_and_alone(dtype, name):
    """Unit steps compute output rows two at a time; a row alone (a band of one row, or the
    last of an odd band) adds the same terms in the same order."""
    w = ROW_PAIR_KERNELS[name]
    src = image(dtype, 2, 41, 333)
    src[0, 5, 7:40] = np.nan  # NaNs reach the windows that hold them, paired or not
    rows, cols = output_shape(src.shape[-2:], w.shape, 1, 1, 1, 1, 0)

    def call(part, nr, origin):
        out = np.empty((2, nr, cols), dtype)
        _native.correlate_direct(part, out, w, 1, 1, 1, 1, 0)
        return out

    whole = call(src, rows, 0)
    np.testing.assert_allclose(whole, reference(src, w), atol=tolerance(src[1], w, dtype))
    for band in (1, 2, 3):
        assert np.array_equal(whole, in_bands(call, src, rows, band, w.shape[0]), equal_nan=True)


def test_separable_bits_do_not_depend_on_columns():
    column, row = np.full(9, 1 / 9), np.hanning(9)
    src = image(np.float32, 1, 30, 900)
    rows, cols = output_shape(src.shape[-2:], (9, 9), 1, 1, 1, 1, 0)
    whole = np.empty((1, rows, cols), np.float32)
    _native.correlate_separable(src, whole, column, row, 1, 1, 1, 1, 0)
    shifted = np.empty((1, rows, cols - 13), np.float32)
    _native.correlate_separable(src, shifted, column, row, 1, 1, 1, 1, 13)
    assert np.array_equal(whole[..., 13:], shifted)


# ----------------------------------------------------------------------------- NaN and Inf


def reaches(mask, weights):
    """Outputs whose window holds a marked sample under a nonzero weight."""
    return reference(mask.astype(float), (np.asarray(weights) != 0).astype(float)) > 0


@pytest.mark.parametrize("method", ["direct", "separable taps", "separable sums"])
def test_nan_reaches_exactly_the_windows_that_hold_it(method):
    """A NaN under a nonzero weight makes that output NaN; zero weights skip it (as the
    numpy engine does; scipy gives NaN there, 0 * NaN being NaN); running sums do not spread
    it beyond the window."""
    src = RNG.standard_normal((1, 40, 40))
    src[0, 20, 11] = np.nan
    if method == "direct":
        w = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
        out = np.empty((1, 38, 38))
        _native.correlate_direct(src, out, w, 1, 1, 1, 1, 0)
    else:
        column, row = (np.array([1.0, 2, 1]), np.array([-1.0, 0, 1]))
        if method == "separable sums":
            column = row = np.full(9, 1 / 9)
        w = np.outer(column, row)
        out = np.empty((1, 41 - column.size, 41 - row.size))
        _native.correlate_separable(src, out, column, row, 1, 1, 1, 1, 0, 0, 1)
    expected = reaches(np.isnan(src), w)
    assert np.array_equal(np.isnan(out), expected)
    assert expected.sum() > 0 and (~expected).sum() > 0


@pytest.mark.parametrize("sums", [0, 1])
def test_infinity_gives_infinity_in_its_windows(sums):
    column = row = np.full(9, 1 / 9)
    src = RNG.standard_normal((1, 40, 40)).astype(np.float32)
    src[0, 5, 30] = np.inf
    out = np.empty((1, 32, 32), np.float32)
    _native.correlate_separable(src, out, column, row, 1, 1, 1, 1, 0, 0, sums)
    expected = reaches(np.isinf(src), np.outer(column, row))
    assert np.array_equal(np.isposinf(out), expected)
    assert np.isfinite(out[~expected]).all()


# ----------------------------------------------------------------------------- window sums


@pytest.mark.parametrize("method", [-1, 0, 1])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (32, 32), (9, 40), (40, 9)])
def test_window_sums_match_float64(method, shape):
    h, w = shape
    src = RNG.standard_normal((70, 90))
    sums = np.empty((71 - h, 91 - w))
    squares = np.empty_like(sums)
    _native.window_sums(src, sums, squares, h, w, 0, method)
    ones = np.ones(shape)
    np.testing.assert_allclose(sums, reference(src, ones), atol=1e-12 * h * w)
    np.testing.assert_allclose(squares, reference(src**2, ones), atol=1e-12 * h * w)


def test_window_sums_bits_do_not_depend_on_bands():
    src = RNG.standard_normal((200, 150))
    h, w = 33, 20
    rows, cols = 200 - h + 1, 150 - w + 1

    def call(part, nr, origin):
        out = np.empty((2, nr, cols))
        _native.window_sums(part, out[0], out[1], h, w, origin)
        return out

    assert np.array_equal(call(src, rows, 0), in_bands(call, src, rows, 17, h))


# ----------------------------------------------------------------------------- 8-bit integers

# Integer kernels and their scales (scale = 1/D, D a power of two or odd).
INTEGER_KERNELS = {
    "sobel-x": (np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]), 1.0),
    "sobel-y/8": (np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]), 1 / 8),
    "prewitt": (np.array([[-1, 0, 1]] * 3), 1.0),
    "scharr": (np.array([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]]), 1 / 16),
    "laplacian-4": (np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]]), 1.0),
    "laplacian-8": (np.array([[1, 1, 1], [1, -8, 1], [1, 1, 1]]), 1.0),
    "sharpen": (np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]), 1.0),
    "binomial-5": (np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]), 1 / 256),
    "binomial-3": (np.outer([1, 2, 1], [1, 2, 1]), 1 / 16),
    "box-15": (np.ones((15, 15)), 1 / 225),
    "box-3": (np.ones((3, 3)), 1 / 9),
    "box-4": (np.ones((4, 4)), 1 / 16),
    "unsharp-ish": (np.array([[-1, -2, -1], [-2, 28, -2], [-1, -2, -1]]), 1 / 16),
    "wide (32-bit sums)": (np.array([[1000, -999, 3], [7, 0, -1000]]), 1 / 1024),
}
SEPARABLE_INTEGER = {
    "sobel-x": ([1, 2, 1], [-1, 0, 1], 1.0),
    "binomial-5": ([1, 4, 6, 4, 1], [1, 4, 6, 4, 1], 1 / 256),
    "box-15": ([1] * 15, [1] * 15, 1 / 225),
    "box-4x8": ([1] * 4, [1] * 8, 1 / 32),
    "box-3x5": ([1] * 3, [1] * 5, 1 / 15),
    "wide (32-bit sums)": ([300, -200, 7], [250, 1, -250], 1 / 4096),
}


def exact_rounded(src, weights, scale_num, scale_den, geometry=(1, 1, 1, 1, 0)):
    """round_half_even(T * num / den) clipped to 0..255, from the exact integer sums T."""
    t = np.rint(reference(src.astype(np.int64), weights, *geometry)).astype(np.int64)
    # T*num/den exactly rounded: float64 division is correctly rounded, and a tie (only
    # possible for even den) is then exact because den is a power of two in those cases.
    return np.clip(np.rint(t * scale_num / scale_den), 0, 255)


def fraction(scale: float) -> tuple[int, int]:
    from fractions import Fraction

    f = Fraction(scale).limit_denominator(1 << 16)
    return f.numerator, f.denominator


def u8_images(shape):
    h, w = shape
    return {
        "all-0": np.zeros((2, h, w), np.uint8),
        "all-255": np.full((2, h, w), 255, np.uint8),
        "random": RNG.integers(0, 256, (2, h, w), dtype=np.uint8),
        "extremes": (RNG.integers(0, 2, (2, h, w)) * 255).astype(np.uint8),
    }


@pytest.mark.parametrize("name", INTEGER_KERNELS)
@pytest.mark.parametrize("picture", ["all-0", "all-255", "random", "extremes"])
@pytest.mark.parametrize("geometry", [(1, 1, 1, 1, 0), (2, 1, 3, 2, 1)])
def test_integer_direct_equals_float64_then_round(name, picture, geometry):
    weights, scale = INTEGER_KERNELS[name]
    src = u8_images((40, 1100))[picture]
    rows, cols = output_shape(src.shape[-2:], weights.shape, *geometry)
    out = np.empty((2, rows, cols), np.uint8)
    _native.correlate_direct_u8(src, out, weights.astype(np.int32), scale, *geometry)
    # float64 of the scaled weights, then rounding: the result the float path would give
    float64 = np.clip(np.rint(reference(src, weights * scale, *geometry)), 0, 255)
    assert np.array_equal(out, float64)
    assert np.array_equal(out, exact_rounded(src, weights, *fraction(scale), geometry))


@pytest.mark.parametrize("name", SEPARABLE_INTEGER)
@pytest.mark.parametrize("picture", ["all-0", "all-255", "random", "extremes"])
@pytest.mark.parametrize("geometry", [(1, 1, 1, 1, 0), (1, 2, 2, 1, 3)])
def test_integer_separable_is_exact(name, picture, geometry):
    column, row, scale = SEPARABLE_INTEGER[name]
    column, row = np.array(column, np.int32), np.array(row, np.int32)
    weights = np.outer(column, row)
    src = u8_images((45, 1300))[picture]
    rows, cols = output_shape(src.shape[-2:], weights.shape, *geometry)
    out = np.empty((2, rows, cols), np.uint8)
    _native.correlate_separable_u8(src, out, column, row, scale, *geometry)
    expected = exact_rounded(src, weights, *fraction(scale), geometry)
    assert np.array_equal(out, expected)
    float64 = np.clip(np.rint(reference(src, weights * scale, *geometry)), 0, 255)
    assert np.array_equal(out, float64)


@pytest.mark.parametrize(
    "samples, expected",
    [
        # (corner: weight 1, its neighbour: weight 4, centre: weight 36) -> S / 256
        ((128, 0, 0), 0),  # 0.5 -> 0 (to even)
        ((128, 128, 0), 2),  # 640 / 256 = 2.5 -> 2
        ((128, 64, 0), 2),  # 1.5 -> 2
        ((128, 0, 64), 10),  # 2432 / 256 = 9.5 -> 10
        ((128, 0, 192), 28),  # 27.5 -> 28
        ((127, 0, 192), 27),  # just below the tie
        ((129, 0, 192), 28),  # just above it
        ((255, 0, 0), 1),  # 0.996
    ],
)
def test_binomial_ties_round_half_to_even(samples, expected):
    """S = 128 (mod 256) puts binomial-5 results exactly on .5: they go to the even integer,
    as np.rint does on the (exact) float64 result."""
    src = np.zeros((1, 5, 5), np.uint8)
    src[0, 0, 0], src[0, 0, 1], src[0, 2, 2] = samples
    weights = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]).astype(np.int32)
    out = np.empty((1, 1, 1), np.uint8)
    _native.correlate_direct_u8(src, out, weights, 1 / 256, 1, 1, 1, 1, 0)
    assert int(out[0, 0, 0]) == expected == np.rint(reference(src, weights / 256))[0, 0, 0]
    column = np.array([1, 4, 6, 4, 1], np.int32)
    _native.correlate_separable_u8(src, out, column, column, 1 / 256, 1, 1, 1, 1, 0)
    assert int(out[0, 0, 0]) == expected


@pytest.mark.parametrize("name", ["sobel-x", "binomial-5", "wide (32-bit sums)"])
def test_integer_path_to_float32(name):
    """float32 output: T * scale within an ulp of the exact value (no clipping)."""
    weights, scale = INTEGER_KERNELS[name]
    src = u8_images((20, 300))["random"]
    rows, cols = output_shape(src.shape[-2:], weights.shape, 1, 1, 1, 1, 0)
    out = np.empty((2, rows, cols), np.float32)
    _native.correlate_direct_u8(src, out, weights.astype(np.int32), scale, 1, 1, 1, 1, 0)
    exact = reference(src, weights) * scale
    np.testing.assert_allclose(out, exact, rtol=2**-23, atol=0)


def test_integer_weights_too_large_are_refused():
    src = np.zeros((1, 3, 3), np.uint8)
    out = np.empty((1, 1, 1), np.uint8)
    with pytest.raises(ValueError, match="2\\^31"):
        _native.correlate_direct_u8(src, out, np.full((3, 3), 2**30, np.int32), 1.0, 1, 1, 1, 1, 0)


# ----------------------------------------------------------------------------- contracts


def test_mismatched_types_are_refused():
    with pytest.raises(TypeError, match="float32"):
        _native.correlate_direct(
            np.zeros((3, 3), np.float32), np.zeros((1, 1)), np.ones((3, 3)), 1, 1, 1, 1, 0
        )


def test_outputs_reading_outside_the_band_are_refused():
    with pytest.raises(ValueError, match="src too small"):
        _native.correlate_direct(np.zeros((3, 3)), np.zeros((2, 1)), np.ones((3, 3)), 1, 1, 1, 1, 0)
    with pytest.raises(ValueError, match="src too small"):
        _native.correlate_separable(
            np.zeros((5, 9)), np.zeros((1, 4)), np.ones(3), np.ones(3), 1, 1, 2, 1, 1
        )


def test_strided_columns_are_refused():
    src = np.zeros((5, 10))[:, ::2]
    with pytest.raises(ValueError, match="contiguous"):
        _native.correlate_direct(src, np.zeros((3, 3)), np.ones((3, 3)), 1, 1, 1, 1, 0)


def test_read_only_output_is_refused():
    out = np.zeros((1, 1))
    out.flags.writeable = False
    with pytest.raises((ValueError, BufferError, TypeError)):
        _native.correlate_direct(np.zeros((3, 3)), out, np.ones((3, 3)), 1, 1, 1, 1, 0)


def test_kernels_release_the_gil():
    """While one long call runs on a thread, Python code keeps running on another."""
    src = np.ones((1, 2048 + 30, 2048 + 30))
    out = np.empty((1, 2048, 2048))
    weights = RNG.standard_normal((31, 31))
    started, finished = threading.Event(), threading.Event()

    def work():
        started.set()
        _native.correlate_direct(src, out, weights, 1, 1, 1, 1, 0)
        finished.set()

    thread = threading.Thread(target=work)
    thread.start()
    started.wait()
    turns = 0
    while not finished.is_set():
        turns += 1
        finished.wait(0.0005)
    thread.join()
    # Holding the GIL for the whole call would leave this loop a handful of turns at most.
    assert turns > 50


def test_each_call_counts_itself_done_and_a_thread_waits_for_the_count():
    """done=: each band function adds 1 to done[0] once its outputs are stored, without the
    GIL; await_count spins until the count is reached (and no thread is still at work:
    done[1] == done[2]), or says it was not within the time given."""
    counts = np.zeros(3, np.int64)
    src, weights = RNG.standard_normal((40, 50)), RNG.standard_normal((3, 3))
    out = np.zeros((38, 48))
    _native.correlate_direct(src, out, weights, 1, 1, 1, 1, 0, done=counts)
    _native.correlate_separable(src, out, np.ones(3), np.ones(3), 1, 1, 1, 1, 0, done=counts)
    eight = (src * 8).astype(np.uint8)
    small = np.zeros((38, 48), np.uint8)
    _native.correlate_direct_u8(
        eight, small, np.ones((3, 3), np.int32), 1 / 9, 1, 1, 1, 1, 0, done=counts
    )
    _native.correlate_separable_u8(
        eight, small, np.ones(3, np.int32), np.ones(3, np.int32), 1 / 9, 1, 1, 1, 1, 0, done=counts
    )
    assert counts.tolist() == [4, 0, 0]
    assert _native.await_count(counts, 4, 1.0) is True
    counts[1] = 1  # a thread still at work
    assert _native.await_count(counts, 4, 0.001) is False
    counts[2] = 1
    assert _native.await_count(counts, 5, 0.001) is False

    def count_later():
        threading.Event().wait(0.01)
        _native.correlate_direct(src, out, weights, 1, 1, 1, 1, 0, done=counts)

    thread = threading.Thread(target=count_later)
    thread.start()
    assert _native.await_count(counts, 5, 10.0) is True
    thread.join()


@pytest.mark.parametrize(
    "done", [np.zeros(3, np.int32), np.zeros(3), [0, 0, 0], np.zeros(3, np.int64)[::2]]
)
def test_a_count_that_is_not_a_writable_int64_array_is_refused(done):
    with pytest.raises((TypeError, ValueError, BufferError)):
        _native.correlate_direct(
            np.zeros((3, 3)), np.zeros((1, 1)), np.ones((3, 3)), 1, 1, 1, 1, 0, done=done
        )
    with pytest.raises((TypeError, ValueError, BufferError)):
        _native.await_count(done, 1, 0.0)

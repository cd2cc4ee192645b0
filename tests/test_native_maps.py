"""The compiled kernels reading the unpadded image through the padding's index maps.

The engine hands the C kernels the image itself, a row map and a column map (the padded
row or column each output reads, -1 for the constant): no band is gathered. These tests hold
that path to the numpy engine bit for bit where the terms are the same (they are compared
with ``array_equal`` against the compiled kernels on a gathered band) and to scipy.ndimage
in float64 within rounding, at the borders, on hostile strides and on images smaller than
the kernel; and they check that every map entry is checked before anything is read.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.ndimage as ndi

from convtool.engine import bands, correlate, native
from convtool.engine.bands import source_positions
from convtool.padding import Padding

_native = native._load()
if _native is None:
    if os.environ.get("CI"):
        raise RuntimeError("the compiled kernels were not built (python setup.py build_ext)")
    pytest.skip("the compiled kernels were not built", allow_module_level=True)

SCIPY_MODE = {
    Padding.ZERO: "constant",
    Padding.CONSTANT: "constant",
    Padding.EDGE: "nearest",
    Padding.REFLECT: "mirror",
    Padding.SYMMETRIC: "reflect",
    Padding.WRAP: "grid-wrap",
}
SAME_SIZE = list(SCIPY_MODE)
CVAL = 0.75


def engine(x, kernel, implementation: str, **kwargs):
    """``correlate`` on the compiled kernels or on the numpy engine."""
    old = os.environ.get(native.NATIVE_ENV)
    os.environ[native.NATIVE_ENV] = "0" if implementation == "numpy" else "1"
    try:
        return correlate(x, kernel, **kwargs)
    finally:
        if old is None:
            os.environ.pop(native.NATIVE_ENV, None)
        else:
            os.environ[native.NATIVE_ENV] = old


def gathered(x, kernel, monkeypatch, **kwargs):
    """The compiled kernels on gathered bands (the image path switched off)."""
    from convtool.engine import methods

    monkeypatch.setattr(methods.Compiled, "source", lambda self, x: None)
    try:
        return engine(x, kernel, "compiled", **kwargs)
    finally:
        monkeypatch.undo()


def scipy_reference(x, kernel, padding):
    cval = CVAL if padding is Padding.CONSTANT else 0.0
    x64 = np.asarray(x, dtype=np.float64)
    k = np.asarray(kernel, dtype=np.float64).reshape((1,) * (x64.ndim - 2) + kernel.shape)
    return ndi.correlate(x64, k, mode=SCIPY_MODE[padding], cval=cval)


def kernels(rng):
    """Kernels that reach every compiled path: direct taps, folded pairs, separable taps, a
    running-sum box, one-row and one-column factors, even sizes."""
    gauss = np.exp(-0.5 * (np.arange(9) - 4) ** 2 / 4)
    return {
        "random 3x3": (rng.standard_normal((3, 3)), "direct"),
        "symmetric 4x5": ((lambda w: w + w[::-1, ::-1])(rng.standard_normal((4, 5))), "direct"),
        "sobel": (np.outer([1.0, 2, 1], [-1.0, 0, 1]), "separable"),
        "gaussian 9": (np.outer(gauss, gauss), "separable"),
        "box 9x9": (np.ones((9, 9)) / 81, "separable"),
        "row 1x6": (rng.standard_normal((1, 6)), "separable"),
        "column 7x1": (rng.standard_normal((7, 1)), "separable"),
        "box column 10x1": (np.ones((10, 1)), "separable"),
        "box row 1x12": (np.ones((1, 12)) / 12, "separable"),
    }


@pytest.mark.parametrize("padding", SAME_SIZE, ids=lambda p: p.value)
@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 9), (9, 1), (2, 3), (5, 4), (23, 37)], ids=lambda s: f"{s[0]}x{s[1]}"
)
def test_every_mode_at_the_borders_matches_scipy(rng, padding, shape):
    """Images smaller than the kernel, one row, one column: every output reads padding."""
    x = rng.uniform(-1, 1, shape)
    for name, (kernel, method) in kernels(rng).items():
        got = engine(x, kernel, "compiled", padding=padding, cval=CVAL, method=method)
        expected = scipy_reference(x, kernel, padding)
        scale = np.abs(kernel).sum() * max(1.0, CVAL)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * scale, err_msg=name)
        numpy_result = engine(x, kernel, "numpy", padding=padding, cval=CVAL, method=method)
        np.testing.assert_allclose(got, numpy_result, rtol=0, atol=1e-12 * scale, err_msg=name)


def hostile_views(x: np.ndarray):
    """The same samples as (C, H, W) views with strides the kernels must follow."""
    c, h, w = x.shape
    yield "contiguous", x
    yield "rows reversed", np.ascontiguousarray(x[:, ::-1])[:, ::-1]
    yield "columns reversed", np.ascontiguousarray(x[:, :, ::-1])[:, :, ::-1]
    big = np.zeros((c, 2 * h, 3 * w), dtype=x.dtype)
    big[:, ::2, ::3] = x
    yield "every 2nd row, 3rd column", big[:, ::2, ::3]
    yield "channels last", np.ascontiguousarray(x.transpose(1, 2, 0)).transpose(2, 0, 1)
    yield "columns as rows", np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding", list(Padding), ids=lambda p: p.value)
def test_hostile_strides_give_the_bits_of_a_gathered_band(rng, monkeypatch, dtype, padding):
    x = rng.uniform(-1, 1, (3, 17, 21)).astype(dtype)
    for name, (kernel, method) in kernels(rng).items():
        args = dict(padding=padding, cval=CVAL, method=method)
        if padding is Padding.VALID and kernel.shape[0] > 17:
            continue
        expected = gathered(x, kernel, monkeypatch, **args)
        for view_name, view in hostile_views(x):
            assert np.array_equal(view, x)
            got = engine(view, kernel, "compiled", **args)
            assert np.array_equal(got, expected, equal_nan=True), (name, view_name)


@pytest.mark.parametrize("stride, dilation", [(2, 1), (1, 3), ((3, 2), (2, 1))])
@pytest.mark.parametrize("padding", SAME_SIZE + [Padding.FULL], ids=lambda p: p.value)
def test_stride_and_dilation_give_the_bits_of_a_gathered_band(
    rng, monkeypatch, stride, dilation, padding
):
    x = rng.uniform(-1, 1, (2, 30, 41)).astype(np.float32)
    for name, (kernel, method) in kernels(rng).items():
        args = dict(padding=padding, cval=CVAL, method=method, stride=stride, dilation=dilation)
        expected = gathered(x, kernel, monkeypatch, **args)
        got = engine(x, kernel, "compiled", **args)
        assert np.array_equal(got, expected), name


@pytest.mark.parametrize("stride, dilation", [(1, 1), (3, 1), (1, 2)])
@pytest.mark.parametrize("padding", SAME_SIZE, ids=lambda p: p.value)
def test_long_rows_read_in_place_and_at_the_sides_give_the_bits_of_a_gathered_band(
    rng, monkeypatch, stride, dilation, padding
):
    """Rows longer than a chunk of outputs (512): a row factor alone and a box read the
    columns in place where they can and copies of the padding at either side."""
    x = rng.uniform(-1, 1, (1, 20, 1300)).astype(np.float32)
    cases = {
        "box row 1x15": np.ones((1, 15)) / 15,
        "random row 1x7": rng.standard_normal((1, 7)),
        "box 15x15": np.ones((15, 15)) / 225,
        "box 9x31": np.ones((9, 31)) / 279,
    }
    for name, kernel in cases.items():
        args = dict(padding=padding, cval=CVAL, stride=stride, dilation=dilation)
        expected = gathered(x, kernel, monkeypatch, **args)
        got = engine(x, kernel, "compiled", **args)
        assert np.array_equal(got, expected), name
        spread = np.zeros([(n - 1) * dilation + 1 for n in kernel.shape])
        spread[::dilation, ::dilation] = kernel
        cval = CVAL if padding is Padding.CONSTANT else 0.0
        exact = ndi.correlate(x[0].astype(np.float64), spread, mode=SCIPY_MODE[padding], cval=cval)
        np.testing.assert_allclose(got[0], exact[::stride, ::stride], atol=1e-5, err_msg=name)


def test_no_band_is_gathered_for_a_float_image(rng, monkeypatch):
    """The compiled methods read the image itself: gathering a band would be a bug here."""

    def refuse(*args):
        raise AssertionError("a band was gathered")

    monkeypatch.setattr(bands, "gather", refuse)
    x = rng.uniform(-1, 1, (64, 80)).astype(np.float32)
    for kernel, method in kernels(rng).values():
        engine(x, kernel, "compiled", padding="reflect", method=method)


@pytest.mark.parametrize("kernel", ["sobel", "binomial", "box"])
@pytest.mark.parametrize("padding", ["zero", "edge", "reflect", "symmetric", "wrap"])
def test_uint8_planes_of_an_interleaved_image_as_the_float_path(rng, kernel, padding):
    """8-bit RGB as (3, H, W) planes of an interleaved array (column steps of 3)."""
    weights = {
        "sobel": np.outer([1.0, 2, 1], [-1.0, 0, 1]) / 8,
        "binomial": np.outer([1.0, 4, 6, 4, 1], [1.0, 4, 6, 4, 1]) / 256,
        "box": np.ones((15, 15)) / 225,
    }[kernel]
    image = rng.integers(0, 256, (19, 33, 3)).astype(np.uint8)
    planes = image.transpose(2, 0, 1)
    got = engine(planes, weights, "compiled", padding=padding, out_dtype=np.uint8)
    exact = scipy_reference(planes.astype(np.float64), weights, Padding(padding))
    assert np.array_equal(got, np.clip(np.rint(exact), 0, 255).astype(np.uint8))


# ----------------------------------------------------------------------------- the C contract


def maps(h, w, kh, kw, padding=Padding.REFLECT):
    rows = source_positions(np.arange(-(kh // 2), h + kh - 1 - kh // 2), h, padding)
    cols = source_positions(np.arange(-(kw // 2), w + kw - 1 - kw // 2), w, padding)
    return rows, cols


def test_the_image_path_equals_a_padded_band(rng):
    x = rng.uniform(-1, 1, (2, 12, 15))
    w = rng.standard_normal((3, 5))
    rows, cols = maps(12, 15, 3, 5)
    band = np.ascontiguousarray(x[:, rows][:, :, cols])
    expected = np.empty((2, 12, 15))
    got = np.empty((2, 12, 15))
    _native.correlate_direct(band, expected, w, 1, 1, 1, 1, 0)
    _native.correlate_direct(x, got, w, 1, 1, 1, 1, 0, row_map=rows, col_map=cols)
    assert np.array_equal(got, expected)


def test_constant_cells_read_cval(rng):
    x = rng.uniform(-1, 1, (1, 4, 4))
    rows = np.array([-1, 0, 1, 2, 3, -1])
    cols = np.array([-1, 0, 1, 2, 3, -1])
    out = np.empty((1, 6, 6))
    _native.correlate_direct(x, out, np.ones((1, 1)), 1, 1, 1, 1, 0, rows, cols, 2.5)
    expected = np.full((1, 6, 6), 2.5)
    expected[:, 1:5, 1:5] = x
    assert np.array_equal(out, expected)


@pytest.mark.parametrize(
    "rows, cols, error, match",
    [
        (np.array([0, 1, 5]), np.arange(3), ValueError, "row_map"),
        (np.array([0, 1, -2]), np.arange(3), ValueError, "row_map"),
        (np.arange(3), np.array([0, 1, 4]), ValueError, "col_map"),
        (np.arange(3), None, ValueError, "together"),
        (np.arange(3, dtype=np.int32), np.arange(3), TypeError, "int64"),
        (np.arange(2), np.arange(3), ValueError, "src too small"),
    ],
)
def test_every_map_entry_is_checked_before_reading(rows, cols, error, match):
    """An index outside the image (or maps too short for the outputs) is refused."""
    x = np.zeros((1, 5, 4))
    out = np.empty((1, 1, 1))
    kwargs = {"row_map": rows} if cols is None else {"row_map": rows, "col_map": cols}
    with pytest.raises(error, match=match):
        _native.correlate_direct(x, out, np.ones((3, 3)), 1, 1, 1, 1, 0, **kwargs)
    with pytest.raises(error, match=match):
        _native.correlate_separable(x, out, np.ones(3), np.ones(3), 1, 1, 1, 1, 0, **kwargs)


def test_uint8_cval_must_be_a_sample():
    x = np.zeros((1, 3, 3), dtype=np.uint8)
    out = np.empty((1, 3, 3), dtype=np.uint8)
    rows, cols = maps(3, 3, 3, 3, Padding.ZERO)
    with pytest.raises(ValueError, match="cval"):
        _native.correlate_direct_u8(
            x, out, np.ones((3, 3), dtype=np.int32), 1 / 9, 1, 1, 1, 1, 0, rows, cols, 300.0
        )


# ----------------------------------------------------------------------------- 8-bit samples, float sums


def float_kernels(rng, method):
    """Kernels with no exact integer form (their uint8 results take the float path): rank 1
    for the separable method; for the direct one also any (folded pairs of rows, taps)."""
    gauss = np.exp(-0.5 * (np.arange(7) - 3) ** 2 / 2.5)
    gauss /= gauss.sum()
    return {
        "gaussian 7": np.outer(gauss, gauss),
        "random 3x4": np.outer(rng.standard_normal(3), rng.standard_normal(4)),
        "box 6x6": np.ones((6, 6)) / 36,  # (running sums and doubling, not taps)
        "box 9x2": np.ones((9, 2)) / 18,
        "row 1x5": rng.uniform(0, 0.4, (1, 5)),
        "column 6x1": rng.uniform(0, 0.4, (6, 1)),
        "box column 10x1": np.ones((10, 1)) / 10,
    } | (
        {}
        if method == "separable"
        else {
            "random 3x3": rng.uniform(-0.3, 0.6, (3, 3)),
            "symmetric 4x5": (lambda w: w + w[::-1, ::-1])(rng.uniform(0, 0.1, (4, 5))),
            "sharpen 0.5": np.array([[0, -0.5, 0], [-0.5, 3, -0.5], [0, -0.5, 0]]),
        }
    )


def rounded(x):
    with np.errstate(invalid="ignore"):
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("method", ["separable", "direct"])
@pytest.mark.parametrize("work_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding", list(Padding), ids=lambda p: p.value)
def test_uint8_samples_summed_in_floats_give_the_float_path_rounded(
    rng, monkeypatch, method, work_dtype, padding
):
    """A float kernel on 8-bit samples reads them itself and rounds its own outputs: the
    bytes of the image converted to floats, filtered, rounded half to even and clipped."""
    seen = []
    function = f"correlate_{method}"
    compiled = getattr(_native, function)

    def spy(src, dst, *args, **kwargs):
        seen.append((src.dtype, dst.dtype))
        return compiled(src, dst, *args, **kwargs)

    image = rng.integers(0, 256, (21, 40, 3), dtype=np.uint8)
    for name, kernel in float_kernels(rng, method).items():
        for stride, dilation in ((1, 1), (2, 1), (1, 2)):
            args = dict(padding=padding, cval=CVAL, stride=stride, dilation=dilation, method=method)
            if padding is Padding.VALID and (kernel.shape[0] - 1) * dilation >= 21:
                continue
            for layout, x, extra in (
                ("interleaved", image, {"channel_axis": -1}),
                ("planes", np.ascontiguousarray(image.transpose(2, 0, 1)), {}),
            ):
                floats = engine(x.astype(work_dtype), kernel, "compiled", **args, **extra)
                monkeypatch.setattr(_native, function, spy)
                seen.clear()
                got = engine(
                    x,
                    kernel,
                    "compiled",
                    out_dtype=np.uint8,
                    work_dtype=work_dtype,
                    **args,
                    **extra,
                )
                monkeypatch.undo()
                assert seen and set(seen) == {(np.dtype(np.uint8), np.dtype(np.uint8))}, seen
                assert np.array_equal(got, rounded(floats)), (name, layout, stride, dilation)


def test_uint8_samples_with_the_float64_default_give_scipy_rounded(rng):
    """``out_dtype=uint8`` without ``work_dtype`` sums in float64: scipy's float64 rounded."""
    gauss = np.exp(-0.5 * (np.arange(31) - 15) ** 2 / 25)
    kernel = np.outer(gauss, gauss) / gauss.sum() ** 2
    x = rng.integers(0, 256, (3, 40, 50), dtype=np.uint8)
    got = engine(x, kernel, "compiled", padding="reflect", out_dtype=np.uint8)
    exact = scipy_reference(x, kernel, Padding.REFLECT)
    # (a result within 1e-9 of a tie could round either way under another order of sums)
    near_tie = np.abs(np.abs(exact - np.floor(exact)) - 0.5) < 1e-9
    assert np.array_equal(got[~near_tie], rounded(exact)[~near_tie])


@pytest.mark.parametrize("method", ["separable", "direct"])
def test_uint8_results_of_infinite_and_nan_sums_are_those_of_the_cast(rng, method):
    """Weights that overflow float32: +-inf clip to 255 and 0, NaN (inf - inf) gives 0,
    as rounding and casting the float path's result does."""
    x = rng.integers(1, 256, (1, 9, 12), dtype=np.uint8)
    x[:, :, :5] = 0  # (0 - inf: -inf where the zeros end)
    rows, cols = maps(9, 12, 3, 2)
    column, row = np.array([3e38, 3e38, 3e38]), np.array([1.0, -1.0])
    weights = (column, row) if method == "separable" else (np.outer(column, row),)
    run = getattr(_native, f"correlate_{method}")
    floats = np.empty((1, 9, 12), dtype=np.float32)
    maps_ = {"row_map": rows, "col_map": cols}
    with np.errstate(over="ignore", invalid="ignore"):
        run(x.astype(np.float32), floats, *weights, 1, 1, 1, 1, 0, **maps_)
    assert np.isnan(floats).any() and np.isinf(floats).any()
    got = np.empty((1, 9, 12), dtype=np.uint8)
    run(x, got, *weights, 1, 1, 1, 1, 0, **maps_, real="f")
    assert np.array_equal(got, rounded(floats))


def test_uint8_samples_need_the_maps_and_a_float_type(rng):
    x = np.zeros((1, 5, 5), dtype=np.uint8)
    rows, cols = maps(5, 5, 3, 3)
    with pytest.raises(TypeError, match="only from the image"):
        _native.correlate_separable(x, np.empty((1, 3, 3), np.float32), np.ones(3), np.ones(3),
                                    1, 1, 1, 1, 0)  # fmt: skip
    with pytest.raises(TypeError, match="real"):
        _native.correlate_separable(x, np.empty((1, 5, 5), np.uint8), np.ones(3), np.ones(3),
                                    1, 1, 1, 1, 0, row_map=rows, col_map=cols)  # fmt: skip
    with pytest.raises(TypeError, match="float64 or uint8"):
        _native.correlate_separable(x, np.empty((1, 5, 5), np.float32), np.ones(3), np.ones(3),
                                    1, 1, 1, 1, 0, row_map=rows, col_map=cols, real="d")  # fmt: skip

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

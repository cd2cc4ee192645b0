"""Properties of convolution that every method must keep, on random small images (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from convtool.engine import convolve, correlate

# Every test runs on the compiled kernels and on the numpy engine (see conftest.py).
pytestmark = pytest.mark.usefixtures("implementation")

# FFT round-off in float64 is ~1e-15 of sum|k| * max|x|; leave room for a few passes.
RTOL = 1e-10
SAME_SIZE = ["zero", "edge", "reflect", "symmetric", "wrap"]  # the linear same-size modes

moderate = settings(max_examples=40, deadline=None)

values = st.floats(-100, 100, allow_nan=False, width=64)
methods = st.sampled_from(["direct", "fft"])


def images(max_side: int = 12):
    """(C, H, W) float64 images with 1..2 channels and sides 1..max_side."""
    shapes = st.tuples(st.integers(1, 2), st.integers(1, max_side), st.integers(1, max_side))
    return shapes.flatmap(lambda shape: arrays(np.float64, shape, elements=values))


def kernels(max_side: int = 6):
    shapes = st.tuples(st.integers(1, max_side), st.integers(1, max_side))
    return shapes.flatmap(lambda shape: arrays(np.float64, shape, elements=values))


def scale(kernel, *images_) -> float:
    """The largest possible output magnitude, sum|k| * max|x| (at least 1)."""
    return max(1.0, np.abs(kernel).sum() * max(np.abs(x).max() for x in images_))


@moderate
@given(x=images(), k=kernels(), a=values, b=values, padding=st.sampled_from(SAME_SIZE),
       method=methods, data=st.data())  # fmt: skip
def test_linear(x, k, a, b, padding, method, data):
    y = data.draw(arrays(np.float64, x.shape, elements=values))
    left = convolve(a * x + b * y, k, padding=padding, method=method)
    right = a * convolve(x, k, padding=padding, method=method) + b * convolve(
        y, k, padding=padding, method=method
    )
    tolerance = RTOL * scale(k, a * x, b * y) * 4
    np.testing.assert_allclose(left, right, rtol=0, atol=tolerance)


@moderate
@given(x=images(), k=kernels(), shift=st.tuples(st.integers(-20, 20), st.integers(-20, 20)),
       method=methods)  # fmt: skip
def test_shift_equivariant_with_wrap(x, k, shift, method):
    shifted_first = convolve(np.roll(x, shift, axis=(-2, -1)), k, padding="wrap", method=method)
    shifted_after = np.roll(convolve(x, k, padding="wrap", method=method), shift, axis=(-2, -1))
    np.testing.assert_allclose(shifted_first, shifted_after, rtol=0, atol=RTOL * scale(k, x))


@moderate
@given(x=images(), k=kernels(), padding=st.sampled_from([*SAME_SIZE, "valid", "full"]),
       method=methods)  # fmt: skip
def test_convolve_is_correlate_with_the_flipped_kernel(x, k, padding, method):
    """Odd sides: plain flip. Even sides: the flipped kernel's centre moves one tap left
    (origin -1), as scipy.ndimage.convolve places it."""
    if padding == "valid" and (k.shape[0] > x.shape[1] or k.shape[1] > x.shape[2]):
        return
    origin = None if padding in ("valid", "full") else tuple(s % 2 - 1 for s in k.shape)
    got = convolve(x, k, padding=padding, method=method)
    expected = correlate(x, k[::-1, ::-1], padding=padding, origin=origin, method=method)
    np.testing.assert_allclose(got, expected, rtol=0, atol=RTOL * scale(k, x))


@moderate
@given(x=images(8), k=kernels(4), times=st.integers(1, 3), method=methods)
def test_repeated_full_convolution_is_one_with_the_composed_kernel(x, k, times, method):
    composed = k
    for _ in range(times - 1):
        composed = scipy.signal.convolve2d(composed, k, mode="full")
    repeated = x
    for _ in range(times):
        repeated = convolve(repeated, k, padding="full", method=method)
    once = convolve(x, composed, padding="full", method=method)
    tolerance = RTOL * np.abs(k).sum() ** times * max(1.0, np.abs(x).max())
    # tiny weights make results subnormal, where one rounding is a whole unit: floor it
    tolerance = max(tolerance, np.finfo(np.float64).tiny)
    np.testing.assert_allclose(repeated, once, rtol=0, atol=tolerance)


@moderate
@given(x=images(), k=kernels(9), padding=st.sampled_from([*SAME_SIZE, "constant", "full"]),
       stride=st.integers(1, 3), dilation=st.integers(1, 2), rank1=st.booleans(),
       flip=st.booleans())  # fmt: skip
def test_methods_agree(x, k, padding, stride, dilation, rank1, flip):
    if rank1:  # the separable method needs a rank-1 kernel: keep one row and one column
        k = np.outer(k[:, 0], k[0]) / 100
    run = convolve if flip else correlate
    args = dict(padding=padding, cval=2.5, stride=stride, dilation=dilation)
    results = {m: run(x, k, method=m, **args) for m in ("direct", "fft", "auto")}
    if rank1:
        results["separable"] = run(x, k, method="separable", **args)
    for method, result in results.items():
        np.testing.assert_allclose(
            result, results["direct"], rtol=0, atol=RTOL * scale(k, x, 2.5), err_msg=method
        )

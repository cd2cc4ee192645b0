"""The Python API: what the CLI does, a short call does too."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from scipy import ndimage

import convtool


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

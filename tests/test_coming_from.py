"""The README's "Coming from …" tables, row by row, against the tools themselves.

Each test is one row: it runs the other tool (PyTorch, OpenCV, scipy, scikit-image,
ImageMagick, Pillow) and convtool on the same data and checks that the translation the
README gives reproduces the tool, and, where the row says two things differ, that they do.
A tool that is not installed skips its rows.
"""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
from numpy.testing import assert_allclose
from PIL import Image

import convtool
from convtool import convolve, correlate, get_kernel
from convtool.errors import KernelError

RNG = np.random.default_rng(11)
X = RNG.uniform(0, 255, (17, 19))  # odd and even sides differ: a transposed axis shows


def spec(weights: np.ndarray, modifiers: str = "") -> str:
    """An inline matrix spec of ``weights`` (full precision), with ``@...`` modifiers."""
    rows = "; ".join(" ".join(repr(float(v)) for v in row) for row in weights)
    return f"[{rows}]{modifiers}"


def run_filter(image: np.ndarray, steps: list[str], **options) -> np.ndarray:
    """What ``convtool filter -k STEP ...`` computes, as floats (the CLI's chain)."""
    chain = convtool.Chain(convtool.parse_steps(steps), convtool.FilterOptions(**options))
    return chain.apply_to(convtool.Image(image)).pixels[..., 0]


# ----------------------------------------------------------------------------- PyTorch


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def conv2d(torch, image, weights, **options):
    x = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    w = torch.from_numpy(np.ascontiguousarray(weights))[None, None]
    return torch.nn.functional.conv2d(x, w, **options)[0, 0].numpy()


@pytest.mark.parametrize("shape", [(3, 3), (4, 2), (5, 4)])
def test_torch_conv2d_is_correlate_and_padding_0_is_valid(torch, shape):
    w = RNG.normal(size=shape)
    expected = conv2d(torch, X, w)
    assert_allclose(correlate(X, w, padding="valid"), expected, rtol=1e-12, atol=1e-9)
    assert not np.allclose(convolve(X, w, padding="valid"), expected)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(
    ("shape", "dilation"),
    [((4, 2), 1), ((3, 4), 1), ((4, 4), 3), ((2, 2), 3)],  # an even dilated side
)
def test_torch_same_pads_bottom_right_and_origin_moves_ours_there(torch, shape, dilation):
    w = RNG.normal(size=shape)
    expected = conv2d(torch, X, w, padding="same", dilation=dilation)
    ours = correlate(X, w, padding="zero", dilation=dilation)
    assert not np.allclose(ours, expected)  # we put the extra tap top/left
    kh, kw = shape
    moved = get_kernel(spec(w, f"@origin={(kh - 1) // 2},{(kw - 1) // 2}"))
    assert_allclose(correlate(X, moved, padding="zero", dilation=dilation), expected, atol=1e-9)


@pytest.mark.parametrize(("shape", "dilation"), [((3, 3), 2), ((2, 4), 2), ((5, 3), 1)])
def test_torch_same_with_an_odd_dilated_side_is_our_default_centre(torch, shape, dilation):
    w = RNG.normal(size=shape)
    expected = conv2d(torch, X, w, padding="same", dilation=dilation)
    assert_allclose(correlate(X, w, padding="zero", dilation=dilation), expected, atol=1e-9)


@pytest.mark.parametrize(("shape", "pad"), [((5, 5), 1), ((3, 3), 3), ((4, 3), (2, 0))])
def test_torch_padding_p_is_pre_padding_then_valid(torch, shape, pad):
    w = RNG.normal(size=shape)
    expected = conv2d(torch, X, w, padding=pad)
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    padded = np.pad(X, ((ph, ph), (pw, pw)))
    assert_allclose(correlate(padded, w, padding="valid"), expected, atol=1e-9)


@pytest.mark.parametrize(("torch_mode", "ours"), [("reflect", "reflect"),
                                                  ("replicate", "edge"),
                                                  ("circular", "wrap"),
                                                  ("zeros", "zero")])  # fmt: skip
def test_torch_padding_modes_are_ours(torch, torch_mode, ours):
    w = RNG.normal(size=(5, 3))
    layer = torch.nn.Conv2d(1, 1, (5, 3), padding=(2, 1), padding_mode=torch_mode, bias=False)
    layer = layer.double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w)[None, None])
        expected = layer(torch.from_numpy(X)[None, None])[0, 0].numpy()
    assert_allclose(correlate(X, w, padding=ours), expected, atol=1e-9)


def test_torch_depthwise_conv_without_bias_is_our_per_channel_filter(torch):
    channels = RNG.uniform(0, 255, (3, 12, 13))
    w = RNG.normal(size=(3, 3))
    layer = torch.nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False, padding_mode="reflect")
    layer = layer.double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.stack([w] * 3))[:, None])
        expected = layer(torch.from_numpy(channels)[None])[0].numpy()
    assert_allclose(correlate(channels, w), expected, atol=1e-9)


@pytest.mark.parametrize(("step", "kind", "size", "stride"), [("maxpool:2", "max", 2, 2),
                                                             ("avgpool:4,stride=3", "avg", 4, 3),
                                                             ("maxpool:2x3", "max", (2, 3), (2, 3))])  # fmt: skip
def test_torch_pooling_without_ceil_mode_is_ours(torch, step, kind, size, stride):
    pool = getattr(torch.nn.functional, f"{kind}_pool2d")
    expected = pool(torch.from_numpy(X)[None, None], size, stride)[0, 0].numpy()
    assert_allclose(run_filter(X, [step]), expected, atol=1e-9)
    rounded_up = pool(torch.from_numpy(X)[None, None], size, stride, ceil_mode=True)
    assert rounded_up.shape[-2:] != expected.shape  # ceil_mode=True has no equivalent


@pytest.mark.parametrize("extra", ["ceil_mode=1", "padding=1", "dilation=2"])
def test_pooling_takes_no_ceil_mode_padding_or_dilation(extra):
    with pytest.raises(KernelError, match="unknown parameter"):
        convtool.parse_steps([f"maxpool:2,{extra}"])


# ------------------------------------------------------------------------------ OpenCV


@pytest.fixture(scope="module")
def cv2():
    return pytest.importorskip("cv2")


@pytest.mark.parametrize("shape", [(3, 3), (4, 4), (3, 4), (5, 2)])
def test_cv2_filter2d_is_correlate_with_our_default_reflect(cv2, shape):
    w = RNG.normal(size=shape)
    expected = cv2.filter2D(X, cv2.CV_64F, w)  # BORDER_REFLECT_101, anchor at the centre
    assert_allclose(correlate(X, w), expected, atol=1e-9)
    assert not np.allclose(convolve(X, w), expected)


@pytest.mark.parametrize("anchor", [(0, 0), (3, 1), (1, 2)])
def test_cv2_anchor_x_y_is_origin_y_x(cv2, anchor):
    w = RNG.normal(size=(3, 4))
    x, y = anchor
    expected = cv2.filter2D(X, cv2.CV_64F, w, anchor=anchor)
    assert_allclose(correlate(X, get_kernel(spec(w, f"@origin={y},{x}"))), expected, atol=1e-9)


@pytest.mark.parametrize(("function", "name", "order"), [("Sobel", "sobel-x", (1, 0)),
                                                         ("Sobel", "sobel-y", (0, 1)),
                                                         ("Scharr", "scharr-x", (1, 0)),
                                                         ("Scharr", "scharr-y", (0, 1))])  # fmt: skip
def test_cv2_sobel_and_scharr_are_ours_under_the_default_convolution(cv2, function, name, order):
    expected = getattr(cv2, function)(X, cv2.CV_64F, *order)
    assert_allclose(convolve(X, get_kernel(name)), expected, atol=1e-9)


def test_cv2_laplacian_ksize_1_is_minus_ours_and_ksize_3_another_kernel(cv2):
    assert_allclose(
        cv2.Laplacian(X, cv2.CV_64F, ksize=1), -convolve(X, get_kernel("laplacian")), atol=1e-9
    )
    wide = cv2.Laplacian(X, cv2.CV_64F, ksize=3)
    for name in ("laplacian", "laplacian:8"):
        assert not np.allclose(wide, -convolve(X, get_kernel(name)))
    assert_allclose(convolve(X, get_kernel("[2 0 2; 0 -8 0; 2 0 2]")), wide, atol=1e-9)


@pytest.mark.parametrize(("rows", "cols"), [(3, 3), (4, 4), (2, 5)])
def test_cv2_blur_is_box_correlated(cv2, rows, cols):
    expected = cv2.blur(X, (cols, rows))  # OpenCV sizes are (width, height)
    box = get_kernel(f"box:{rows}x{cols}")
    assert_allclose(correlate(X, box), expected, atol=1e-9)
    if rows % 2 == 0 or cols % 2 == 0:  # an even side: the default convolution is shifted
        assert not np.allclose(convolve(X, box), expected)


@pytest.mark.parametrize("sigma", [1.0, 1.4, 2.0, 3.3])
def test_cv2_gaussian_default_size_differs_and_size_matches(cv2, sigma):
    expected = cv2.GaussianBlur(X, (0, 0), sigma)  # float input: side 2*round(4σ)+1, odd
    cv_size = int(round(8 * sigma + 1)) | 1
    ours = convolve(X, get_kernel(f"gaussian:sigma={sigma}"))
    assert get_kernel(f"gaussian:sigma={sigma}").weights.shape[0] != cv_size
    assert not np.allclose(ours, expected)
    matched = convolve(X, get_kernel(f"gaussian:sigma={sigma},size={cv_size}"))
    assert_allclose(matched, expected, atol=1e-9)
    ours_size = get_kernel(f"gaussian:sigma={sigma}").weights.shape[0]
    assert_allclose(ours, cv2.GaussianBlur(X, (ours_size, ours_size), sigma), atol=1e-9)


@pytest.mark.parametrize(("sigma", "size"), [(1.5, 9), (2.0, 13), (0.8, 5)])
def test_cv2_gaussian_kernel_is_our_1d_factor(cv2, sigma, size):
    column, row = get_kernel(f"gaussian:sigma={sigma},size={size}").factors
    expected = cv2.getGaussianKernel(size, sigma)[:, 0]
    assert_allclose(column, expected, atol=1e-15)
    assert_allclose(row, expected, atol=1e-15)


# ---------------------------------------------------------------- scipy, scikit-image


@pytest.mark.parametrize(("theirs", "ours"), [("reflect", "symmetric"), ("mirror", "reflect"),
                                              ("nearest", "edge"), ("grid-wrap", "wrap")])  # fmt: skip
def test_scipy_mode_names_are_ours_renamed(theirs, ours):
    ndi = pytest.importorskip("scipy.ndimage")
    w = RNG.normal(size=(4, 5))
    assert_allclose(convolve(X, w, padding=ours), ndi.convolve(X, w, mode=theirs), atol=1e-9)
    assert_allclose(correlate(X, w, padding=ours), ndi.correlate(X, w, mode=theirs), atol=1e-9)


def test_scipy_correlate_is_ours_with_correlate_and_origin():
    ndi = pytest.importorskip("scipy.ndimage")
    w = RNG.normal(size=(4, 3))
    expected = ndi.correlate(X, w, mode="mirror", origin=(-1, 1))  # centre tap (1, 2)
    assert_allclose(correlate(X, get_kernel(spec(w, "@origin=1,2"))), expected, atol=1e-9)
    expected = ndi.convolve(X, w, mode="mirror", origin=(-1, 1))
    assert_allclose(convolve(X, w, origin=(-1, 1)), expected, atol=1e-9)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 0.6])
def test_scipy_gaussian_filter_is_our_gaussian_with_its_size(sigma):
    ndi = pytest.importorskip("scipy.ndimage")
    size = 2 * int(4 * sigma + 0.5) + 1  # truncate=4.0, its default
    kernel = get_kernel(f"gaussian:sigma={sigma},size={size}")
    assert_allclose(convolve(X, kernel, padding="symmetric"), ndi.gaussian_filter(X, sigma),
                    atol=1e-9)  # fmt: skip


@pytest.fixture(scope="module")
def skimage_filters():
    return pytest.importorskip("skimage.filters")


@pytest.mark.parametrize(("operator", "scale"), [("sobel", 4 * math.sqrt(2)),
                                                 ("prewitt", 3 * math.sqrt(2)),
                                                 ("scharr", 16 * math.sqrt(2)),
                                                 ("roberts", math.sqrt(2))])  # fmt: skip
def test_skimage_edge_filters_are_grad_over_a_constant(skimage_filters, operator, scale):
    image = X / 255  # scikit-image works on 0..1 floats
    expected = getattr(skimage_filters, operator)(image)  # its mode 'reflect' = symmetric
    ours = run_filter(image, [f"grad:{operator}"], padding="symmetric")
    assert_allclose(ours / scale, expected, atol=1e-9)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 2.0])
def test_skimage_gaussian_is_edge_padding_and_truncate_4(skimage_filters, sigma):
    image = X / 255
    expected = skimage_filters.gaussian(image, sigma=sigma)  # mode='nearest', truncate=4
    size = 2 * int(4 * sigma + 0.5) + 1
    ours = convolve(image, get_kernel(f"gaussian:sigma={sigma},size={size}"), padding="edge")
    assert_allclose(ours, expected, atol=1e-12)
    if get_kernel(f"gaussian:sigma={sigma}").weights.shape[0] != size:
        assert not np.allclose(
            convolve(image, get_kernel(f"gaussian:sigma={sigma}"), padding="edge"), expected
        )


def test_skimage_laplace_has_our_sign_and_scipy_laplace_the_other(skimage_filters):
    ndi = pytest.importorskip("scipy.ndimage")
    image = X / 255
    ours = convolve(image, get_kernel("laplacian"), padding="symmetric")
    assert_allclose(skimage_filters.laplace(image), ours, atol=1e-12)
    assert_allclose(ndi.laplace(image), -ours, atol=1e-12)


# --------------------------------------------------------------------------- ImageMagick

needs_convert = pytest.mark.skipif(
    shutil.which("convert") is None, reason="ImageMagick's convert is not installed"
)


def magick_convolve(tmp_path, image: np.ndarray, kernel: str, *extra: str) -> np.ndarray:
    Image.fromarray(image).save(tmp_path / "in.png")
    subprocess.run(
        ["convert", tmp_path / "in.png", "-morphology", "Convolve", kernel, *extra,
         tmp_path / "out.png"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    with Image.open(tmp_path / "out.png") as im:
        return np.asarray(im).astype(np.float64)


KERNEL_STRINGS = [
    "3x3: 1,2,0 0,1,3 1,0,2",
    "4x2: 1,2,3,4 5,0,7,0",
    "2x3: 1,2 3,0 0,4",
    "5x3+4+0: 1,0,0,0,0 0,0,2,0,0 0,0,0,0,3",
    "4x4: 1,0,0,2 0,0,0,0 0,3,0,0 0,0,0,4",
]


@needs_convert
@pytest.mark.parametrize("kernel", KERNEL_STRINGS)
def test_imagemagick_convolve_is_edge_padding_exactly(tmp_path, kernel):
    small = RNG.integers(0, 12, (15, 17), dtype=np.uint8)  # integer results below 256
    expected = magick_convolve(tmp_path, small, kernel)
    k = get_kernel(kernel)
    assert_allclose(convolve(small.astype(float), k, padding="edge"), expected, atol=1e-9)
    for other in ("reflect", "zero", "wrap"):
        assert not np.allclose(convolve(small.astype(float), k, padding=other), expected), other
    assert not np.allclose(correlate(small.astype(float), k, padding="edge"), expected)


@needs_convert
@pytest.mark.parametrize("kernel", KERNEL_STRINGS)
def test_imagemagick_correlate_is_ours_with_edge_padding(tmp_path, kernel):
    small = RNG.integers(0, 12, (15, 17), dtype=np.uint8)
    Image.fromarray(small).save(tmp_path / "in.png")
    subprocess.run(
        ["convert", tmp_path / "in.png", "-morphology", "Correlate", kernel, tmp_path / "o.png"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    expected = np.asarray(Image.open(tmp_path / "o.png")).astype(float)
    ours = correlate(small.astype(float), get_kernel(kernel), padding="edge")
    assert_allclose(ours, expected, atol=1e-9)


@needs_convert
@pytest.mark.parametrize("kernel", KERNEL_STRINGS)
def test_imagemagick_dash_convolve_normalises_and_correlates(tmp_path, kernel):
    image = RNG.integers(0, 256, (15, 17), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    subprocess.run(
        ["convert", tmp_path / "in.png", "-convolve", kernel, tmp_path / "o.png"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    expected = np.asarray(Image.open(tmp_path / "o.png")).astype(float)
    normalised = get_kernel(f"{kernel}@scale=!")
    ours = correlate(image.astype(float), normalised, padding="edge")
    np.testing.assert_array_equal(np.floor(ours + 1e-9), expected)  # 8-bit: truncated
    flipped = convolve(image.astype(float), normalised, padding="edge")
    assert np.abs(np.floor(flipped + 1e-9) - expected).max() > 1


@needs_convert
def test_imagemagick_scale_define_is_our_scale_modifier(tmp_path):
    small = RNG.integers(0, 256, (15, 17), dtype=np.uint8)
    kernel = "3x3: 1,2,1 2,4,2 1,2,1"
    Image.fromarray(small).save(tmp_path / "in.png")
    subprocess.run(
        ["convert", tmp_path / "in.png", "-define", "convolve:scale=!", "-morphology",
         "Convolve", kernel, tmp_path / "o.png"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    expected = np.asarray(Image.open(tmp_path / "o.png")).astype(float)
    ours = convolve(small.astype(float), get_kernel(f"{kernel} @scale=!"), padding="edge")
    np.testing.assert_array_equal(np.floor(ours + 1e-9), expected)


@needs_convert
def test_imagemagick_truncates_8_bit_results_where_convtool_rounds(tmp_path):
    image = RNG.integers(0, 256, (30, 31), dtype=np.uint8)
    kernel = "3x3: 0.1,0.2,0 0,0.1,0.3 0.1,0,0.2"
    exact = convolve(image.astype(float), get_kernel(kernel), padding="edge")
    eight = magick_convolve(tmp_path, image, kernel)
    np.testing.assert_array_equal(eight, np.floor(exact + 1e-9))  # truncated
    assert np.any(eight != np.rint(exact))  # convtool's 8-bit output would round
    sixteen = magick_convolve(tmp_path, image, kernel, "-depth", "16") / 257
    assert np.abs(sixteen - exact).max() <= 0.5 / 257 + 1e-9  # its 16-bit quantum


def test_imagemagick_strings_are_width_by_height_and_sizes_print_rows_by_columns():
    values = " ".join(["1 2 3 4 5"] * 3)
    magick = get_kernel(f"5x3: {values}")
    assert magick.weights.shape == get_kernel("box:3x5").weights.shape == (3, 5)
    assert get_kernel("roberts-x").weights.shape == (1, 2)  # listed as 1x2
    from convtool.pipeline.report import format_plain, report

    for text in (f"5x3: {values}", "box:3x5"):
        assert ": 3x5," in format_plain(report(text)).splitlines()[0]


# ------------------------------------------------------------------------------- Pillow


def test_pillow_kernel_filter_is_convolution_with_rows_reversed():
    from PIL import ImageFilter

    image = RNG.integers(0, 40, (16, 18), dtype=np.uint8)
    w = np.array([[1, 2, 0], [0, 1, 3], [1, 0, 2]], float)
    filtered = Image.fromarray(image).filter(ImageFilter.Kernel((3, 3), w.ravel().tolist(), 10))
    expected = np.asarray(filtered).astype(float)
    inner = (slice(1, -1), slice(1, -1))  # Pillow copies the border pixels unfiltered
    ours = convolve(image.astype(float), w[:, ::-1] / 10)[inner]
    assert np.abs(ours - expected[inner]).max() <= 0.5 + 1e-5  # Pillow rounds (in float32)
    as_written = convolve(image.astype(float), w / 10)[inner]
    assert np.abs(as_written - expected[inner]).max() > 1
    border = np.ones(image.shape, bool)
    border[inner] = False
    np.testing.assert_array_equal(expected[border], image[border])

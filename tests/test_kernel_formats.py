"""Kernel files and interop strings by example: each equals the inline spec worked by hand.

Covers plain text files, .npy, libvips and MATLAB .mat, ImageMagick kernel strings, the
@scale= / @origin= modifiers, and that origins mean what scipy.ndimage means by them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from convtool import kernels
from convtool.errors import KernelError
from convtool.kernels import Kernel, get_kernel, parse_kernel_spec, read_kernel_file
from convtool.kernels.formats import parse_scale

BINOMIAL_3 = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# ------------------------------------------------------------------------ inline matrices


@pytest.mark.parametrize(
    "spec, matrix",
    [
        ("1 -1", [[1, -1]]),
        ("1, -1", [[1, -1]]),
        ("[1; -1]", [[1], [-1]]),
        ("[1 2; 3 4;]", [[1, 2], [3, 4]]),  # a trailing ';' as MATLAB allows
        ("[[1, 2], [3, 4]]", [[1, 2], [3, 4]]),  # numpy / Python style
        ("[ [1 2] ; [3 4] ]", [[1, 2], [3, 4]]),
        ("0.5 .25 -1e-1 +2", [[0.5, 0.25, -0.1, 2]]),
        ("[1 2 1; 2 4 2; 1 2 1] / 16", BINOMIAL_3),
        ("[1 2]*-2", [[-2, -4]]),
        ("3", [[3]]),
    ],
)
def test_inline_matrix(spec, matrix):
    assert_allclose(parse_kernel_spec(spec).weights, matrix, rtol=1e-15)


# ---------------------------------------------------------------------------- ImageMagick


@pytest.mark.parametrize(
    "im, inline",
    [
        ("3x3: 1,2,1 2,4,2 1,2,1", "[1 2 1; 2 4 2; 1 2 1]"),
        ("3x3:1,2,1,2,4,2,1,2,1", "[1 2 1; 2 4 2; 1 2 1]"),
        ("3: 1 2 1  2 4 2  1 2 1", "[1 2 1; 2 4 2; 1 2 1]"),
        ("3x2: 1 2 3 4 5 6", "[1 2 3; 4 5 6]"),  # W x H, values row by row
        ("1x3: 1 0 -1", "[1; 0; -1]"),
        ("3x3: nan,1,nan 1,1,1 -,1,-", "[0 1 0; 1 1 1; 0 1 0]"),  # nan / - taps are absent
        ("'3x3: 1,2,1 2,4,2 1,2,1'", "[1 2 1; 2 4 2; 1 2 1]"),  # quotes IM ignores
    ],
)
def test_imagemagick_kernel_equals_inline_matrix(im, inline):
    assert_array_equal(parse_kernel_spec(im).weights, parse_kernel_spec(inline).weights)


@pytest.mark.parametrize(
    "im, origin",
    [
        ("3x3: 1 2 3 4 5 6 7 8 9", (0, 0)),
        ("3x3+1+1: 1 2 3 4 5 6 7 8 9", (0, 0)),
        ("3x3+0+0: 1 2 3 4 5 6 7 8 9", (-1, -1)),
        ("3x3+2+0: 1 2 3 4 5 6 7 8 9", (-1, 1)),  # X is the column, Y the row
        ("2x2: 1 2 3 4", (-1, -1)),  # IM's default centre (W-1)//2, scipy's k//2
        ("4x1: 1 2 3 4", (0, -1)),
        ("2x2+1+1: 1 2 3 4", (0, 0)),
    ],
)
def test_imagemagick_geometry_gives_the_centre(im, origin):
    assert parse_kernel_spec(im).origin == origin


@pytest.mark.parametrize("run", [ndi.correlate, ndi.convolve])
@pytest.mark.parametrize(
    "im",
    ["3x3+0+0: 1 2 3 4 5 6 7 8 9", "3x2+2+1: 1 -2 3 4 0 6", "2x2: 1 2 3 4", "4x1+3+0: 1 2 3 4"],
)
def test_origin_is_scipy_origin(im, run):
    """A kernel with an origin acts as the kernel zero-padded so its centre tap is central."""
    kernel = parse_kernel_spec(im)
    (h, w), (cy, cx) = kernel.shape, kernel.centre
    big = np.zeros((2 * max(cy, h - 1 - cy) + 1, 2 * max(cx, w - 1 - cx) + 1))
    top, left = big.shape[0] // 2 - cy, big.shape[1] // 2 - cx
    big[top : top + h, left : left + w] = kernel.weights
    image = np.random.default_rng(2).random((11, 12))
    assert_allclose(
        run(image, kernel.weights, origin=kernel.origin, mode="constant"),
        run(image, big, mode="constant"),
    )


@pytest.mark.parametrize(
    "im, message",
    [
        ("3x3: 1 2 3", "needs 9 values, got 3"),
        ("2x2: 1 2 3 4 5", "needs 4 values, got 5"),
        ("3x3: 1 2 1 2 4 2 1 2 1; 3x3: 0 0 0 0 1 0 0 0 0", "kernel lists (';')"),
        ("3x3@: 1 2 3 4 5 6 7 8 9", "expansion flags"),
        ("3x3-1-1: 1 2 3 4 5 6 7 8 9", "geometry '3x3-1-1' not understood"),
        ("3x3+3+0: 1 2 3 4 5 6 7 8 9", "centre column 3 is outside"),
        ("2x1: nan -", "no values, only nan"),
        ("2x1: 1 x", "'x' is not a number"),
        ("2000x1: 1", "above the limit of 1025"),
    ],
)
def test_imagemagick_errors(im, message):
    with pytest.raises(KernelError) as info:
        parse_kernel_spec(im)
    assert message in str(info.value)


# ----------------------------------------------------------------------- @scale / @origin


@pytest.mark.parametrize(
    "spec, matrix",
    [
        ("[1 2 1; 2 4 2; 1 2 1]@scale=!", BINOMIAL_3),
        ("[1 2 1; 2 4 2; 1 2 1]@scale=1/16", BINOMIAL_3),
        ("3x3: 1,2,1 2,4,2 1,2,1 @scale=!", BINOMIAL_3),
        ("[1 2 1; 2 4 2; 1 2 1]@scale=200%!", 2 * BINOMIAL_3),
        ("[1 2 1; 2 4 2; 1 2 1]@scale=2!", 2 * BINOMIAL_3),
        ("1 2 -1@scale=^", [[1 / 3, 2 / 3, -1]]),  # positives to 1, negatives to -1
        ("1 2 -1@scale=!", [[0.5, 1, -0.5]]),  # by the sum, 2
        ("1 -3 2@scale=!", [[1 / 3, -1, 2 / 3]]),  # zero-sum: by the positive total
        ("2 4@scale=50%", [[1, 2]]),
        ("2 4@scale=-0.5", [[-1, -2]]),
        ("2 4 @ scale = 1/4 ", [[0.5, 1]]),
        ("2 4@scale=!@scale=3", [[1, 2]]),  # modifiers apply in order
    ],
)
def test_scale_modifier(spec, matrix):
    assert_allclose(parse_kernel_spec(spec).weights, matrix, rtol=1e-15)


@pytest.mark.parametrize("text", ["", "%", "!!", "!^", "2%%", "abc", "1/", "/2", "1/0", "x!"])
def test_bad_scale(text):
    with pytest.raises(KernelError, match="scale"):
        parse_scale(text)


def test_origin_modifier_sets_the_centre_tap():
    kernel = parse_kernel_spec("[1 2; 3 4]@origin=0,0")
    assert kernel.origin == (-1, -1) and kernel.centre == (0, 0)
    assert parse_kernel_spec("box:4@origin=1,2").origin == (-1, 0)
    with pytest.raises(KernelError, match="expected the centre as ROW,COL"):
        parse_kernel_spec("box@origin=-1,0")


# ------------------------------------------------------------------------- text files


def test_text_file_with_headers_equals_the_inline_spec(tmp_path):
    path = write(tmp_path, "blur.txt", """\
# A 3x3 binomial blur, centred on its top-left tap.
description: test blur
scale: 1/16
origin: 0, 0
1 2 1   # comments may follow values
2 4 2

1 2 1
""")  # fmt: skip
    kernel = read_kernel_file(path)
    assert_array_equal(kernel.weights, BINOMIAL_3)
    assert kernel.origin == (-1, -1) and kernel.name == str(path)
    spec = parse_kernel_spec("[1 2 1; 2 4 2; 1 2 1]/16@origin=0,0")
    assert_array_equal(kernel.weights, spec.weights)
    assert kernel.origin == spec.origin


@pytest.mark.parametrize(
    "content",
    [
        "1 2 1\n2 4 2\n1 2 1\n",
        "1,2,1\n2,4,2\n1,2,1\n",
        "1 2 1; 2 4 2; 1 2 1\n",
        "1 2 1;\n2 4 2;\n1 2 1;\n",
        "[[1. 2. 1.]\n [2. 4. 2.]\n [1. 2. 1.]]\n",  # print(numpy array)
        "[[1, 2, 1],\n [2, 4, 2],\n [1, 2, 1]]\n",  # repr of a list
        "\ufeff1 2 1\r\n2 4 2\r\n1 2 1\r\n",  # BOM and Windows line ends
        "column: 1 2 1\nrow: 1 2 1\n",  # separable, given by its factors alone
        "3x3: 1,2,1\n     2,4,2\n     1,2,1\n",  # ImageMagick text in a file
    ],
)
def test_text_file_layouts(tmp_path, content):
    assert_array_equal(read_kernel_file(write(tmp_path, "k.txt", content)).weights, 16 * BINOMIAL_3)


def test_text_file_factors_are_kept_and_checked(tmp_path):
    good = write(tmp_path, "sep.kernel", "column: 1 2 1\nrow: 1 0 -1\n1 0 -1\n2 0 -2\n1 0 -1\n")
    kernel = read_kernel_file(good)
    assert_array_equal(kernel.factors[0], [1, 2, 1])
    assert_array_equal(kernel.weights, get_kernel("sobel-x").weights)
    bad = write(tmp_path, "bad.txt", "column: 1 2 1\nrow: 1 0 1\n1 0 -1\n2 0 -2\n1 0 -1\n")
    with pytest.raises(KernelError, match="does not equal the weights"):
        read_kernel_file(bad)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "no kernel in the file"),
        ("# only a comment\n\n", "no kernel in the file"),
        ("scale: 2\n", "no matrix rows"),
        ("size: 3\n1 2\n", "line 1: not a header"),  # the key is not quoted (see hostile tests)
        ("scale: 2\nscale: 3\n1 2\n", "line 2: scale given twice"),
        ("scale: half\n1 2\n", "scale not understood"),  # 'half' is no number: not quoted
        ("scale: 1/0\n1 2\n", "scale '1/0' divides by zero"),  # a mistyped number is
        ("origin: 0,5\n1 2\n", "centre column 5 is outside the 1x2 kernel"),
        ("column: 1 2\n1 2\n3 4\n", "give both column: and row:"),
        ("1 2\n3\n", "row 2 has 1 value but row 1 has 2"),
        ("1 2\n3 x\n", "'x' is not a number"),
        ("1 2\n3 NaN\n", "'NaN' is not a number"),
        (b"\xff\xfe1 2", "not UTF-8"),
    ],
)
def test_text_file_errors_name_the_file_and_the_problem(tmp_path, content, message):
    path = write(tmp_path, "k.txt", content)
    with pytest.raises(KernelError) as info:
        read_kernel_file(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(KernelError, match="no such kernel file"):
        read_kernel_file(tmp_path / "none.txt")
    with pytest.raises(KernelError, match="is a folder"):
        read_kernel_file(tmp_path)


def test_spec_forms_that_name_files(tmp_path, monkeypatch):
    write(tmp_path, "k.txt", "1 2 1\n2 4 2\n1 2 1\n")
    write(tmp_path, "plain", "1 -1\n")
    monkeypatch.chdir(tmp_path)
    for spec in ("k.txt@scale=!", "@k.txt@scale=!", f"{tmp_path / 'k.txt'}@scale=1/16"):
        assert_array_equal(parse_kernel_spec(spec).weights, BINOMIAL_3)
    assert_array_equal(parse_kernel_spec("plain").weights, [[1, -1]])  # any existing file
    write(tmp_path, "sobel-x", "1 2\n")
    assert parse_kernel_spec("sobel-x").shape == (3, 3)  # a kernel name is never shadowed


# ------------------------------------------------------------------- .npy and MATLAB files


def test_npy_file(tmp_path):
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "k.npy", weights)
    kernel = read_kernel_file(tmp_path / "k.npy")
    assert kernel.weights.dtype == np.float64
    assert_array_equal(kernel.weights, weights)
    np.save(tmp_path / "row.npy", np.array([1, -1]))
    assert_array_equal(parse_kernel_spec(str(tmp_path / "row.npy")).weights, [[1, -1]])


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((2, 2, 2)), "3-D"),
        (np.ones((2, 2), dtype=complex), "not real numbers"),
        (np.array([[1.0, np.nan]]), "finite"),
        (np.array([["a"]]), "not real numbers"),
    ],
)
def test_bad_npy_files(tmp_path, array, message):
    np.save(tmp_path / "k.npy", array)
    with pytest.raises(KernelError, match=message):
        read_kernel_file(tmp_path / "k.npy")


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "k.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(KernelError, match="not a readable .npy"):
        read_kernel_file(tmp_path / "k.npy")


def test_matlab_mat_file(tmp_path):
    scipy.io.savemat(tmp_path / "k.mat", {"h": np.array([[1.0, 2.0], [3.0, 4.0]])})
    assert_array_equal(read_kernel_file(tmp_path / "k.mat").weights, [[1, 2], [3, 4]])
    scipy.io.savemat(tmp_path / "two.mat", {"a": np.eye(2), "b": np.eye(3)})
    with pytest.raises(KernelError, match="exactly one 2-D numeric variable .found: a, b."):
        read_kernel_file(tmp_path / "two.mat")


# ----------------------------------------------------------------------- libvips .mat


def test_vips_mat_file_equals_the_inline_spec(tmp_path):
    path = write(tmp_path, "blur.mat", "3 3 16 0\n1 2 1\n2 4 2\n1 2 1\n")
    expected = parse_kernel_spec("[1 2 1; 2 4 2; 1 2 1]/16").weights
    assert_array_equal(read_kernel_file(path).weights, expected)
    with_offset = read_kernel_file(write(tmp_path, "o.mat", "2 1 2 128\n1 -1\n"))
    assert_array_equal(with_offset.weights, [[0.5, -0.5]])
    assert with_offset.offset == 128
    plain = read_kernel_file(write(tmp_path, "p.mat", "2, 2\n1 2\n3 4\n"))
    assert_array_equal(plain.weights, [[1, 2], [3, 4]]) and plain.offset == 0


@pytest.mark.parametrize(
    "content, message",
    [
        ("3\n1 2 3\n", "header must be 'width height [scale [offset]]'"),
        ("2 2 0\n1 2\n3 4\n", "scale is 0"),
        ("2 2\n1 2\n", "header says 2 rows, the file has 1"),
        ("2 2\n1 2 3\n4 5\n", "line 2: 3 values, the header says width 2"),
        ("0 2\n", "no taps"),
        ("2 1 1 x\n1 2\n", "libvips offset: 'x' is not a number"),
    ],
)
def test_bad_vips_mat_files(tmp_path, content, message):
    with pytest.raises(KernelError) as info:
        read_kernel_file(write(tmp_path, "k.mat", content))
    assert message in str(info.value)


@pytest.mark.skipif(shutil.which("vips") is None, reason="libvips command line not installed")
def test_vips_mat_file_means_what_libvips_conv_does(tmp_path):
    """libvips correlates (as written) with centre k//2, divides by scale and adds offset."""
    image = np.random.default_rng(3).integers(0, 50, (9, 10)).astype(float)
    lines = [f"{image.shape[1]} {image.shape[0]}"] + [" ".join(map(str, r)) for r in image]
    write(tmp_path, "image.mat", "\n".join(lines) + "\n")
    write(tmp_path, "k.mat", "2 3 4 10\n1 2\n-3 4\n5 0\n")
    subprocess.run(
        ["vips", "conv", "image.mat", "out.mat", "k.mat", "--precision", "float"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    vips_out = np.loadtxt(tmp_path / "out.mat", skiprows=1)
    kernel = read_kernel_file(tmp_path / "k.mat")
    ours = ndi.correlate(image, kernel.weights, origin=kernel.origin) + kernel.offset
    assert_allclose(ours[1:-1, 1:-1], vips_out[1:-1, 1:-1], rtol=1e-6)  # borders: own rules


# ------------------------------------------------------------------ the shipped kernels


def test_every_shipped_kernel_file_parses_with_a_description():
    folder = Path(kernels.__file__).resolve().parent.parent.parent / "kernels"
    files = sorted(folder.glob("*.txt"))
    assert len(files) >= 24
    assert {p.stem for p in files} <= {e.name for e in kernels.list_kernels()}
    for path in files:
        kernel = read_kernel_file(path)
        assert kernel.weights.sum() in (0, 1), path.name  # derivatives 0, smoothing 1
        text = path.read_text()
        assert "description:" in text


# ---------------------------------------------------------------------- fuzz the readers

LINES = st.one_of(
    st.sampled_from(
        [
            "1 2 1",
            "2 4 2",
            "3x3: 1 2 1 2 4 2 1 2 1",
            "scale: !",
            "scale: 1/0",
            "origin: 1,1",
            "column: 1 2",
            "row: 1 0 -1",
            "description: x",
            "# comment",
            "",
            "[[1, 2],",
            "[3, 4]]",
            "3 3 16 0",
            "2 2",
            "nan",
            "1e308 1e308",
            "scale: 1e308",
        ]
    ),  # fmt: skip
    st.text(alphabet="0123456789 .,;:[]#/-+xe!^%nascleorigw\t", max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(
    content=st.one_of(
        st.binary(max_size=120),
        st.lists(LINES, max_size=6).map(lambda lines: "\n".join(lines).encode()),
        st.binary(max_size=60).map(lambda tail: b"\x93NUMPY\x01\x00" + tail),
    ),
    extension=st.sampled_from([".txt", ".mat", ".npy", ".kernel", ""]),
)
def test_any_file_is_a_finite_kernel_or_a_kernel_error(tmp_path_factory, content, extension):
    path = tmp_path_factory.getbasetemp() / f"fuzz{extension}"
    path.write_bytes(content)
    try:
        kernel = read_kernel_file(path)
    except KernelError as err:
        assert err.path == str(path)
        return
    assert isinstance(kernel, Kernel)
    assert np.isfinite(kernel.weights).all()

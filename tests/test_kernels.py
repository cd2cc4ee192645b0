"""Kernels by example: each named kernel's matrix, builder identities, specs and compose.

References are hand-worked matrices and scipy.ndimage (float64), never convtool itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from convtool.errors import KernelError
from convtool.kernels import (
    MAX_KERNEL_SIDE,
    Kernel,
    binomial,
    box,
    builders,
    compose,
    dog,
    gaussian,
    get_kernel,
    identity,
    kirsch,
    laplacian,
    list_kernels,
    log,
    parse_kernel_spec,
    sharpen,
    specs,
    unsharp,
)

# ------------------------------------------------------------------ fixed kernels by hand

FIXED = {
    "identity": [[1]],
    "roberts-x": [[1, -1]],
    "roberts-y": [[1],
                  [-1]],
    "roberts-cross1": [[1,  0],
                       [0, -1]],
    "roberts-cross2": [[ 0, 1],
                       [-1, 0]],
    "sobel-x": [[1, 0, -1],
                [2, 0, -2],
                [1, 0, -1]],
    "sobel-y": [[ 1,  2,  1],
                [ 0,  0,  0],
                [-1, -2, -1]],
    "sobel-diag1": [[2,  1,  0],
                    [1,  0, -1],
                    [0, -1, -2]],
    "sobel-diag2": [[ 0,  1, 2],
                    [-1,  0, 1],
                    [-2, -1, 0]],
    "prewitt-x": [[1, 0, -1],
                  [1, 0, -1],
                  [1, 0, -1]],
    "prewitt-y": [[ 1,  1,  1],
                  [ 0,  0,  0],
                  [-1, -1, -1]],
    "scharr-x": [[ 3, 0,  -3],
                 [10, 0, -10],
                 [ 3, 0,  -3]],
    "scharr-y": [[ 3,  10,  3],
                 [ 0,   0,  0],
                 [-3, -10, -3]],
    "edge": [[ 1, 0, -1],
             [ 0, 0,  0],
             [-1, 0,  1]],
    "outline": [[-1, -1, -1],
                [-1,  8, -1],
                [-1, -1, -1]],
    "emboss": [[-2, -1, 0],
               [-1,  1, 1],
               [ 0,  1, 2]],
    # Stored for convolution: 180° rotations of the textbook (correlation) masks.
    "kirsch-n": [[-3, -3, -3],
                 [-3,  0, -3],
                 [ 5,  5,  5]],
    "kirsch-e": [[5, -3, -3],
                 [5,  0, -3],
                 [5, -3, -3]],
    "kirsch-se": [[ 5,  5, -3],
                  [ 5,  0, -3],
                  [-3, -3, -3]],
}  # fmt: skip

PARAMETRIC = {
    "laplacian": [[ 0, -1,  0],
                  [-1,  4, -1],
                  [ 0, -1,  0]],
    "laplacian:8": [[-1, -1, -1],
                    [-1,  8, -1],
                    [-1, -1, -1]],
    "sharpen": [[ 0, -1,  0],
                [-1,  5, -1],
                [ 0, -1,  0]],
    "sharpen:amount=2,neighbours=8": [[-1, -1, -1],
                                      [-1,  9, -1],
                                      [-1, -1, -1]],
    "sharpen:amount=1": [[ 0, -1,  0],
                         [-1,  4, -1],
                         [ 0, -1,  0]],
    "binomial:3": np.array([[1, 2, 1],
                            [2, 4, 2],
                            [1, 2, 1]]) / 16,
    "binomial:5": np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256,
    "binomial:1": [[1]],
    "box": np.full((3, 3), 1 / 9),
    "box:3x5": np.full((3, 5), 1 / 15),
    "box:2": np.full((2, 2), 1 / 4),
}  # fmt: skip


@pytest.mark.parametrize("spec, matrix", {**FIXED, **PARAMETRIC}.items())
def test_named_kernel_matrix(spec, matrix):
    assert_allclose(get_kernel(spec).weights, matrix, rtol=1e-15, atol=0)


@pytest.mark.parametrize("direction", ["n", "ne", "e", "se", "s", "sw", "w", "nw"])
def test_kirsch_directions_are_the_ring_rotated_by_45_degrees(direction):
    ring = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]
    north = get_kernel("kirsch-n").weights
    steps = ["n", "ne", "e", "se", "s", "sw", "w", "nw"].index(direction)
    mask = get_kernel(f"kirsch:{direction}").weights
    # Turning the compass clockwise by 45° moves every border weight one cell clockwise.
    for i, cell in enumerate(ring):
        assert mask[ring[(i + steps) % 8]] == north[cell]
    assert mask[1, 1] == 0 and mask.sum() == 0
    assert_array_equal(kirsch(direction).weights, mask)


def test_every_separable_kernel_is_the_outer_product_of_its_factors():
    separable = 0
    for entry in list_kernels():
        kernel = get_kernel(entry.name)
        if kernel.factors is not None:
            separable += 1
            assert_allclose(np.outer(*kernel.factors), kernel.weights, rtol=1e-15)
    assert separable >= 10  # box, gaussian, binomial, sobel/prewitt/scharr x and y, ...
    column, row = get_kernel("sobel-x").factors
    assert_array_equal(column, [1, 2, 1])
    assert_array_equal(row, [1, 0, -1])


# ------------------------------------------------------------------ sign conventions


def _step(direction: tuple[int, int], size: int = 9) -> np.ndarray:
    """An image that rises (0 -> 1) along ``direction`` = (down, right) through its centre."""
    rows, cols = np.indices((size, size)) - size // 2
    return (direction[0] * rows + direction[1] * cols > 0).astype(float)


@pytest.mark.parametrize(
    "name, direction",
    [
        ("sobel-x", (0, 1)), ("prewitt-x", (0, 1)), ("scharr-x", (0, 1)), ("roberts-x", (0, 1)),
        ("sobel-y", (1, 0)), ("prewitt-y", (1, 0)), ("scharr-y", (1, 0)), ("roberts-y", (1, 0)),
        ("sobel-diag1", (1, 1)), ("roberts-cross1", (1, 1)),
        ("sobel-diag2", (1, -1)), ("roberts-cross2", (1, -1)),
    ],
)  # fmt: skip
def test_derivatives_are_positive_where_intensity_rises(name, direction):
    kernel = get_kernel(name)
    image = _step(direction)
    rising = ndi.convolve(image, kernel.weights, mode="nearest")
    falling = ndi.convolve(1 - image, kernel.weights, mode="nearest")
    assert rising.max() > 0 and rising.min() == 0
    assert falling.min() < 0 and falling.max() == 0


@pytest.mark.parametrize(
    "direction, bright",
    [("n", (-1, 0)), ("ne", (-1, 1)), ("e", (0, 1)), ("se", (1, 1)),
     ("s", (1, 0)), ("sw", (1, -1)), ("w", (0, -1)), ("nw", (-1, -1))],
)  # fmt: skip
def test_kirsch_answers_most_to_the_edge_whose_bright_side_it_names(direction, bright):
    image = _step(bright)
    centre = image.shape[0] // 2
    responses = {
        d: ndi.convolve(image, get_kernel(f"kirsch-{d}").weights)[centre, centre]
        for d in ["n", "ne", "e", "se", "s", "sw", "w", "nw"]
    }
    assert max(responses, key=responses.get) == direction


# --------------------------------------------------------------------------- builders


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.7, 3.0])
def test_gaussian_matches_scipy_gaussian_filter(sigma):
    kernel = gaussian(sigma)
    radius = kernel.shape[0] // 2
    assert kernel.shape[0] == 2 * int(np.ceil(3 * sigma)) + 1
    impulse = np.zeros(kernel.shape)
    impulse[radius, radius] = 1
    # scipy's radius is int(truncate * sigma + 0.5); truncate = radius / sigma gives ours.
    expected = ndi.gaussian_filter(impulse, sigma, truncate=radius / sigma, mode="constant")
    assert_allclose(kernel.weights, expected, rtol=1e-12, atol=1e-17)
    assert kernel.sum == pytest.approx(1.0, abs=1e-15)


def test_gaussian_with_explicit_size_and_spec_forms_agree():
    expected = gaussian(sigma=2, size=9)
    assert expected.shape == (9, 9) and expected.name == "gaussian:sigma=2,size=9"
    for spec in ("gaussian:sigma=2,size=9", "gaussian:2,size=9", "gaussian:size=9,sigma=2"):
        assert_array_equal(get_kernel(spec).weights, expected.weights)
    assert get_kernel("gaussian:2").name == "gaussian:sigma=2"
    assert get_kernel("gaussian").shape == (7, 7)


def test_binomial_three_applied_twice_is_binomial_five():
    twice = compose(binomial(3), 2)
    assert_array_equal(twice.weights, binomial(5).weights)
    assert twice.factors is not None


def test_binomial_is_correct_where_pascal_numbers_overflow_floats():
    row = get_kernel("binomial:1025").factors[1]
    assert row.sum() == pytest.approx(1.0)
    assert row[512] == pytest.approx(np.sqrt(2 / (np.pi * 1024)), rel=1e-3)  # central limit


def test_box_sums_to_one_and_keeps_factors():
    kernel = box(3, 5)
    assert kernel.shape == (3, 5) and kernel.sum == pytest.approx(1)
    assert_array_equal(np.outer(*kernel.factors), kernel.weights)
    assert_array_equal(get_kernel("box:3x5").weights, kernel.weights)
    assert_array_equal(get_kernel("box:size=3x5").weights, kernel.weights)


@pytest.mark.parametrize("amount", [0.0, 0.5, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("neighbours", [4, 8])
def test_sharpen_is_laplacian_plus_amount_minus_one_identity(amount, neighbours):
    kernel = sharpen(amount, neighbours)
    delta = np.zeros((3, 3))
    delta[1, 1] = 1
    assert_allclose(kernel.weights, laplacian(neighbours).weights + (amount - 1) * delta)
    assert kernel.sum == pytest.approx(amount - 1)


def test_laplacian_8_is_outline_and_sharpen_1_is_laplacian():
    assert_array_equal(laplacian(8).weights, get_kernel("outline").weights)
    assert_array_equal(sharpen(amount=1).weights, laplacian().weights)


@pytest.mark.parametrize("sigma", [0.8, 1.0, 2.0])
def test_log_is_minus_scipy_gaussian_laplace_made_zero_sum(sigma):
    kernel = log(sigma)
    radius = kernel.shape[0] // 2
    assert radius == int(np.ceil(4 * sigma))
    impulse = np.zeros(kernel.shape)
    impulse[radius, radius] = 1
    scipy_log = ndi.gaussian_laplace(impulse, sigma, truncate=radius / sigma, mode="constant")
    assert_allclose(kernel.weights, scipy_log.mean() - scipy_log, atol=1e-14)
    assert kernel.sum == pytest.approx(0, abs=1e-14)
    assert kernel.weights[radius, radius] == kernel.weights.max() > 0  # the Laplacian's sign


def test_dog_is_the_difference_of_two_gaussians_on_one_grid():
    kernel = dog(1, 2)
    assert kernel.shape == (13, 13)
    assert_allclose(kernel.weights, gaussian(1, 13).weights - gaussian(2, 13).weights)
    assert kernel.sum == pytest.approx(0, abs=1e-15)
    with pytest.raises(KernelError, match="sigma1 and sigma2 must differ"):
        dog(2, 2)


def test_unsharp_is_identity_plus_amount_times_identity_minus_gaussian():
    kernel = unsharp(sigma=1, amount=0.7)
    delta = np.zeros((7, 7))
    delta[3, 3] = 1
    assert_allclose(kernel.weights, delta + 0.7 * (delta - gaussian(1).weights), atol=1e-16)
    assert kernel.sum == pytest.approx(1)


def test_identity_is_one_tap():
    assert_array_equal(identity().weights, [[1]])


# ------------------------------------------------------------------------- the Kernel


def test_normalized_divides_by_the_sum():
    kernel = get_kernel("[1 2 1; 2 4 2; 1 2 1]").normalized()
    assert_array_equal(kernel.weights, binomial(3).weights)


def test_normalized_zero_sum_kernel_has_positives_one_and_negatives_minus_one():
    kernel = get_kernel("sobel-x").normalized()
    assert_array_equal(kernel.weights, get_kernel("sobel-x").weights / 4)
    assert kernel.factors is not None
    w = kernel.weights
    assert w[w > 0].sum() == 1 and w[w < 0].sum() == -1


def test_normalized_negative_sum_and_all_zero():
    assert_array_equal(get_kernel("-1 -3").normalized().weights, [[0.25, 0.75]])
    with pytest.raises(KernelError, match="all its weights are 0"):
        get_kernel("0 0; 0 0").normalized()


def test_flipped_correlates_as_the_original_convolves():
    kernel = Kernel(np.arange(12.0).reshape(3, 4), "ramp", origin=(1, -1))
    image = np.random.default_rng(1).random((12, 13))
    flipped = kernel.flipped()
    assert_array_equal(flipped.weights, kernel.weights[::-1, ::-1])
    assert_allclose(
        ndi.correlate(image, flipped.weights, origin=flipped.origin),
        ndi.convolve(image, kernel.weights, origin=kernel.origin),
    )


def test_kernel_is_immutable_and_replace_revalidates():
    kernel = get_kernel("sobel-x")
    with pytest.raises(ValueError):
        kernel.weights[0, 0] = 5
    assert kernel.shape == (3, 3) and kernel.size == 9 and kernel.is_separable
    with pytest.raises(KernelError, match="origin 2 on rows"):
        dataclasses.replace(kernel, origin=(2, 0))


@pytest.mark.parametrize(
    "weights, message",
    [
        ([[1, np.nan]], "finite"),
        ([[1, np.inf]], "finite"),
        (np.zeros((2, 2, 2)), "2-D"),
        (np.zeros((0, 3)), "no taps"),
        (np.zeros((1, MAX_KERNEL_SIDE + 1)), "limit of 1025"),
        ([[1 + 1j]], "real numbers"),
        ([[1, 2], [3]], "rectangular"),
    ],
)
def test_invalid_weights_are_kernel_errors(weights, message):
    with pytest.raises(KernelError, match=message):
        Kernel(weights)


def test_factors_must_multiply_to_the_weights():
    with pytest.raises(KernelError, match="does not equal the weights"):
        Kernel([[1, 2], [3, 4]], factors=([1, 1], [1, 2]))


def test_get_kernel_accepts_kernels_arrays_lists_and_paths(tmp_path):
    kernel = get_kernel("sobel-x")
    assert get_kernel(kernel) is kernel
    assert_array_equal(get_kernel(np.eye(2)).weights, np.eye(2))
    assert_array_equal(get_kernel([1, -1]).weights, [[1, -1]])
    path = tmp_path / "k.txt"
    path.write_text("1 2\n3 4\n")
    assert_array_equal(get_kernel(path).weights, [[1, 2], [3, 4]])


# ------------------------------------------------------------------------ spec grammar

VALID_SPECS = {
    "box:5": np.full((5, 5), 1 / 25),
    "Box:3X5": np.full((3, 5), 1 / 15),
    "laplacian:8": FIXED["outline"],
    "laplacian:neighbours=8": FIXED["outline"],
    "SOBEL_X": FIXED["sobel-x"],
    "sharpen:amount=1.5": [[0, -1, 0], [-1, 4.5, -1], [0, -1, 0]],
    "sharpen: amount = 3 , neighbours = 8": [[-1, -1, -1], [-1, 10, -1], [-1, -1, -1]],
    "[1 2 1; 2 4 2; 1 2 1]/16": PARAMETRIC["binomial:3"],
    "1 -1": [[1, -1]],
    "[1,2;3,4]": [[1, 2], [3, 4]],
    "  [1,2;3,4]*0.5 ": [[0.5, 1], [1.5, 2]],
    "sobel-x@scale=^": np.array(FIXED["sobel-x"]) / 4,
    "box:2@scale=4": np.ones((2, 2)),
    "binomial@scale=50%": PARAMETRIC["binomial:3"] / 2,
}


@pytest.mark.parametrize("spec, matrix", VALID_SPECS.items())
def test_valid_spec(spec, matrix):
    assert_allclose(parse_kernel_spec(spec).weights, matrix, rtol=1e-15)


INVALID_SPECS = {
    "gauss": "did you mean gaussian",
    "sobel": "did you mean",
    "zzzz": "unknown kernel 'zzzz'; known: binomial, box",
    "gaussian:sigm=2": "unknown parameter 'sigm'; did you mean sigma",
    "gaussian:sigma=0": "sigma must be a number > 0, got '0'",
    "gaussian:sigma=abc": "sigma must be a number > 0, got 'abc'",
    "gaussian:sigma=1e999": "sigma must be a number > 0",
    "gaussian:size=4": "size must be an odd integer from 1 to 1025, got '4'",
    "gaussian:sigma=1,sigma=2": "sigma given twice",
    "gaussian:2,sigma=2": "sigma given twice",
    "gaussian:2,9": "'9' needs a name",
    "gaussian:": "nothing after ':'",
    "gaussian:2,": "empty parameter",
    "gaussian:200": "needs more than 1025 taps",
    "binomial:4": "size must be an odd integer",
    "box:0": "size must be N or HxW",
    "box:3x": "size must be N or HxW",
    "box:2000": "from 1 to 1025",
    "laplacian:6": "neighbours must be 4 or 8, got '6'",
    "sharpen:amount=-1": "amount must be a number >= 0",
    "kirsch:up": "direction must be n or ne or e",
    "sobel-x:3": "fixed kernel and takes no parameters",
    "sobel-x@size=3": "unknown kernel modifier '@size=3'",
    "sobel-x@scale=!!": "scale '!!' not understood",
    "box@origin=3,0": "centre row 3 is outside the 3x3 kernel",
    "[1 2; 3]": "row 2 has 1 value but row 1 has 2",
    "1 two": "'two' is not a number",
    "": "empty kernel spec",
    "   ": "empty kernel spec",
    "[]": "it is empty",
    "1 2;;3 4": "row 2 is empty",
    "nan 1": "'nan 1' is not a kernel name, matrix or file",
    "1 nan": "'nan' is not a number",
    "1 inf": "'inf' is not a number",
    "1e400 1": "'1e400' is too large",
    "[1 2]/0": "division by zero",
    "[1 2": "unbalanced brackets",
    "no/such/file": "no such kernel file",
    "missing.npy": "no such kernel file",
    "@": "'@' must be followed by a kernel file name",
}


@pytest.mark.parametrize("spec, message", INVALID_SPECS.items())
def test_invalid_spec_names_the_bad_part(spec, message):
    with pytest.raises(KernelError) as info:
        parse_kernel_spec(spec)
    assert message in str(info.value)


def test_builders_check_their_arguments_like_specs():
    with pytest.raises(KernelError, match="gaussian: sigma must be a number > 0, got -1"):
        gaussian(-1)
    with pytest.raises(KernelError, match="box: size must be N or HxW"):
        box(2.5)
    with pytest.raises(KernelError, match="laplacian: neighbours must be 4 or 8"):
        laplacian(6)


def test_kernel_names_are_canonical_specs_that_parse_back():
    for spec in ("gaussian:2", "box:3X5", "sharpen:1.5", "binomial:5@scale=2", "dog:1,sigma2=3"):
        kernel = get_kernel(spec)
        assert_array_equal(get_kernel(kernel.name).weights, kernel.weights)
    assert get_kernel("box:3x5").name == "box:size=3x5"
    assert get_kernel("sharpen:amount=2").name == "sharpen"


SPEC_ALPHABET = "0123456789 .,;:[]/*+-xXe@=!^%nabgilosuchpmrwkyz_'\n"


@pytest.mark.usefixtures("empty_folder")
@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.text(alphabet=SPEC_ALPHABET, max_size=40),
        st.builds(
            "{}:{}".format,
            st.sampled_from(sorted(builders.BUILDERS) + ["sobel-x", "3x3", "2", "1x2+1+0"]),
            st.text(alphabet=SPEC_ALPHABET, max_size=25),
        ),
    )
)
def test_any_text_is_a_finite_kernel_or_a_kernel_error(text):
    try:
        kernel = parse_kernel_spec(text)
    except KernelError:
        return
    assert isinstance(kernel, Kernel)
    assert np.isfinite(kernel.weights).all()


# ---------------------------------------------------------------------------- compose


def _apply(image, kernel, times=1, correlate=False):
    run = ndi.correlate if correlate else ndi.convolve
    for _ in range(times):
        image = run(image, kernel.weights, origin=kernel.origin, mode="constant")
    return image


def _image_with_margin(margin=12, inner=9, seed=0):
    image = np.zeros((inner + 2 * margin, inner + 3 * margin))
    image[margin:-margin, margin : -2 * margin] = np.random.default_rng(seed).random((inner, inner))
    return image


@pytest.mark.parametrize("correlate", [False, True])
@pytest.mark.parametrize(
    "spec, n",
    [("laplacian", 3), ("roberts-x", 2), ("roberts-cross1", 3), ("sobel-diag1", 2),
     ("3x3+0+2: 1 2 3 4 5 6 7 8 9", 2), ("[1 2; 3 4; 5 6]@origin=0,1", 3), ("box:2x3", 4)],
)  # fmt: skip
def test_compose_equals_applying_n_times(spec, n, correlate):
    kernel = get_kernel(spec)
    once = compose(kernel, n)
    assert once.shape == tuple((k - 1) * n + 1 for k in kernel.shape)
    image = _image_with_margin()
    assert_allclose(
        _apply(image, once, correlate=correlate),
        _apply(image, kernel, n, correlate=correlate),
        atol=1e-12,
    )


def test_compose_roberts_twice_by_hand():
    twice = compose(get_kernel("roberts-x"), 2)
    assert_array_equal(twice.weights, [[1, -2, 1]])
    assert twice.origin == (0, 1)  # centre at index 2 = 2 x (centre index 1 of [1 -1])


def test_compose_by_spectra_matches_shifted_adds(monkeypatch):
    direct = compose(get_kernel("3x3: 1 2 0 -1 3 1 0 1 -2"), 12)
    monkeypatch.setattr(specs, "_DIRECT_COMPOSE_WORK", 0)
    spectral = compose(get_kernel("3x3: 1 2 0 -1 3 1 0 1 -2"), 12)
    assert_array_equal(spectral.weights, direct.weights)  # integers: rounded back exactly
    smooth = get_kernel("unsharp")
    assert_allclose(compose(smooth, 5).weights, _apply_full(smooth.weights, 5), atol=1e-12)


def _apply_full(weights, n):
    """n-fold full convolution via scipy, as the reference for compose."""
    side = [(k - 1) * n + 1 for k in weights.shape]
    impulse = np.zeros(side)
    impulse[side[0] // 2, side[1] // 2] = 1
    for _ in range(n):
        impulse = ndi.convolve(impulse, weights, mode="constant")
    return impulse


def test_compose_offset_and_limits():
    kernel = Kernel([[2.0]], "double", offset=1.0)
    assert compose(kernel, 3).offset == 1 + 2 + 4
    with pytest.raises(KernelError, match="above the limit of 1025"):
        compose(gaussian(3), 100)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(KernelError, match="n must be a whole number >= 1"):
            compose(kernel, bad)
    assert compose(kernel, 1) is kernel


# ---------------------------------------------------------------------------- listing


def test_list_kernels_names_sizes_parameters_and_descriptions():
    entries = {e.name: e for e in list_kernels()}
    expected = set(FIXED) | {
        "box", "gaussian", "binomial", "laplacian", "sharpen", "kirsch", "log", "dog",
        "unsharp", "kirsch-ne", "kirsch-s", "kirsch-sw", "kirsch-w", "kirsch-nw",
    }  # fmt: skip
    assert expected <= set(entries)
    assert all(e.description for e in entries.values())
    assert entries["sobel-x"].size == "3x3" and entries["sobel-x"].params == ""
    assert entries["roberts-x"].size == "1x2"
    assert entries["gaussian"].params == "sigma=1, size=2*ceil(3*sigma)+1"
    assert entries["gaussian"].size == "2*ceil(3*sigma)+1 (7x7)"
    assert entries["sharpen"].params == "amount=2, neighbours=4"
    sigma = entries["gaussian"].parameters[0]
    assert (sigma.name, sigma.kind, sigma.allowed()) == ("sigma", "float", "a number > 0")
    for name in entries:
        get_kernel(name)

"""What travels beside the filtered channels lands where the filtered channels land.

Alpha (``--alpha carry``, and the output alpha of ``--alpha weighted``) and the channels
``--channels`` leaves unfiltered are moved by :func:`convtool.engine.carry`. Each output
pixel must take the input value it stands on, and "stands on" is checked here against the
filter itself, in two independent ways, for every padding × odd/even side × convolution or
correlation × stride × dilation × origin:

- a kernel that is all zeros but a 1 at its centre tap (``K//2 + origin`` as written, on
  the dilated side K), filtered by the engine, copies the pixel each output stands on;
- a filtered output pixel equals the unstrided same-size output at the carried position.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from convtool import engine
from convtool.cli import app
from convtool.padding import Padding
from convtool.pipeline import Chain, FilterOptions, parse_steps

H, W = 15, 17
SHAPES = [(3, 3), (2, 2), (4, 3), (2, 5), (1, 4)]


def coordinates(h: int = H, w: int = W) -> np.ndarray:
    """Two channels holding each pixel's row and column, plus one (0 means outside)."""
    rows, cols = np.mgrid[0:h, 0:w].astype(float)
    return np.stack([rows + 1, cols + 1])


def spans(shape, dilation):
    return tuple((k - 1) * dilation + 1 for k in shape)


def origins_for(shape, dilation, padding):
    """(0, 0) and, where the padding allows one, the lowest and the highest origin."""
    sides = spans(shape, dilation)
    if not Padding(padding).keeps_size:
        return [(0, 0)]
    return [(0, 0), tuple(-(k // 2) for k in sides), tuple((k - 1) // 2 for k in sides)]


def centre_delta(shape, dilation, origin) -> np.ndarray:
    """A dense kernel of the dilated side, 1 at its centre tap (as written), 0 elsewhere."""
    sides = spans(shape, dilation)
    delta = np.zeros(sides)
    delta[tuple(k // 2 + o for k, o in zip(sides, origin, strict=True))] = 1.0
    return delta


CASES = [
    (padding, shape, convolve, stride, dilation, origin)
    for padding in [p.value for p in Padding]
    for shape in SHAPES
    for convolve in (True, False)
    for stride in (1, 2, 3)
    for dilation in (1, 2, 3)
    for origin in origins_for(shape, dilation, padding)
]


def case_id(case):
    padding, shape, convolve, stride, dilation, origin = case
    mode = "conv" if convolve else "corr"
    return f"{padding}-{shape[0]}x{shape[1]}-{mode}-s{stride}-d{dilation}-o{origin[0]},{origin[1]}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_carry_is_the_centre_tap_of_the_filter(case):
    padding, shape, convolve, stride, dilation, origin = case
    options = dict(padding=padding, stride=stride, origin=origin)
    x = coordinates()
    carried = engine.carry(x, np.ones(shape), convolve=convolve, dilation=dilation, **options)
    # The same window on the dilated side, written densely (dilation 1): its centre tap
    # sits on the output pixel, in convolution and correlation alike.
    run = engine.convolve if convolve else engine.correlate
    expected = run(x, centre_delta(shape, dilation, origin), method="direct", **options)
    np.testing.assert_array_equal(carried, expected)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_filtered_pixel_is_the_same_size_result_where_carry_puts_it(case, rng):
    padding, shape, convolve, stride, dilation, origin = case
    x = rng.uniform(-1, 1, (H, W))
    kernel = rng.uniform(-1, 1, shape)
    run = engine.convolve if convolve else engine.correlate
    options = dict(padding=padding, dilation=dilation, origin=origin)
    filtered = run(x, kernel, stride=stride, **options)
    # full reads zeros beyond the image, valid nothing: both agree with zero padding
    keeps_size = Padding(padding).keeps_size
    same_size = run(x, kernel, **(options | {"padding": padding if keeps_size else "zero"}))
    rows, cols = engine.carry(coordinates(), kernel, convolve=convolve, stride=stride, **options)
    assert rows.shape == filtered.shape
    inside = (rows > 0) & (cols > 0)
    assert inside.all() or padding == "full"  # full adds a ring beyond the image
    picked = same_size[rows[inside].astype(int) - 1, cols[inside].astype(int) - 1]
    np.testing.assert_allclose(filtered[inside], picked, rtol=1e-12, atol=1e-12)


def test_pooling_carries_the_window_centre(rng):
    # An average pool is a correlation with a box over valid windows: unfiltered channels
    # take the same-size box result's position, the window's centre (index size // 2).
    x = rng.uniform(-1, 1, (H, W, 1))
    out, _ = Chain(parse_steps(["avgpool:4x3,stride=3x2"]), channels="0").apply(
        np.concatenate([x, coordinates().transpose(1, 2, 0)], axis=-1)
    )
    rows, cols = out[..., 1].astype(int) - 1, out[..., 2].astype(int) - 1
    box = engine.correlate(x[..., 0], np.full((4, 3), 1 / 12), padding="zero")
    np.testing.assert_allclose(out[..., 0], box[rows, cols], rtol=1e-12)
    assert (rows[0, 0], cols[0, 0]) == (2, 1)


def step_by_step(specs, array, options: FilterOptions):
    """The reference: each kernel step as its centre delta, each pool as its centre pick."""
    for step in parse_steps(specs):
        if hasattr(step, "kind"):
            delta = np.zeros(step.size)
            delta[tuple(k // 2 for k in step.size)] = 1.0
            array = engine.correlate(array, delta, padding="valid", stride=step.stride)
            continue
        kernel = step.kernel if hasattr(step, "kernel") else step.kx
        run = engine.correlate if options.correlate else engine.convolve
        delta = centre_delta(kernel.shape, options.dilation, kernel.origin)
        array = run(array, delta, padding=options.padding, stride=options.stride,
                    origin=kernel.origin, method="direct")  # fmt: skip
    return array


CHAINS = [
    ["box:2", "grad:roberts", "[1 2 3 4]"],
    ["box:4x3", "maxpool:2", "sobel-x"],
    ["[1 2; 3 4]@origin=0,1", "avgpool:3x2,stride=1x2", "box:2"],
]


# An origin has no meaning with valid or full padding (refused): that chain runs same-size.
CHAIN_PADDINGS = [
    (specs, padding)
    for specs in CHAINS
    for padding in ["reflect", "zero", "valid", "full"]
    if "@origin" not in specs[0] or padding in ("reflect", "zero")
]


@pytest.mark.parametrize(("specs", "padding"), CHAIN_PADDINGS, ids=lambda v: str(v))
@pytest.mark.parametrize("correlate", [False, True])
@pytest.mark.parametrize(("stride", "dilation"), [(1, 1), (2, 1), (1, 2), (1, 3)])
def test_chains_carry_alpha_and_unfiltered_channels_step_by_step(
    specs, padding, correlate, stride, dilation, rng
):
    options = FilterOptions(padding=padding, correlate=correlate, stride=stride,
                            dilation=dilation)  # fmt: skip
    h, w = 40, 44
    coords = coordinates(h, w)
    pixels = np.concatenate([rng.uniform(0, 1, (h, w, 1)), coords.transpose(1, 2, 0)], axis=-1)
    expected = step_by_step(specs, coords, options)
    for mode in ("carry", "weighted"):
        chain = Chain(parse_steps(specs), options, alpha_mode=mode, channels="0")
        out, alpha = chain.apply(pixels, coords[1].copy())
        np.testing.assert_array_equal(out[..., 1:].transpose(2, 0, 1), expected)
        if not any("pool" in spec for spec in specs):  # a pool pools alpha
            np.testing.assert_array_equal(alpha, expected[1])


# ------------------------------------------------------------- the cases of issue 11


def run_chain(specs, pixels, alpha, **options):
    return Chain(parse_steps(specs), FilterOptions(**options)).apply(pixels, alpha)


def test_true_convolution_keeps_a_1d_alpha_ramp_in_place():
    ramp = np.arange(0, 70, 10, dtype=float)[None]
    _, alpha = run_chain(["[1 1]"], ramp[..., None], ramp.copy())
    assert alpha.tolist() == [[0, 10, 20, 30, 40, 50, 60]]


def test_strided_even_kernel_keeps_every_second_alpha():
    alpha = np.arange(9 * 10, dtype=float).reshape(9, 10)
    out, carried = run_chain(["box:4x3"], alpha[..., None], alpha, padding="reflect", stride=2)
    np.testing.assert_array_equal(carried, alpha[::2, ::2])
    assert carried.shape == out.shape[:2]


def test_correlation_with_dilated_2x2_keeps_alpha_in_place():
    alpha = np.arange(8 * 9, dtype=float).reshape(8, 9)
    _, carried = run_chain(["box:2"], alpha[..., None], alpha, correlate=True, dilation=2)
    np.testing.assert_array_equal(carried, alpha)


@pytest.mark.parametrize(("correlate", "crop"), [(False, np.s_[1:-2]), (True, np.s_[2:-1])])
def test_valid_even_kernel_with_dilation_3_crops_alpha_like_the_colour(correlate, crop, rng):
    # 2 taps dilated by 3 span 4 pixels; the output stands on the window's pixel 2 when
    # correlating and, mirrored, on pixel 1 when convolving: valid crops there.
    alpha = np.arange(12 * 13, dtype=float).reshape(12, 13)
    pixels = rng.uniform(0, 1, (12, 13, 1))
    options = dict(dilation=3, correlate=correlate)
    out, carried = run_chain(["[1 2; 3 4]"], pixels, alpha, padding="valid", **options)
    same_size, _ = run_chain(["[1 2; 3 4]"], pixels, None, padding="zero", **options)
    np.testing.assert_allclose(out, same_size[crop, crop], rtol=1e-12)
    np.testing.assert_array_equal(carried, alpha[crop, crop])


runner = CliRunner()


def cli_png(tmp_path, values: np.ndarray, *args) -> np.ndarray:
    source, target = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(values).save(source)
    result = runner.invoke(app, ["filter", str(source), "-o", str(target), *args])
    assert result.exit_code == 0, result.output
    return np.asarray(Image.open(io.BytesIO(target.read_bytes())))


def test_opaque_rgba_stays_opaque_through_box_2_with_zero_padding(tmp_path, rng):
    rgba = rng.integers(0, 256, (10, 12, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    out = cli_png(tmp_path, rgba, "-k", "box:2", "--padding", "zero")
    assert (out[..., 3] == 255).all()


def test_roberts_x_keeps_alpha_in_its_first_column(tmp_path, rng):
    rgba = rng.integers(0, 256, (10, 12, 4), dtype=np.uint8)
    rgba[..., 3] = np.arange(12, dtype=np.uint8) * 20 + 10
    out = cli_png(tmp_path, rgba, "-k", "roberts-x")
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])


def test_channels_left_alone_do_not_move(tmp_path, rng):
    rgb = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    out = cli_png(tmp_path, rgb, "-k", "box:2", "--channels", "R,G")
    np.testing.assert_array_equal(out[..., 2], rgb[..., 2])

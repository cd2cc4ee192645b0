"""Filter banks (--stack) and layer kernels (3-D/4-D .npy weights, --groups, --bias).

PyTorch's conv2d is the oracle: live when torch is installed, and always through the table
it made once (tests/torch_reference/, with the script that wrote it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from convtool import engine
from convtool.cli import app
from convtool.errors import KernelError, UsageError
from convtool.kernels import LayerKernel, read_bias_file
from convtool.pipeline import Chain, FilterOptions, LayerStep, parse_steps, with_layer_options

CASES = json.loads((Path(__file__).parent / "torch_reference" / "conv_cases.json").read_text())
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def layer_apply(x, weights, *, bias=None, groups=None, **options):
    """Our layer step on a (C, H, W) array, under --correlate (PyTorch's convention)."""
    step = LayerStep(LayerKernel(np.asarray(weights, float), "w.npy", bias, groups))
    return step.apply(np.asarray(x, float), FilterOptions(correlate=True, **options))


# ------------------------------------------------------------------------------ against torch


@pytest.mark.parametrize(
    "case",
    CASES["layers"],
    ids=lambda c: (
        f"{c['convtool_padding']}-w{'x'.join(map(str, np.shape(c['weights'])))}-g{c['groups']}"
        f"-s{c['stride']}-d{c['dilation']}"
    ),
)
def test_layer_equals_stored_conv2d(case):
    out = layer_apply(
        case["input"],
        case["weights"],
        bias=np.array(case["bias"]),
        padding=case["convtool_padding"],
        stride=case["stride"],
        dilation=case["dilation"],
    )
    np.testing.assert_allclose(out, case["expected"], atol=1e-9)


@pytest.mark.parametrize(
    "case",
    CASES["layers_transposed"],
    ids=lambda c: (
        f"w{'x'.join(map(str, np.shape(c['weights'])))}-g{c['groups']}-s{c['stride']}"
        f"-d{c['dilation']}"
    ),
)
def test_transposed_layer_equals_stored_conv_transpose2d(case):
    out = layer_apply(
        case["input"],
        case["weights"],
        bias=np.array(case["bias"]),
        groups=case["groups"],
        padding="valid",
        stride=case["stride"],
        dilation=case["dilation"],
        transposed=True,
    )
    np.testing.assert_allclose(out, case["expected"], atol=1e-9)


@pytest.mark.parametrize("case", CASES["separable"], ids=lambda c: f"{np.shape(c['input'])}")
def test_depthwise_then_pointwise_chain_equals_stored_torch(case, tmp_path):
    np.save(tmp_path / "dw.npy", np.array(case["depthwise"]))
    np.save(tmp_path / "pw.npy", np.array(case["pointwise"]))
    np.save(tmp_path / "b1.npy", np.array(case["depthwise_bias"]))
    (tmp_path / "b2.txt").write_text(" ".join(str(v) for v in case["pointwise_bias"]))
    steps = with_layer_options(
        parse_steps([str(tmp_path / "dw.npy"), str(tmp_path / "pw.npy")]),
        [],
        [str(tmp_path / "b1.npy"), str(tmp_path / "b2.txt")],
    )
    chain = Chain(steps, FilterOptions(correlate=True, padding="zero", method="direct"))
    out, _ = chain.apply(np.moveaxis(np.array(case["input"], float), 0, -1))
    np.testing.assert_allclose(np.moveaxis(out, -1, 0), case["expected"], atol=1e-9)


@pytest.mark.parametrize("groups,c_in,c_out", [(1, 3, 4), (3, 3, 3), (3, 3, 6), (2, 4, 2)])
@pytest.mark.parametrize(
    "padding,torch_mode",
    [("zero", "constant"), ("reflect", "reflect"), ("edge", "replicate"), ("wrap", "circular")],
)
def test_layer_equals_live_conv2d(groups, c_in, c_out, padding, torch_mode, rng):
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    x = rng.normal(size=(c_in, 9, 10))
    w, bias = rng.normal(size=(c_out, c_in // groups, 3, 3)), rng.normal(size=c_out)
    padded = f.pad(torch.tensor(x)[None], (1, 1, 1, 1), mode=torch_mode)
    expected = f.conv2d(padded, torch.tensor(w), torch.tensor(bias), groups=groups)[0].numpy()
    out = layer_apply(x, w, bias=bias, padding=padding)
    np.testing.assert_allclose(out, expected, atol=1e-10)
    # true convolution flips each 2-D kernel: the same as torch with flipped weights
    flipped = LayerStep(LayerKernel(w[..., ::-1, ::-1], "w", bias)).apply(
        x, FilterOptions(padding=padding)
    )
    np.testing.assert_allclose(flipped, expected, atol=1e-10)


def test_a_3d_weight_array_is_one_output_channel(rng):
    x, w = rng.normal(size=(3, 6, 7)), rng.normal(size=(3, 3, 3))
    out = layer_apply(x, w, padding="valid")
    expected = sum(engine.correlate(x[c], w[c], padding="valid") for c in range(3))
    assert out.shape == (1, 4, 5)
    np.testing.assert_allclose(out[0], expected)


# ------------------------------------------------------------------------------ checks


def test_groups_are_inferred_and_checked():
    layer = LayerKernel(np.ones((6, 1, 3, 3)), "dw")
    assert layer.groups_for(3) == 3  # depthwise with a multiplier of 2
    with pytest.raises(UsageError, match="takes 6 input channels"):
        LayerKernel(np.ones((6, 3, 3, 3)), "w", groups=2).groups_for(3)
    with pytest.raises(UsageError, match="do not split"):
        LayerKernel(np.ones((5, 1, 3, 3)), "w", groups=2)
    with pytest.raises(UsageError, match="the bias has 2 values"):
        LayerKernel(np.ones((3, 3, 1, 1)), "w", bias=np.ones(2)).groups_for(3)


def test_layer_files_and_bias_files(tmp_path):
    np.save(tmp_path / "w.npy", np.ones((2, 3, 3, 3)))
    np.save(tmp_path / "k.npy", np.ones((3, 3)))
    (step,) = parse_steps([str(tmp_path / "w.npy")])
    assert isinstance(step, LayerStep) and step.layer.weights.shape == (2, 3, 3, 3)
    (plain,) = parse_steps([str(tmp_path / "k.npy")])
    assert not isinstance(plain, LayerStep)
    (tmp_path / "b.txt").write_text("1, 2\n")
    np.testing.assert_array_equal(read_bias_file(tmp_path / "b.txt"), [1, 2])
    (tmp_path / "bad.txt").write_text("1 x")
    with pytest.raises(KernelError, match="bad.txt"):
        read_bias_file(tmp_path / "bad.txt")
    np.save(tmp_path / "five.npy", np.ones((1, 1, 1, 1, 1)))
    with pytest.raises(KernelError, match="5-D"):
        parse_steps([str(tmp_path / "five.npy")])


def test_groups_and_bias_need_a_layer_kernel():
    with pytest.raises(UsageError, match="--groups applies to layer kernels"):
        with_layer_options(parse_steps(["box:3"]), [2], [])
    with pytest.raises(UsageError, match="--bias was given 2 times"):
        steps = [LayerStep(LayerKernel(np.ones((1, 1, 1, 1)), "w"))]
        with_layer_options(steps, [], ["a", "b"])


def test_a_layer_changing_channels_refuses_unfiltered_channels():
    with pytest.raises(UsageError, match="--channels all"):
        two_to_three = LayerStep(LayerKernel(np.ones((3, 2, 1, 1)), "w"))
        Chain([two_to_three], channels="0,1").apply(np.ones((4, 4, 3)))
    step = LayerStep(LayerKernel(np.ones((2, 3, 1, 1)), "w"))
    with pytest.raises(UsageError, match="--alpha weighted"):
        Chain([step], alpha_mode="weighted").apply(np.ones((4, 4, 3)), np.ones((4, 4)))


def test_cli_layer_to_npy_and_a_clear_error_for_png(tmp_path, rng):
    values = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "rgb.png")
    w = rng.normal(size=(5, 3, 3, 3))
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "b.npy", np.arange(5.0))
    result = invoke(
        "filter",
        tmp_path / "rgb.png",
        "-k",
        tmp_path / "w.npy",
        "--bias",
        tmp_path / "b.npy",
        "--correlate",
        "--padding",
        "zero",
        "--precision",
        "double",
        "-o",
        tmp_path / "out.npy",
    )
    assert result.exit_code == 0, result.output
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (8, 9, 5)
    expected = layer_apply(np.moveaxis(values, -1, 0), w, bias=np.arange(5.0), padding="zero")
    np.testing.assert_allclose(np.moveaxis(out, -1, 0), expected, atol=1e-9)
    png = invoke(
        "filter", tmp_path / "rgb.png", "-k", tmp_path / "w.npy", "-o", tmp_path / "out.png"
    )
    assert png.exit_code == 2 and "holds 1 or 3 colour channels" in png.output


def test_cli_groups_for_a_depthwise_layer(tmp_path, rng):
    values = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "rgb.png")
    np.save(tmp_path / "dw.npy", rng.normal(size=(3, 1, 3, 3)))
    ok = invoke(
        "filter",
        tmp_path / "rgb.png",
        "-k",
        tmp_path / "dw.npy",
        "--groups",
        "3",
        "-o",
        tmp_path / "dw.npy.out.npy",
    )
    assert ok.exit_code == 0, ok.output
    wrong = invoke(
        "filter",
        tmp_path / "rgb.png",
        "-k",
        tmp_path / "dw.npy",
        "--groups",
        "1",
        "-o",
        tmp_path / "x.npy",
    )
    assert wrong.exit_code == 2 and "takes 1 input channels" in wrong.output


# ------------------------------------------------------------------------------ --stack


def test_stack_puts_each_kernel_as_channels_kernel_by_kernel(rng):
    rgb = rng.uniform(0, 255, size=(9, 10, 3))
    chain = Chain(parse_steps(["sobel-x", "sobel-y"]), stack=True)
    out, _ = chain.apply(rgb)
    assert out.shape == (9, 10, 6)
    for i, spec in enumerate(["sobel-x", "sobel-y"]):
        single, _ = Chain(parse_steps([spec])).apply(rgb)
        np.testing.assert_array_equal(out[..., 3 * i : 3 * i + 3], single)
    assert chain.stack_sizes(3) == [("sobel-x", 3), ("sobel-y", 3)]


def test_stack_applies_iterations_to_each_kernel_alone(rng):
    grey = rng.uniform(0, 1, size=(8, 8, 1))
    out, _ = Chain(parse_steps(["box:3", "binomial:3"]), iterations=2, stack=True).apply(grey)
    twice, _ = Chain(parse_steps(["binomial:3"]), iterations=2).apply(grey)
    np.testing.assert_allclose(out[..., 1:], twice)


def test_stack_refuses_steps_of_different_sizes():
    chain = Chain(parse_steps(["box:3", "box:5"]), FilterOptions(padding="valid"), stack=True)
    with pytest.raises(UsageError, match="--stack needs steps that give one size"):
        chain.apply(np.ones((9, 9, 1)))


def test_cli_stack_to_npy_tiff_and_a_contact_sheet(tmp_path, rng):
    values = rng.integers(0, 256, (12, 14), dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "g.png")
    args = ["filter", tmp_path / "g.png", "-k", "sobel-x", "-k", "sobel-y", "--stack"]
    assert invoke(*args, "-o", tmp_path / "g.npy").exit_code == 0
    stacked = np.load(tmp_path / "g.npy")
    assert stacked.shape == (12, 14, 2)
    gx = engine.convolve(values.astype(np.float32), parse_steps(["sobel-x"])[0].kernel)
    np.testing.assert_allclose(stacked[..., 0], gx, rtol=1e-6)
    assert invoke(*args, "--depth", "float", "-o", tmp_path / "g.tif").exit_code == 0
    np.testing.assert_allclose(tifffile.imread(tmp_path / "g.tif"), stacked, rtol=1e-6)
    sheet = invoke(*args, "--range", "offset", "-o", tmp_path / "sheet.png")
    assert sheet.exit_code == 0, sheet.output
    picture = np.asarray(Image.open(tmp_path / "sheet.png"))
    assert picture.ndim == 3 and picture.shape[1] > 2 * 14  # two tiles side by side
    deep = invoke(*args, "--depth", "16", "-o", tmp_path / "sheet16.png")
    assert deep.exit_code == 2 and "8-bit" in deep.output

"""Transposed convolution: PyTorch's conv_transpose2d as the oracle, and the adjoint identity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from convtool import engine
from convtool.cli import app
from convtool.errors import UsageError
from convtool.pipeline import Chain, FilterOptions, parse_steps

CASES = json.loads((Path(__file__).parent / "torch_reference" / "conv_cases.json").read_text())
runner = CliRunner()


def output_shape_of(case) -> tuple[int, int]:
    return tuple(np.shape(case["expected"]))


@pytest.mark.parametrize(
    "case",
    CASES["transposed"],
    ids=lambda c: (
        f"{c['convtool_padding']}-k{np.shape(c['weights'])}-s{c['stride']}-d{c['dilation']}"
        f"-op{c['output_padding']}"
    ),
)
def test_equals_stored_conv_transpose2d(case):
    # torch padding p and output_padding q map to ours: p = 0 is valid, K-1 full, K//2 zero;
    # q picks the output side, which is what output_shape says
    y, w = np.array(case["input"], float), np.array(case["weights"], float)
    ours = engine.correlate_transposed(
        y,
        w,
        padding=case["convtool_padding"],
        stride=case["stride"],
        dilation=case["dilation"],
        output_shape=output_shape_of(case),
    )
    np.testing.assert_allclose(ours, case["expected"], atol=1e-9)


def test_the_stored_table_covers_every_mapping():
    modes = {c["convtool_padding"] for c in CASES["transposed"]}
    assert modes == {"valid", "full", "zero"}
    assert {c["output_padding"] for c in CASES["transposed"]} >= {0, 1, 2}


def test_default_sides_are_pytorchs_for_valid_and_full():
    for case in CASES["transposed"]:
        if case["output_padding"] == 0 and case["convtool_padding"] in ("valid", "full"):
            y, w = np.array(case["input"], float), np.array(case["weights"], float)
            ours = engine.correlate_transposed(
                y,
                w,
                padding=case["convtool_padding"],
                stride=case["stride"],
                dilation=case["dilation"],
            )
            np.testing.assert_allclose(ours, case["expected"], atol=1e-9)


def test_same_size_paddings_upsample_by_the_stride():
    y = np.ones((3, 4))
    for padding in ("zero", "reflect", "edge", "symmetric", "wrap"):
        out = engine.convolve_transposed(y, np.ones((3, 3)), padding=padding, stride=2)
        assert out.shape == (6, 8)
    assert engine.transposed_shape((3, 4), (3, 3), padding="valid", stride=2) == (7, 9)
    assert engine.transposed_shape((3, 4), (3, 3), padding="full", stride=2) == (3, 5)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("shape", [(3, 3), (2, 4), (1, 3)])
def test_equals_live_conv_transpose2d(stride, dilation, shape, rng):
    torch = pytest.importorskip("torch")
    y, w = rng.normal(size=(2, 5, 6)), rng.normal(size=shape)
    expected = torch.nn.functional.conv_transpose2d(
        torch.tensor(y)[:, None], torch.tensor(w)[None, None], stride=stride, dilation=dilation
    )[:, 0].numpy()
    ours = engine.correlate_transposed(y, w, padding="valid", stride=stride, dilation=dilation)
    np.testing.assert_allclose(ours, expected, atol=1e-10)
    # true convolution transposes the flipped kernel, as the forward step flips it
    flipped = engine.convolve_transposed(
        y, w[::-1, ::-1], padding="valid", stride=stride, dilation=dilation
    )
    np.testing.assert_allclose(flipped, expected, atol=1e-10)


# ------------------------------------------------------------------------------ the adjoint


LINEAR_PADDINGS = ["zero", "edge", "reflect", "symmetric", "wrap", "valid", "full"]


@settings(max_examples=300, deadline=None)
@given(
    padding=st.sampled_from(LINEAR_PADDINGS + ["constant"]),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 3),
    flip=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_adjoint_identity(padding, height, width, kh, kw, stride, dilation, flip, seed):
    """<conv(x), y> == <x, conv_T(y)> for every padding where the step is linear."""
    rng = np.random.default_rng(seed)
    x, w = rng.normal(size=(height, width)), rng.normal(size=(kh, kw))
    forward = engine.convolve if flip else engine.correlate
    transpose = engine.convolve_transposed if flip else engine.correlate_transposed
    try:
        y_shape = forward(x, w, padding=padding, stride=stride, dilation=dilation).shape
    except UsageError:  # a valid kernel larger than the image: no forward step to transpose
        return
    y = rng.normal(size=y_shape)
    lhs = float(np.sum(forward(x, w, padding=padding, stride=stride, dilation=dilation) * y))
    back = transpose(y, w, padding=padding, stride=stride, dilation=dilation, output_shape=x.shape)
    assert back.shape == x.shape
    assert np.isclose(lhs, float(np.sum(x * back)), rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    padding=st.sampled_from(["zero", "edge", "reflect", "symmetric", "wrap"]),
    origin=st.tuples(st.integers(-1, 1), st.integers(-1, 1)),
    stride=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_adjoint_identity_with_an_origin(padding, origin, stride, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.normal(size=(7, 6)), rng.normal(size=(3, 4))
    origin = (origin[0], max(origin[1], -2))
    y = rng.normal(size=engine.correlate(x, w, padding=padding, stride=stride, origin=origin).shape)
    lhs = np.sum(engine.correlate(x, w, padding=padding, stride=stride, origin=origin) * y)
    back = engine.correlate_transposed(
        y, w, padding=padding, stride=stride, origin=origin, output_shape=x.shape
    )
    assert np.isclose(lhs, np.sum(x * back))


def test_constant_padding_with_a_value_has_no_transpose():
    with pytest.raises(UsageError, match="affine"):
        engine.correlate_transposed(np.ones((3, 3)), np.ones((3, 3)), padding="constant", cval=2)
    with pytest.raises(UsageError, match="--transposed has no meaning"):
        FilterOptions(padding="constant", cval=2, transposed=True)


def test_an_output_shape_the_forward_step_does_not_map_back_is_refused():
    with pytest.raises(UsageError, match="does not come back"):
        engine.correlate_transposed(
            np.ones((3, 3)), np.ones((3, 3)), padding="zero", stride=2, output_shape=(9, 6)
        )


def test_binomial_transposed_with_stride_2_is_bilinear_upsampling():
    """binomial:3 times 4, transposed with stride 2: every inserted pixel is the mean of its
    neighbours (linear interpolation), every kept pixel stays."""
    rng = np.random.default_rng(4)
    y = rng.uniform(0, 255, size=(6, 7))
    kernel = parse_steps(["binomial:3@scale=4"])[0].kernel
    up = engine.convolve_transposed(y, kernel, padding="zero", stride=2)
    inner = up[: 2 * 6 - 1, : 2 * 7 - 1]
    np.testing.assert_allclose(inner[::2, ::2], y)
    np.testing.assert_allclose(inner[1::2, ::2], (y[:-1] + y[1:]) / 2)
    np.testing.assert_allclose(inner[::2, 1::2], (y[:, :-1] + y[:, 1:]) / 2)


# ------------------------------------------------------------------------------ the chain and CLI


def test_chain_refuses_nonlinear_steps_under_transposed():
    for spec in ("grad:sobel", "maxpool:2"):
        with pytest.raises(UsageError, match="not linear"):
            Chain(parse_steps([spec]), FilterOptions(transposed=True))


def test_alpha_cannot_be_carried_through_a_transposed_step():
    chain = Chain(parse_steps(["box:3"]), FilterOptions(transposed=True, stride=2))
    with pytest.raises(UsageError, match="inserts pixels"):
        chain.apply(np.ones((4, 4, 3), np.float32), np.ones((4, 4), np.float32))
    filtered = Chain(
        parse_steps(["box:3"]), FilterOptions(transposed=True, stride=2), alpha_mode="filter"
    )
    pixels, alpha = filtered.apply(np.ones((4, 4, 3), np.float32), np.ones((4, 4), np.float32))
    assert pixels.shape == (8, 8, 3) and alpha.shape == (8, 8)


def test_cli_transposed_upsamples_an_image(tmp_path):
    values = np.random.default_rng(5).integers(0, 256, (10, 12), dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "in.png")
    out = tmp_path / "up.npy"
    result = runner.invoke(
        app,
        [
            "filter",
            str(tmp_path / "in.png"),
            "-k",
            "binomial:3@scale=4",
            "--transposed",
            "--stride",
            "2",
            "--padding",
            "zero",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    expected = engine.convolve_transposed(
        values.astype(np.float32),
        parse_steps(["binomial:3@scale=4"])[0].kernel,
        padding="zero",
        stride=2,
    )
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-6)


def test_cli_transposed_refuses_a_gradient(tmp_path):
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "in.png")
    result = runner.invoke(
        app,
        [
            "filter",
            str(tmp_path / "in.png"),
            "-k",
            "grad:sobel",
            "--transposed",
            "-o",
            str(tmp_path / "o.png"),
        ],
    )
    assert result.exit_code == 2
    assert "not linear" in result.output

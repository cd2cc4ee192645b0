"""convtool explain: the lectures' worked examples, and explain == filter everywhere."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from convtool.cli import app
from convtool.errors import UsageError
from convtool.kernels import get_kernel
from convtool.pipeline import Chain, FilterOptions, parse_steps
from convtool.teach import explain, explain_pixels, format_explanation, read_input

runner = CliRunner()
LECTURE = "[10 20 30; 40 50 60; 70 80 90]"
SHARPEN = "[[0,-1,0],[-1,5,-1],[0,-1,0]]"
# The lecture's 4x4 input for the [[1,1,1],[0,0,0],[-1,-1,-1]] example is not in the notes
# this project has; this one was constructed to give the lecture's result [[-4,-3],[3,-8]]:
# each output is (sum of a window's top row) - (sum of its bottom row).
FOUR_BY_FOUR = np.array([[1, 2, 0, 3], [7, 0, 1, 0], [2, 3, 2, 3], [1, 2, 2, 5]], float)
ROWS_FILTER = "[1 1 1; 0 0 0; -1 -1 -1]"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def explain_json(*args) -> dict:
    result = invoke("explain", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ------------------------------------------------------------------------------ worked examples


def test_sharpen_on_the_lecture_matrix_gives_50_with_nine_products():
    result = invoke("explain", LECTURE, "-k", SHARPEN, "--at", "1,1")
    assert result.exit_code == 0, result.output
    assert "sum = 0 - 20 + 0 - 40 + 250 - 60 + 0 - 80 + 0 = 50" in result.stdout
    assert "output (1, 1) = 50" in result.stdout
    data = explain_json(LECTURE, "-k", SHARPEN, "--at", "1,1")
    (step,) = data["steps"]
    assert step["window"] == [[10, 20, 30], [40, 50, 60], [70, 80, 90]]
    assert step["products"] == [[0, -20, 0], [-40, 250, -60], [0, -80, 0]]
    assert step["sum"] == 50 and step["value"] == 50 and data["output"] == 50
    assert step["padding_cells"] == []


def test_the_four_by_four_correlation_example():
    text = "[" + "; ".join(" ".join(str(int(v)) for v in row) for row in FOUR_BY_FOUR) + "]"
    values = [
        [
            explain_json(
                text, "-k", ROWS_FILTER, "--correlate", "--padding", "valid", "--at", f"{r},{c}"
            )["output"]
            for c in range(2)
        ]
        for r in range(2)
    ]
    assert values == [[-4, -3], [3, -8]]
    # true convolution flips the filter: every sign changes
    flipped = explain_json(text, "-k", ROWS_FILTER, "--padding", "valid", "--at", "1,1")
    assert flipped["output"] == 8
    assert flipped["steps"][0]["weights"] == [[-1, -1, -1], [0, 0, 0], [1, 1, 1]]


def test_binomial_3_twice_is_binomial_5_on_an_impulse():
    impulse = np.zeros((9, 9))
    impulse[4, 4] = 1
    steps = parse_steps(["binomial:3"])
    five = get_kernel("binomial:5").weights
    for r, c in itertools.product(range(2, 7), range(2, 7)):
        e = explain(impulse, steps, FilterOptions(padding="zero"), at=(r, c), iterations=2)
        assert len(e.steps) == 2
        assert e.output == pytest.approx(five[r - 2, c - 2], abs=1e-15)
        # the second step's window holds the first step's result: binomial:3 itself
        if (r, c) == (4, 4):
            np.testing.assert_allclose(e.steps[1].terms[0].window, get_kernel("binomial:3").weights)
            assert e.steps[0].value == pytest.approx(e.steps[1].terms[0].window[1, 1])
    once = explain(impulse, parse_steps(["binomial:5"]), FilterOptions(padding="zero"), at=(4, 4))
    assert once.output == pytest.approx(36 / 256)


def test_the_cli_shows_binomial_twice_on_an_impulse():
    impulse = "[0 0 0 0 0; 0 0 0 0 0; 0 0 1 0 0; 0 0 0 0 0; 0 0 0 0 0]"
    text = invoke("explain", impulse, "-k", "binomial:3", "-n", "2", "-p", "zero", "--at", "2,2")
    assert text.exit_code == 0, text.output
    assert "step 1 of 2" in text.stdout and "step 2 of 2" in text.stdout
    assert "output (2, 2) = 0.140625" in text.stdout  # 36/256, binomial:5's centre


# ------------------------------------------------------------------------------ explain == filter


PADDINGS = ["zero", "constant", "edge", "reflect", "symmetric", "wrap", "valid", "full"]
KERNELS = {"odd": "[1 2 -3; 4 5 6; -7 8 10]", "even": "[1 -2; 3 5]", "wide": "[1 2 3 4]"}


def filter_result(x, specs, options, iterations=1):
    """What `convtool filter` computes, through the same Chain the CLI builds."""
    out, _ = Chain(parse_steps(specs), options, iterations=iterations).apply(x[:, :, None])
    return out[..., 0]


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("correlate", [False, True])
@pytest.mark.parametrize("transposed", [False, True])
def test_explain_equals_filter_at_every_pixel(padding, kernel, correlate, transposed):
    x = np.random.default_rng(7).normal(size=(5, 6))
    for stride, dilation in itertools.product([1, 2, 3], [1, 2]):
        cval = 1.5 if padding == "constant" and not transposed else 0.0
        options = FilterOptions(
            padding=padding,
            cval=cval,
            stride=stride,
            dilation=dilation,
            correlate=correlate,
            transposed=transposed,
            method="direct",
        )
        try:
            expected = filter_result(x, [KERNELS[kernel]], options)
        except UsageError:  # valid with a kernel larger than the image
            continue
        every = list(itertools.product(range(expected.shape[0]), range(expected.shape[1])))
        for (r, c), e in zip(
            every, explain_pixels(x, parse_steps([KERNELS[kernel]]), options, every), strict=True
        ):
            assert e.output == expected[r, c]
            assert e.steps[0].computed == pytest.approx(expected[r, c], abs=1e-9)


@pytest.mark.parametrize(
    "specs",
    [
        ["grad:sobel"],
        ["grad:prewitt,norm=l1"],
        ["grad:scharr,norm=max"],
        ["maxpool:2"],
        ["avgpool:3,stride=2"],
        ["box:3", "sobel-x"],
        ["gaussian:sigma=1", "maxpool:2", "laplacian"],
        ["sharpen", "grad:roberts", "avgpool:2"],
    ],
)
@pytest.mark.parametrize("padding", ["reflect", "zero", "valid", "full"])
def test_explain_equals_filter_for_chains_gradients_and_pooling(specs, padding):
    x = np.random.default_rng(8).uniform(0, 255, size=(16, 15))
    options = FilterOptions(padding=padding, method="direct")
    expected = filter_result(x, specs, options)
    every = list(itertools.product(range(expected.shape[0]), range(expected.shape[1])))
    for (r, c), e in zip(every, explain_pixels(x, parse_steps(specs), options, every), strict=True):
        assert e.output == expected[r, c]
        for block in e.steps:
            assert block.computed == pytest.approx(block.value, rel=1e-9, abs=1e-9)


def test_each_block_feeds_the_next_window_at_its_centre():
    x = np.random.default_rng(9).uniform(0, 9, size=(8, 8))
    e = explain(x, parse_steps(["box:3", "sobel-y", "sharpen"]), FilterOptions(), at=(3, 4))
    for before, after in zip(e.steps, e.steps[1:], strict=False):
        centre = after.terms[0].window[1, 1]
        assert before.value == pytest.approx(centre)
        assert before.at == after.anchor


def test_the_chain_stops_where_a_centre_reads_a_constant_border():
    e = explain(
        np.ones((4, 4)), parse_steps(["box:3", "box:3"]), FilterOptions(padding="full"), at=(0, 0)
    )
    assert len(e.steps) == 1 and "not shown" in e.notes[0]


def test_stride_names_the_input_position_and_padding_cells_their_mode():
    e = explain(
        np.arange(49.0).reshape(7, 7),
        parse_steps(["box:3"]),
        FilterOptions(padding="symmetric", stride=3),
        at=(2, 0),
    )
    block = e.steps[0]
    assert block.anchor == (6, 0)
    data = block.to_json()
    assert data["padding_cells"] == [[0, 0], [1, 0], [2, 0], [2, 1], [2, 2]]
    assert data["sources"][2][0] == [6, 0]  # symmetric: (7, -1) copies (6, 0)
    text = format_explanation(e)
    assert "padding, symmetric: c b a | a b c d | d c b" in text
    assert "copied from:" in text and "(7,-1)←(6,0)" in text


def test_dilated_taps_are_placed_with_gaps():
    data = explain(
        np.arange(81.0).reshape(9, 9),
        parse_steps(["[1 2; 3 4]"]),
        FilterOptions(dilation=3, correlate=True),
        at=(4, 4),
    ).to_json()
    step = data["steps"][0]
    assert np.shape(step["weights"]) == (4, 4)
    assert step["weights"][0] == [1, 0, 0, 2] and step["weights"][3] == [3, 0, 0, 4]


def test_a_transposed_step_shows_the_inserted_zeros():
    data = explain(
        np.array([[1.0, 2.0], [3.0, 4.0]]),
        parse_steps(["binomial:3"]),
        FilterOptions(transposed=True, stride=2, padding="zero"),
        at=(1, 1),
    ).to_json()
    step = data["steps"][0]
    assert step["inserted_cells"] and step["value"] == pytest.approx(
        sum(p for row in step["products"] for p in row)
    )
    assert data["output_shape"] == [4, 4]


def test_layer_steps_show_one_window_per_input_channel(tmp_path):
    rng = np.random.default_rng(10)
    np.save(tmp_path / "w.npy", rng.normal(size=(2, 3, 3, 3)))
    (step,) = parse_steps([str(tmp_path / "w.npy")])
    x = rng.normal(size=(6, 6, 3))
    options = FilterOptions(correlate=True, padding="zero")
    expected, _ = Chain([step], options).apply(x)
    e = explain(x, [step], options, at=(2, 3), channel=1)
    assert len(e.steps[0].terms) == 3
    assert e.output == expected[2, 3, 1]
    assert e.steps[0].computed == pytest.approx(expected[2, 3, 1])


# ------------------------------------------------------------------------------ the CLI


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(
    "extra",
    [[], ["--correlate", "--stride", "2"], ["--dilation", "2"], ["--transposed", "--stride", "2"]],
)
def test_cli_explain_equals_cli_filter(tmp_path, padding, extra):
    if padding == "constant":
        extra = extra + (["--cval", "7"] if "--transposed" not in extra else [])
    values = np.random.default_rng(11).integers(0, 256, (7, 9), dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "in.png")
    args = ["-k", "[1 2 -3; 4 5 6]", "--padding", padding, *extra]
    made = invoke("filter", tmp_path / "in.png", *args, "-o", tmp_path / "out.npy")
    assert made.exit_code == 0, made.output
    out = np.load(tmp_path / "out.npy")
    h, w = out.shape
    for r, c in [(0, 0), (h - 1, w - 1), (h // 2, w // 3)]:
        data = explain_json(tmp_path / "in.png", *args, "--at", f"{r},{c}")
        assert data["output"] == float(out[r, c])


def test_cli_explain_maps_the_value_as_the_file_would_hold_it(tmp_path):
    Image.fromarray(np.array([[0, 0, 200], [0, 0, 200], [0, 0, 200]], np.uint8)).save(
        tmp_path / "edge.png"
    )
    data = explain_json(tmp_path / "edge.png", "-k", "sobel-x", "--at", "1,1", "--range", "offset")
    assert data["output"] == 800
    assert data["written"] == 255 and data["depth"] == 8
    raw = explain_json(tmp_path / "edge.png", "-k", "sobel-x", "--at", "1,1", "--depth", "float")
    assert raw["written"] == 800


def test_cli_explain_errors_are_one_line():
    outside = invoke("explain", LECTURE, "-k", "box:3", "--at", "3,0")
    assert outside.exit_code == 2 and "outside the output, which is 3x3" in outside.output
    bad = invoke("explain", LECTURE, "-k", "box:3", "--at", "one")
    assert bad.exit_code == 2 and "ROW,COL" in bad.output
    matrix = invoke("explain", "[1 2; 3]", "-k", "box:3", "--at", "0,0")
    assert matrix.exit_code == 2 and "row 2 has 1 value" in matrix.output
    missing = invoke("explain", "nope.png", "-k", "box:3", "--at", "0,0")
    assert missing.exit_code == 1 and "nope.png" in missing.output
    for result in (outside, bad, matrix, missing):
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_read_input_tells_matrices_from_files(tmp_path):
    assert read_input("[1 2; 3 4]").pixels[..., 0].tolist() == [[1, 2], [3, 4]]
    assert read_input("1 2; 3 4").pixels.shape == (2, 2, 1)
    Image.fromarray(np.zeros((3, 4), np.uint8)).save(tmp_path / "1.png")
    assert read_input(str(tmp_path / "1.png")).depth == 8


def test_the_readme_transcripts_are_what_explain_prints():
    import re
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```\n\$ (convtool explain .*?)\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2
    for command, shown in blocks:
        result = invoke(*shlex.split(command)[1:])
        assert result.exit_code == 0, result.output
        assert result.stdout == shown

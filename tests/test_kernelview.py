"""``convtool kernels show``: every number whole, lines within the width, the user's units."""

from __future__ import annotations

import re
from io import StringIO

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from convtool.cli import app
from convtool.cli.terminal import print_heat_maps
from convtool.kernels import get_kernel
from convtool.pipeline import report as kernelview

runner = CliRunner()
# Weights from 1e-8 to 0.16: a narrow Gaussian on a wide support.
WIDE_RANGE = "gaussian:sigma=1,size=13"


def numbers(text: str) -> list[float]:
    return [float(t) for t in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]\d+)?", text)]


def shown_weights(text: str, shape) -> np.ndarray:
    """The matrix as read back from a listing, whatever runs of columns it is split into."""
    rows, columns = shape
    runs: list[list[list[float]]] = []
    for line in text.splitlines()[1:]:
        if line.strip().startswith("columns"):
            runs.append([])
        elif line.startswith("  ") and not line.strip().startswith(("/", "column:", "row:")):
            if not runs:
                runs.append([])
            runs[-1].append([float(t) for t in line.split()])
        elif runs and line and not line.startswith(" "):
            break
    blocks = [np.array(run[:rows]) for run in runs]
    matrix = np.hstack(blocks)
    assert matrix.shape == (rows, columns)
    return matrix


@pytest.mark.parametrize("width", [40, 60, 100, 200])
def test_plain_listing_keeps_every_number_whole_within_the_width(width):
    kernel = get_kernel(WIDE_RANGE)
    text = kernelview.format_plain(kernelview.report(WIDE_RANGE), width=width)
    # the indented lines hold the numbers; the others are words a terminal may wrap
    lines = [line for line in text.splitlines() if line.startswith("  ")]
    assert max(len(line) for line in lines) <= width
    shown = shown_weights(text, kernel.shape)
    np.testing.assert_allclose(shown, kernel.weights, rtol=5e-4)  # 4 significant digits
    assert "…" not in text


@pytest.mark.parametrize("width", [30, 60, 120])
def test_heat_map_keeps_every_number_whole_within_the_width(width):
    kernel = get_kernel(WIDE_RANGE)
    buffer = StringIO()
    console = Console(file=buffer, force_terminal=True, color_system=None, width=width)
    print_heat_maps(kernelview.report(WIDE_RANGE), console=console)
    text = buffer.getvalue()
    assert "…" not in text
    lines = [line for line in text.splitlines() if line.startswith("  ")]
    assert max(len(line.rstrip()) for line in lines) <= width
    np.testing.assert_allclose(shown_weights(text, kernel.shape), kernel.weights, rtol=5e-4)


def test_tiny_weights_keep_their_exponent():
    text = kernelview.format_plain(kernelview.report("[1.03e-08 0.0531; 1 2]"), width=80)
    assert "1.03e-08" in text and "0.0531" in text


def test_columns_are_split_evenly():
    assert [len(r) for r in kernelview.column_blocks(19, 10, 2 + 90)] == [7, 7, 5]
    assert [len(r) for r in kernelview.column_blocks(5, 10, 80)] == [5]


def test_exact_kernels_stay_integers_over_a_denominator():
    text = kernelview.format_plain(kernelview.report("binomial:5"), width=80)
    assert "  1  4  6  4  1" in text and "/ 256" in text


@pytest.mark.parametrize(
    ("spec", "centre"),
    [
        ("[1 2; 3 4]@origin=0,0", "0,0"),
        ("box:4@origin=1,2", "1,2"),
        ("3x3+2+0: 1 2 3 4 5 6 7 8 9", "0,2"),
    ],
)
def test_the_origin_is_shown_as_typed(spec, centre):
    text = kernelview.format_plain(kernelview.report(spec), width=80)
    assert f"origin: {centre} (row,column of the centre tap" in text


def test_a_kernel_file_origin_is_shown_as_written(tmp_path):
    path = tmp_path / "k.txt"
    path.write_text("origin: 0,0\n1 2\n3 4\n")
    result = runner.invoke(app, ["kernels", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert "origin: 0,0 (row,column" in result.stdout and "origin: -1" not in result.stdout


@pytest.mark.parametrize("padding", ["valid", "full"])
@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ("[1 2; 3 4]@origin=0,0", "row 0, column 0"),
        ("3x3+2+0: 1 2 3 4 5 6 7 8 9", "row 0, column 2"),
    ],
)
def test_an_origin_with_valid_or_full_padding_is_refused_in_the_users_units(
    tmp_path, padding, spec, where
):
    from PIL import Image

    source = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(source)
    result = runner.invoke(
        app,
        ["filter", str(source), "-k", spec, "--padding", padding, "-o", str(tmp_path / "o.png")],
    )
    assert result.exit_code == 2
    assert f"centre at {where} (counted from 0)" in result.stderr
    assert "(-1, -1)" not in result.stderr and "-1,-1" not in result.stderr

"""convtool animate: frame counts, sizes, and the colours of known cells."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from convtool.cli import app
from convtool.errors import UsageError
from convtool.images import animation
from convtool.pipeline import FilterOptions, parse_steps
from convtool.teach import blank_grid, build_slides

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def inner_pixel(image: Image.Image, lay, panel: str, row: int, col: int):
    """A pixel inside a cell, clear of its grid line, padding edge and numbers."""
    left, top, _, _ = animation.cell_box(lay, panel, row, col)
    return image.getpixel((left + 4, top + 4))


def slides_for(size: str, spec: str, **options):
    return build_slides(
        blank_grid(size), parse_steps([spec])[0], FilterOptions(**options), blank=True
    )


@pytest.mark.parametrize(
    "size,spec,options,out_shape,grid",
    [
        ("5x5", "box:3", {"padding": "zero"}, (5, 5), (7, 7)),
        ("5x5", "box:3", {"padding": "zero", "stride": 2}, (3, 3), (7, 7)),
        ("5x5", "box:3", {"padding": "valid"}, (3, 3), (5, 5)),
        ("5x5", "box:3", {"padding": "full"}, (7, 7), (9, 9)),
        ("7x7", "box:3", {"padding": "valid", "dilation": 2}, (3, 3), (7, 7)),
        ("6x6", "box:3x2", {"padding": "reflect"}, (6, 6), (8, 7)),
        ("3x3", "box:3", {"padding": "valid", "transposed": True, "stride": 2}, (7, 7), (9, 9)),
        ("2x2", "box:3", {"padding": "valid", "transposed": True}, (4, 4), (6, 6)),
        ("6x6", "maxpool:2", {}, (3, 3), (6, 6)),
        ("5x5", "avgpool:3,stride=1", {}, (3, 3), (5, 5)),
    ],
)
def test_one_frame_per_output_pixel_plus_the_result(size, spec, options, out_shape, grid):
    slides = slides_for(size, spec, **options)
    assert slides.output.shape == out_shape
    assert slides.values.shape == grid
    assert len(slides.frames) == out_shape[0] * out_shape[1] + 1
    frames = animation.draw_frames(slides, cell=20)
    lay = animation.layout(slides, 20)
    assert {f.size for f in frames} == {(lay.width, lay.height)}


def test_known_cells_of_a_blank_grid():
    slides = slides_for("5x5", "box:3", padding="zero", stride=2)
    lay = animation.layout(slides, 30)
    frames = animation.draw_frames(slides, cell=30, numbers=False)
    first, second, last = frames[0], frames[1], frames[-1]
    blue, white = animation.BLANK_COLOURS["input"], animation.BLANK_COLOURS["padding"]
    # frame 0: the window covers grid rows 0..2, columns 0..2 (one padding row and column)
    assert inner_pixel(first, lay, "input", 0, 0) == animation.window_colour(white)
    assert inner_pixel(first, lay, "input", 1, 1) == animation.window_colour(blue)
    assert inner_pixel(first, lay, "input", 1, 3) == blue
    assert inner_pixel(first, lay, "input", 0, 4) == white
    assert inner_pixel(first, lay, "output", 0, 0) == animation.OUTPUT_BLANK
    assert inner_pixel(first, lay, "output", 0, 1) == animation.EMPTY_OUTPUT
    # frame 1: stride 2 moves the window two cells right
    assert inner_pixel(second, lay, "input", 1, 1) == blue
    assert inner_pixel(second, lay, "input", 1, 3) == animation.window_colour(blue)
    assert inner_pixel(second, lay, "output", 0, 1) == animation.OUTPUT_BLANK
    # the last frame: the whole output, no window
    assert inner_pixel(last, lay, "output", 2, 2) == animation.OUTPUT_BLANK
    assert inner_pixel(last, lay, "input", 1, 1) == blue


def test_dilated_taps_leave_the_gaps_untinted():
    slides = slides_for("7x7", "box:3", padding="valid", dilation=2)
    lay = animation.layout(slides, 20)
    first = animation.draw_frames(slides, cell=20, numbers=False)[0]
    blue = animation.BLANK_COLOURS["input"]
    assert inner_pixel(first, lay, "input", 0, 0) == animation.window_colour(blue)
    assert inner_pixel(first, lay, "input", 0, 1) == blue  # between two taps
    assert inner_pixel(first, lay, "input", 0, 2) == animation.window_colour(blue)


def test_padding_cells_show_the_mirrored_values():
    matrix = np.array([[0.0, 50.0, 100.0], [150.0, 200.0, 250.0]])
    slides = build_slides(matrix, parse_steps(["box:3"])[0], FilterOptions(padding="reflect"))
    lay = animation.layout(slides, 30)
    last = animation.draw_frames(slides, cell=30, numbers=False)[-1]
    low, high = 0.0, 250.0
    # grid (0, 0) is input (-1, -1), which reflect copies from (1, 1): 200
    assert slides.values[0, 0] == 200 and slides.kinds[0][0] == "padding"
    assert inner_pixel(last, lay, "input", 0, 0) == animation.grey(200, low, high)
    assert inner_pixel(last, lay, "input", 1, 1) == animation.grey(0, low, high)
    left, top, _, _ = animation.cell_box(lay, "input", 0, 0)
    assert last.getpixel((left + 2, top + 2)) == animation.PADDING_EDGE
    out = slides.output
    assert inner_pixel(last, lay, "output", 0, 0) == animation.grey(out[0, 0], out.min(), out.max())


def test_transposed_grids_show_the_inserted_zeros():
    slides = build_slides(
        np.array([[1.0, 2.0], [3.0, 4.0]]),
        parse_steps(["box:3"])[0],
        FilterOptions(padding="valid", transposed=True, stride=2),
    )
    # span 3: two zeros around, one inserted between the pixels
    assert slides.values.shape == (7, 7)
    assert slides.kinds[2][2] == "input" and slides.values[2, 2] == 1
    assert slides.kinds[2][3] == "inserted" and slides.values[2, 3] == 0
    assert slides.kinds[0][0] == "padding"
    lay = animation.layout(slides, 20)
    last = animation.draw_frames(slides, cell=20, numbers=False)[-1]
    assert inner_pixel(last, lay, "input", 2, 3) == animation.BLANK_COLOURS["inserted"]


def test_cli_writes_a_gif_and_a_folder_of_frames(tmp_path):
    gif = tmp_path / "conv.gif"
    result = invoke(
        "animate",
        "--size",
        "4x4",
        "-k",
        "box:3",
        "--stride",
        "2",
        "--cell",
        "24",
        "--duration",
        "300",
        "-o",
        gif,
    )
    assert result.exit_code == 0, result.output
    with Image.open(gif) as image:
        assert image.n_frames == 2 * 2 + 1
        assert image.info["duration"] == 300
        assert image.info["loop"] == 0
        width, height = image.size
    folder = tmp_path / "frames"
    result = invoke(
        "animate",
        "[1 2 3; 4 5 6; 7 8 9]",
        "-k",
        "sharpen",
        "--padding",
        "edge",
        "--cell",
        "24",
        "-o",
        f"{folder}/",
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"frame-{i:03d}.png" for i in range(10)]
    slides = build_slides(
        np.arange(1.0, 10).reshape(3, 3), parse_steps(["sharpen"])[0], FilterOptions(padding="edge")
    )
    lay = animation.layout(slides, 24)
    with Image.open(folder / "frame-009.png") as last:
        assert last.size == (lay.width, lay.height)
        colour = last.convert("RGB").getpixel(
            tuple(np.add(animation.cell_box(lay, "output", 1, 1)[:2], 3))
        )
    out = slides.output
    assert colour == animation.grey(out[1, 1], out.min(), out.max())
    assert (width, height) != (0, 0)


def test_cli_animate_errors():
    both = invoke("animate", "[1 2; 3 4]", "--size", "3x3", "-k", "box:3", "-o", "x.gif")
    assert both.exit_code == 2 and "one of them" in both.output
    two = invoke("animate", "--size", "3x3", "-k", "box:3", "-k", "box:3", "-o", "x.gif")
    assert two.exit_code == 2 and "one -k" in two.output
    grad = invoke("animate", "--size", "3x3", "-k", "grad:sobel", "-o", "x.gif")
    assert grad.exit_code == 2 and "sobel-x" in grad.output
    fmt = invoke("animate", "--size", "3x3", "-k", "box:3", "-o", "x.mp4")
    assert fmt.exit_code == 2 and ".gif" in fmt.output
    big = invoke("animate", "--size", "64x64", "-k", "box:3", "-o", "x.gif")
    assert big.exit_code == 2 and "frames" in big.output


def test_pooling_has_no_transpose():
    with pytest.raises(UsageError, match="pooling has no transpose"):
        build_slides(
            np.zeros((4, 4)), parse_steps(["maxpool:2"])[0], FilterOptions(transposed=True)
        )

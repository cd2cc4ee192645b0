"""Drawing the frames of ``convtool animate`` with Pillow, and saving them as a GIF or PNGs.

The frames' content comes from :class:`convtool.teach.slides.Slides` (any object with its
attributes: ``values``, ``kinds``, ``inside``, ``output``, ``frames``, ``blank``, ``title``);
this module only turns it into pixels, so Pillow stays inside :mod:`convtool.images`.

Layout: a caption band on top, the input grid (padding included) on the left, the output
grid on the right, both with ``cell`` pixels a side; :func:`cell_box` gives the pixel box of
any cell, so tests and callers can find them. Colours (conv_arithmetic's palette for a blank
grid): input cells blue, padding white, inserted zeros light grey, output teal; for an image
or matrix every cell is the grey of its value (padding the grey of the pixel it copies, so a
mirrored border shows mirrored colours) with an orange edge on padding cells. The kernel's
tap cells are tinted dark blue (:func:`window_colour`), its span outlined.
"""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from convtool.errors import ImageWriteError, UsageError
from convtool.images.atomic import atomic_write, write_error_reason
from convtool.images.sheet import _font

BACKGROUND = (255, 255, 255)
LINE = (96, 96, 96)
INK = (20, 20, 20)
CAPTION = (60, 60, 60)
BLANK_COLOURS = {"input": (150, 196, 230), "padding": (255, 255, 255), "inserted": (232, 232, 232)}
OUTPUT_BLANK = (64, 170, 160)
EMPTY_OUTPUT = (255, 255, 255)
PADDING_EDGE = (235, 130, 20)
WINDOW = (25, 60, 150)  # the tint of a tap cell and the outline of the kernel's span
TINT = 0.55  # how much of WINDOW a tap cell takes
CURRENT = (200, 30, 30)  # the outline of the output pixel being computed
GREY_RANGE = (40, 235)  # darkest and lightest grey of a value: numbers stay readable on both


@dataclass(frozen=True)
class Layout:
    """Where the two grids sit, in pixels."""

    cell: int
    top: int  # the caption band's height
    margin: int
    input_left: int
    output_left: int
    width: int
    height: int


def layout(slides, cell: int) -> Layout:
    """The picture's size and the grids' places for ``slides`` at ``cell`` pixels a cell."""
    gh, gw = slides.values.shape
    oh, ow = slides.output.shape
    margin, top = max(4, cell // 2), max(16, cell)
    input_left = margin
    output_left = input_left + gw * cell + max(2 * cell, 24)
    width = output_left + ow * cell + margin
    height = top + max(gh, oh) * cell + margin
    return Layout(cell, top, margin, input_left, output_left, width, height)


def cell_box(lay: Layout, panel: str, row: int, col: int) -> tuple[int, int, int, int]:
    """The pixel box (left, top, right, bottom; inclusive) of a cell of ``input`` or ``output``."""
    left = (lay.input_left if panel == "input" else lay.output_left) + col * lay.cell
    top = lay.top + row * lay.cell
    return (left, top, left + lay.cell - 1, top + lay.cell - 1)


def grey(value: float, low: float, high: float) -> tuple[int, int, int]:
    """The grey a value is drawn in, on a scale from ``low`` to ``high``."""
    dark, light = GREY_RANGE
    share = 0.5 if high <= low else (value - low) / (high - low)
    level = int(round(dark + (light - dark) * min(1.0, max(0.0, share))))
    return (level, level, level)


def window_colour(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """The colour of a cell under a kernel tap: ``colour`` tinted towards WINDOW."""
    r, g, b = (int(round(c * (1 - TINT) + w * TINT)) for c, w in zip(colour, WINDOW, strict=True))
    return r, g, b


def input_colour(slides, row: int, col: int) -> tuple[int, int, int]:
    """The colour of a grid cell outside any window."""
    kind = slides.kinds[row][col]
    if slides.blank:
        return BLANK_COLOURS[kind]
    if kind == "inserted":
        return BLANK_COLOURS["inserted"]
    low, high = _value_range(slides.values)
    return grey(float(slides.values[row, col]), low, high)


def output_colour(slides, row: int, col: int) -> tuple[int, int, int]:
    """The colour of a computed output cell."""
    if slides.blank:
        return OUTPUT_BLANK
    low, high = _value_range(slides.output)
    return grey(float(slides.output[row, col]), low, high)


def _value_range(values: np.ndarray) -> tuple[float, float]:
    return float(np.min(values)), float(np.max(values))


def draw_frames(slides, *, cell: int = 40, numbers: bool = True) -> list[PILImage.Image]:
    """Every frame of ``slides`` as an RGB Pillow image."""
    if not 8 <= cell <= 200:
        raise UsageError(f"--cell must be from 8 to 200 pixels, got {cell}")
    lay = layout(slides, cell)
    base = _base(slides, lay, numbers)
    return [_draw_frame(base, slides, frame, lay, numbers) for frame in slides.frames]


def _base(slides, lay: Layout, numbers: bool) -> PILImage.Image:
    """The input grid and the empty output grid: what every frame starts from."""
    image = PILImage.new("RGB", (lay.width, lay.height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font(max(8, lay.cell * 2 // 5))
    caption = _font(max(9, min(16, lay.cell * 2 // 5)))
    draw.text((lay.input_left, max(1, lay.top // 5)), slides.title, fill=CAPTION, font=caption)
    draw.text((lay.output_left, max(1, lay.top // 5)), "output", fill=CAPTION, font=caption)
    gh, gw = slides.values.shape
    for r in range(gh):
        for c in range(gw):
            _cell(
                draw,
                cell_box(lay, "input", r, c),
                input_colour(slides, r, c),
                slides.kinds[r][c],
                _label(slides, r, c, numbers),
                font,
            )
    r0, c0, r1, c1 = slides.inside
    left, top, _, _ = cell_box(lay, "input", r0, c0)
    _, _, right, bottom = cell_box(lay, "input", r1, c1)
    draw.rectangle((left, top, right, bottom), outline=INK, width=2)
    oh, ow = slides.output.shape
    for r in range(oh):
        for c in range(ow):
            _cell(draw, cell_box(lay, "output", r, c), EMPTY_OUTPUT, "output", "", font)
    return image


def _draw_frame(base, slides, frame, lay: Layout, numbers: bool) -> PILImage.Image:
    image = base.copy()
    draw = ImageDraw.Draw(image)
    font = _font(max(8, lay.cell * 2 // 5))
    small_size = max(7, lay.cell // 4)
    small = _font(small_size)
    for (r, c), weight in zip(frame.taps, frame.weights, strict=True):
        colour = window_colour(input_colour(slides, r, c))
        box = cell_box(lay, "input", r, c)
        _cell(draw, box, colour, slides.kinds[r][c], _label(slides, r, c, numbers), font)
        if numbers:
            text = _short(weight)
            width = draw.textlength(text, font=small)
            draw.text(
                (box[2] - 2 - width, box[3] - 2 - small_size), text, fill=BACKGROUND, font=small
            )
    for r0, c0, r1, c1 in frame.boxes:
        left, top, _, _ = cell_box(lay, "input", r0, c0)
        _, _, right, bottom = cell_box(lay, "input", r1, c1)
        draw.rectangle((left, top, right, bottom), outline=WINDOW, width=3)
    ow = slides.output.shape[1]
    for index in range(frame.filled):
        r, c = divmod(index, ow)
        text = _short(float(slides.output[r, c])) if numbers and not slides.blank else ""
        _cell(
            draw, cell_box(lay, "output", r, c), output_colour(slides, r, c), "output", text, font
        )
    if frame.current is not None:
        draw.rectangle(cell_box(lay, "output", *frame.current), outline=CURRENT, width=3)
    return image


def _cell(draw, box, colour, kind: str, text: str, font) -> None:
    draw.rectangle(box, fill=colour, outline=LINE, width=1)
    if kind == "padding":
        left, top, right, bottom = box
        draw.rectangle((left + 1, top + 1, right - 1, bottom - 1), outline=PADDING_EDGE, width=2)
    if text:
        ink = INK if sum(colour) > 3 * 128 else BACKGROUND
        width = draw.textlength(text, font=font)
        x = (box[0] + box[2] + 1 - width) / 2
        y = (box[1] + box[3] + 1 - font.size) / 2
        draw.text((x, y), text, fill=ink, font=font)


def _label(slides, r: int, c: int, numbers: bool) -> str:
    if not numbers or slides.blank:
        return ""
    return _short(float(slides.values[r, c]))


def _short(value: float) -> str:
    """A number in at most about 5 characters."""
    if float(value).is_integer() and abs(value) < 1e5:
        return str(int(value))
    return f"{value:.3g}"


# ---------------------------------------------------------------------------------- saving


def save_gif(
    dest: str | os.PathLike[str],
    frames: list[PILImage.Image],
    duration: int,
    last: int | None = None,
) -> None:
    """Write the frames as a looping GIF (``duration`` ms each, ``last`` ms for the last)."""
    durations = [duration] * (len(frames) - 1) + [last or duration]
    palette = [f.convert("P", palette=PILImage.Palette.ADAPTIVE, colors=256) for f in frames]

    def write(fileobj) -> None:
        buffer = io.BytesIO()
        palette[0].save(
            buffer,
            "GIF",
            save_all=True,
            append_images=palette[1:],
            duration=durations,
            loop=0,
            disposal=1,
            optimize=False,
        )
        fileobj.write(buffer.getvalue())

    atomic_write(dest, write)


def save_frames(folder: str | os.PathLike[str], frames: list[PILImage.Image]) -> list[Path]:
    """Write the frames as ``frame-000.png``, ``frame-001.png``, ... in ``folder`` (created)."""
    where = Path(folder)
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ImageWriteError(
            f"cannot create the folder: {write_error_reason(err)}", path=str(where)
        ) from None
    digits = max(3, len(str(len(frames) - 1)))
    paths = []
    for index, frame in enumerate(frames):
        path = where / f"frame-{index:0{digits}d}.png"
        atomic_write(path, functools.partial(frame.save, format="PNG"))
        paths.append(path)
    return paths

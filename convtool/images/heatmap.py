"""A kernel drawn as a picture: one cell per weight, red for positive, blue for negative.

The same colours as ``convtool kernels show`` on a terminal: a cell's brightness grows
with ``|weight| / max |weight|``, zero weights are light grey, and each cell shows its
value. Several kernels (a gradient's pair) sit side by side, each titled above.
"""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

__all__ = ["heat_map"]

CELL = 44  # pixels a side, for kernels up to MAX_SIDE // CELL taps across
MAX_SIDE = 1600  # larger kernels get smaller cells, without labels below LABELLED
LABELLED = 28
GAP = 12
TITLE = 16  # font size
_BACKGROUND = (255, 255, 255)
_ZERO = (228, 228, 228)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def _cell_colour(value: float, peak: float) -> tuple[int, int, int]:
    if value == 0:
        return _ZERO
    level = int(40 + 160 * abs(value) / peak)
    return (level, 30, 30) if value > 0 else (30, 30, level)


def heat_map(kernels: list[tuple[str, np.ndarray, list[list[str]]]]) -> np.ndarray:
    """An (H, W, 3) uint8 picture of (title, weights, cell labels) kernels in a row."""
    side = max(max(weights.shape) for _, weights, _ in kernels)
    cell = max(2, min(CELL, MAX_SIDE // side))
    font, title_font = _font(max(9, cell // 4)), _font(TITLE)
    rows = max(weights.shape[0] for _, weights, _ in kernels)
    measure = ImageDraw.Draw(PILImage.new("RGB", (1, 1)))
    columns = [
        max(weights.shape[1] * cell, int(measure.textlength(title, font=title_font)) + 1)
        for title, weights, _ in kernels
    ]
    width = GAP + sum(column + GAP for column in columns)
    height = GAP + TITLE + GAP + rows * cell + GAP
    sheet = PILImage.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    left = GAP
    for (title, weights, labels), column in zip(kernels, columns, strict=True):
        draw.text((left, GAP), title, fill=(20, 20, 20), font=title_font)
        peak = float(np.abs(weights).max()) or 1.0
        top = GAP + TITLE + GAP
        for (i, j), value in np.ndenumerate(weights):
            x, y = left + j * cell, top + i * cell
            box = (x, y, x + cell - 1, y + cell - 1)
            draw.rectangle(box, fill=_cell_colour(float(value), peak), outline=_BACKGROUND)
            if cell >= LABELLED:
                ink = (90, 90, 90) if value == 0 else (255, 255, 255)
                centre = (x + cell / 2, y + cell / 2)
                draw.text(centre, labels[i][j], fill=ink, font=font, anchor="mm")
        left += column + GAP
    return np.asarray(sheet)

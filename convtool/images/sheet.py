"""Contact sheets: images side by side at a common height, each labelled underneath.

Used by ``convtool compare`` (:func:`compare`) and by the README's gallery script. Pixels
are shown as they would be written to an 8-bit file: integer images by their own scale
(0-255, 0-65535), float images rescaled from their min..max; alpha is composited over
white.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

GAP = 8  # pixels between tiles and around the sheet
LABEL_SIZE = 14  # font size of the labels, in pixels
BACKGROUND = (255, 255, 255)
MAX_HEIGHT = 1 << 20  # pixels a tile may be tall (a sheet that tall is already 4 MB a column)
INK = (20, 20, 20)


def display_rgb(
    pixels: np.ndarray, alpha: np.ndarray | None, max_value: float | None
) -> np.ndarray:
    """An (H, W, 3) uint8 picture of float pixels (H, W, C) in their value scale."""
    if max_value is None:
        low, high = float(np.min(pixels)), float(np.max(pixels))
        scaled = (pixels - low) * (255.0 / (high - low) if high > low else 0.0)
    else:
        scaled = np.clip(pixels * (255.0 / max_value), 0, 255)
    if scaled.shape[-1] == 1:
        scaled = np.repeat(scaled, 3, axis=-1)
    if alpha is not None:
        cover = np.clip(alpha / (max_value or max(float(alpha.max()), 1.0)), 0, 1)[..., None]
        scaled = scaled * cover + 255.0 * (1 - cover)
    return np.rint(scaled).astype(np.uint8)


def compare(
    paths: list[str], output: str, labels: list[str] | None = None, *, height: int | None = None
) -> None:
    """Read ``paths``, lay them out as a contact sheet and write it to ``output``.

    ``labels``: one per image (default: the file names). Checked before the work: the
    output is none of the inputs and its name fits, and once the images are read (their
    sizes known) the sheet fits in memory and in the output format.
    """
    from convtool import resources
    from convtool.errors import ImageReadError, UsageError
    from convtool.images import outputs
    from convtool.images.api import Image, format_for, read_image, write_image

    labels = list(labels or [])
    if labels and len(labels) != len(paths):
        raise UsageError(
            f"--label given {len(labels)} times for {len(paths)} images; give one per image or none"
        )
    if height is not None and not 1 <= height <= MAX_HEIGHT:
        raise UsageError(f"--height must be from 1 to {MAX_HEIGHT:,}, got {height}")
    outputs.check_name(output)
    outputs.check_not_inputs([("-o", output)], paths)
    fmt = format_for(output)
    pictures = []
    for path in paths:
        image = read_image(path, frames="first")  # a sheet shows one picture
        if not (np.isfinite(np.min(image.pixels)) and np.isfinite(np.max(image.pixels))):
            raise ImageReadError(
                "the image has NaN or infinite pixel values, which cannot be shown; "
                "replace them first (e.g. with 0)",
                path="stdin" if path == "-" else path,
            )
        pictures.append(display_rgb(image.pixels, image.alpha, image.max_value))
    labels = labels or [os.path.basename(p) if p != "-" else "stdin" for p in paths]
    shapes = [p.shape for p in pictures]
    sheet_height, sheet_width, _ = layout(shapes, height)
    outputs.check_size(output, fmt, sheet_height, sheet_width, 3)
    resources.check_fits(
        peak_bytes(shapes, height),
        f"a contact sheet of {sheet_width}×{sheet_height} pixels",
        "a smaller --height or fewer images",
    )
    result = contact_sheet(pictures, labels, height=height)
    write_image(output, Image(result, depth=8))


def layout(shapes: list[tuple[int, ...]], height: int | None = None) -> tuple[int, int, list[int]]:
    """(sheet height, sheet width, tile widths) of pictures of ``shapes`` at ``height``."""
    height = height or max(shape[0] for shape in shapes)
    widths = [scaled_width(shape, height) for shape in shapes]
    return height + LABEL_SIZE + 3 * GAP, sum(widths) + GAP * (len(widths) + 1), widths


def peak_bytes(shapes: list[tuple[int, ...]], height: int | None = None) -> int:
    """Bytes making and writing the sheet allocates, beyond the pictures (an upper bound).

    Making it: each tile as Pillow holds it (4 bytes a pixel) with the half-resized copy
    it goes through, the sheet in Pillow and as an array. Writing it: the array and what
    writing takes, measured at about 9 bytes a pixel for RGB PNG now that the writer maps
    band by band (a band's integer samples, its filtered rows, the deflated bytes; the
    float samples are never copied whole), counted as ``_WRITE_BYTES_PER_PIXEL`` with a
    margin.
    """
    tile_height = height or max(shape[0] for shape in shapes)
    sheet_height, sheet_width, widths = layout(shapes, height)
    pixels = sheet_height * sheet_width
    tiles = sum(
        4 * (w * tile_height + w * shape[0] + shape[0] * shape[1])
        for w, shape in zip(widths, shapes, strict=True)
    )
    return max(tiles + (4 + 3) * pixels, (3 + _WRITE_BYTES_PER_PIXEL) * pixels)


_WRITE_BYTES_PER_PIXEL = 24


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def contact_sheet(
    pictures: list[np.ndarray], labels: list[str], *, height: int | None = None
) -> np.ndarray:
    """Lay out uint8 RGB ``pictures`` in a row, scaled to ``height`` (default: the tallest).

    Returns the sheet as an (H, W, 3) uint8 array. Tiles keep their aspect ratio;
    upscaling uses nearest neighbours so single pixels stay visible, downscaling a
    Lanczos filter. Each label is centred under its tile and cut to the tile's width.
    """
    if len(pictures) != len(labels):
        raise ValueError("one label per picture")
    height = height or max(p.shape[0] for p in pictures)
    tiles = [_scaled(p, height) for p in pictures]
    font = _font(LABEL_SIZE)
    label_band = LABEL_SIZE + 2 * GAP
    width = sum(t.width for t in tiles) + GAP * (len(tiles) + 1)
    sheet = PILImage.new("RGB", (width, height + label_band + GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    x = GAP
    for tile, label in zip(tiles, labels, strict=True):
        sheet.paste(tile, (x, GAP))
        text = _fit(draw, label, font, tile.width)
        text_width = draw.textlength(text, font=font)
        draw.text((x + (tile.width - text_width) / 2, height + 2 * GAP), text, fill=INK, font=font)
        x += tile.width + GAP
    return np.asarray(sheet)


def scaled_width(shape: tuple[int, ...], height: int) -> int:
    """The width of a picture of ``shape`` scaled to ``height``, aspect kept."""
    return max(1, round(shape[1] * height / shape[0]))


def _scaled(picture: np.ndarray, height: int) -> PILImage.Image:
    tile = PILImage.fromarray(picture)
    if tile.height == height:
        return tile
    resample = PILImage.Resampling.NEAREST if height > tile.height else PILImage.Resampling.LANCZOS
    return tile.resize((scaled_width(picture.shape, height), height), resample)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def stack_sheet(
    pixels: np.ndarray, groups: list[tuple[str, int]], source_depth, range_mode: str | None
) -> np.ndarray:
    """A contact sheet of a filter bank's result (H, W, C·n): one tile per step's channels.

    ``groups`` lists each step's label and channel count, in order (see
    :meth:`convtool.pipeline.Chain.stack_sizes`); a step of 1 or 3 channels is one grey or
    colour tile, any other count one grey tile per channel. Values are mapped as an 8-bit
    file would hold them (``range_mode``, default clip, in the source's value scale).
    """
    from convtool.images.ranges import output_samples

    if sum(count for _, count in groups) != pixels.shape[-1]:
        raise ValueError("the groups do not add up to the channels")
    pictures, labels, start = [], [], 0
    for label, count in groups:
        part = pixels[..., start : start + count]
        start += count
        tiles = [(part, label)] if count in (1, 3) else [
            (part[..., [c]], f"{label} [{c}]") for c in range(count)
        ]  # fmt: skip
        for tile, text in tiles:
            samples, _ = output_samples(tile, None, source_depth, 8, range_mode)
            pictures.append(display_rgb(samples.astype(np.float64), None, 255))
            labels.append(text)
    return contact_sheet(pictures, labels)

"""Seeing what a convolution does: explain one output pixel, animate the sliding window.

Built on the engine's own geometry (:mod:`.geometry`), so what is shown is what ``filter``
computes. :func:`explain` (and :func:`format_explanation`) for one pixel;
:func:`build_slides` for the frames that :mod:`convtool.images.animation` draws; and
:func:`read_input` for what both take: an image file or an inline matrix.
"""

from __future__ import annotations

import os
import re

import numpy as np

from convtool.errors import UsageError
from convtool.teach.explain import explain, explain_pixels
from convtool.teach.explanation import Explanation, StepExplanation, Term
from convtool.teach.geometry import Line, StepGeometry, convolution_geometry, pool_geometry
from convtool.teach.render import format_explanation
from convtool.teach.slides import MAX_FRAMES, Frame, Slides, build_slides

__all__ = [
    "MAX_FRAMES",
    "Explanation",
    "Frame",
    "Line",
    "Slides",
    "StepExplanation",
    "StepGeometry",
    "Term",
    "blank_grid",
    "build_slides",
    "convolution_geometry",
    "explain",
    "explain_pixels",
    "format_explanation",
    "looks_like_matrix",
    "pool_geometry",
    "read_input",
]

_FILE_NAME = re.compile(r"[\w./\\~-]*\.[A-Za-z][A-Za-z0-9]{1,4}")

# --size's largest side: one frame per output pixel is already 4096 frames for 64x64.
MAX_GRID_SIDE = 64


def looks_like_matrix(text: str) -> bool:
    """True for inline matrix text (``"[10 20; 30 40]"``, ``"1 2; 3 4"``), not a file name."""
    stripped = text.strip()
    if not stripped or os.path.exists(stripped) or _FILE_NAME.fullmatch(stripped):
        return False
    return stripped.startswith("[") or (";" in stripped) or stripped[0] in "+-.0123456789"


def read_input(
    text: str, *, precision: str = "single", gray: bool = False, max_pixels: int | None = None
):
    """An :class:`convtool.images.Image` from an image file (``-``: stdin) or inline matrix.

    A matrix (the kernel grammar's: rows by ``;``, values by spaces or commas) becomes a grey
    float image of those values.
    """
    from convtool import images
    from convtool.kernels import formats

    if looks_like_matrix(text):
        values = formats.parse_rows(text, "input matrix")
        dtype = np.float64 if precision == "double" else np.float32
        return images.Image(values.astype(dtype), depth="float", source="matrix")
    return images.read_image(text, precision=precision, gray=gray, max_pixels=max_pixels)


def blank_grid(size: str) -> np.ndarray:
    """A zero plane of ``HxW`` (``--size``), for a picture of the geometry alone."""
    parts = size.lower().replace(" ", "").split("x")
    try:
        h, w = (int(p) for p in parts) if len(parts) == 2 else (int(parts[0]),) * 2
    except ValueError:
        raise UsageError(f"--size takes HxW (e.g. 5x5) or N, got {size!r}") from None
    if not (1 <= h <= MAX_GRID_SIDE and 1 <= w <= MAX_GRID_SIDE):
        raise UsageError(f"--size sides must be from 1 to {MAX_GRID_SIDE}, got {size!r}")
    return np.zeros((h, w))

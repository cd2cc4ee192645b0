"""Alpha into a format without it: compositing over a background colour.

JPEG, BMP and PNM have no alpha channel. Rather than show whatever colour happens to lie
under transparent pixels, the written samples are composited over a background (white
by default, as a browser page): ``out = colour · a + background · (1 − a)`` with
``a = alpha / max``, computed in floating point on the samples already mapped to the
output depth, then rounded half to even.
"""

from __future__ import annotations

import re

import numpy as np
from PIL import ImageColor

from convtool.errors import UsageError

__all__ = ["DEFAULT_BACKGROUND", "composite", "parse_colour"]

DEFAULT_BACKGROUND = "white"

_TRIPLE = re.compile(r"^\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*$")


def parse_colour(text: str) -> tuple[int, int, int]:
    """An 8-bit RGB triple from a colour name (CSS's: ``white``, ``teal``), ``#rrggbb``,
    ``#rgb`` or ``R,G,B`` (each 0–255)."""
    match = _TRIPLE.match(str(text))
    if match:
        rgb = tuple(int(v) for v in match.groups())
        if max(rgb) <= 255:
            return rgb  # type: ignore[return-value]
    else:
        try:
            return ImageColor.getrgb(str(text).strip())[:3]  # type: ignore[return-value]
        except ValueError:
            pass
    raise UsageError(
        f"--background must be a colour name (white, black, …), #rrggbb or R,G,B with "
        f"values 0-255; got {text!r}"
    )


def composite(
    colour: np.ndarray, alpha: np.ndarray, background: tuple[int, int, int]
) -> np.ndarray:
    """*colour* (H, W, C) integer samples over *background* through *alpha* (H, W).

    Samples and alpha share one integer scale (the dtype's: uint8 or uint16). Grey stays
    grey over a grey background; over a coloured one it becomes RGB.
    """
    top = float(np.iinfo(colour.dtype).max)
    level = np.asarray(background, np.float64) * (top / 255.0)
    if colour.shape[2] == 1 and level.min() == level.max():
        level = level[:1]
    cover = alpha.astype(np.float64)[:, :, np.newaxis] / top
    out = colour.astype(np.float64) * cover + level * (1.0 - cover)
    return np.rint(out, out=out).astype(colour.dtype)

"""Which channels a chain filters, and the colour transform of ``--channels luma``.

:func:`parse_channels` reads ``--channels`` (``all``, ``luma``, ``R,G``, ``0,2``);
``luma`` filters the BT.601 luminance of an RGB image and keeps its colour: the stack goes
through :data:`RGB_TO_YCBCR` and back (:func:`mix_channels`, in a fixed order of
operations, so that a band of rows gets the whole image's bytes).
"""

from __future__ import annotations

import numpy as np

from convtool.errors import UsageError

__all__ = ["CHANNEL_NAMES", "RGB_TO_YCBCR", "YCBCR_TO_RGB", "mix_channels", "parse_channels"]


CHANNEL_NAMES = {"r": 0, "g": 1, "b": 2}

# ITU-R BT.601 full-range RGB -> YCbCr (as JPEG), without the +128 offset: in floating
# point the chroma planes stay signed, and the exact matrix inverse brings RGB back.
RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)  # fmt: skip
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)


def mix_channels(matrix: np.ndarray, stack: np.ndarray) -> np.ndarray:
    """``matrix @ stack`` over the channels of a (3, H, W) stack, pixel by pixel.

    Elementwise multiply-adds in a fixed order rather than a matrix product: BLAS blocks a
    product differently for different image sizes, so a band of rows would not get the
    bytes of the whole image (streaming relies on it).
    """
    weights = matrix.astype(stack.dtype)
    out = np.empty_like(stack)
    tmp = np.empty_like(stack[0])
    for i, row in enumerate(weights):
        np.multiply(stack[0], row[0], out=out[i])
        for j in range(1, len(row)):
            np.multiply(stack[j], row[j], out=tmp)
            np.add(out[i], tmp, out=out[i])
    return out


def parse_channels(text: str) -> str | tuple[int, ...]:
    """``all``, ``luma``, or channel names/indices like ``R,G`` or ``0,2``."""
    key = text.strip().lower()
    if key in ("all", "luma", "y"):
        return "luma" if key == "y" else key
    picked = []
    for part in (p.strip() for p in key.split(",")):
        if part in CHANNEL_NAMES:
            picked.append(CHANNEL_NAMES[part])
        elif part.isdigit():
            picked.append(int(part))
        else:
            raise UsageError(
                f"--channels takes all, luma, or channels like R,G or 0,2; got {text!r}"
            )
    if len(set(picked)) != len(picked):
        raise UsageError(f"--channels names a channel twice: {text!r}")
    return tuple(sorted(picked))

"""Frames and pages: the pictures after the first, how an animation plays, who holds them.

An animated GIF, APNG or WebP, or a multi-page TIFF, is read whole: the
:class:`~convtool.images.Image` holds the first frame as usual and the others in
``frames`` (each a :class:`Frame`), with :class:`Timing` for animations. Frames are
read as they are shown, composited onto the full canvas, so each is a whole picture and
the same filter chain applies to each. All frames of an image share its depth, its
channel count and whether it has alpha (a frame without alpha gets an opaque one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convtool.choices import Frames, values
from convtool.errors import UsageError

__all__ = [
    "DISPOSALS",
    "FRAME_CHOICES",
    "MULTI_FRAME_FORMATS",
    "TIMED_FORMATS",
    "Frame",
    "Timing",
    "check_frames",
    "check_shape",
    "format_name",
]

FRAME_CHOICES = values(Frames)
"""What ``frames=`` (``--frames``) takes: every frame or page, or only the first."""

DISPOSALS = ("none", "background", "previous")
"""What happens to a frame's area before the next is drawn (GIF's and APNG's three ways)."""

MULTI_FRAME_FORMATS = ("gif", "apng", "webp", "tiff")
TIMED_FORMATS = ("gif", "apng", "webp")
"""Output formats that hold several frames, and those of them that hold their timing."""


_NAMES = {"webp": "WebP", "npy": "NumPy .npy", "zarr": "zarr", "zarr2": "zarr v2"}


def format_name(fmt: str) -> str:
    """How messages name an output format: PNG, JPEG, WebP, …"""
    return _NAMES.get(fmt, fmt.upper())


def check_shape(pixels: np.ndarray, alpha: np.ndarray | None, what: str) -> np.ndarray:
    """*pixels* as (H, W, C), checked against *alpha* (H, W); UsageError if not.

    C is 1 or 3 as read; filter banks and layer kernels make other counts (C ≥ 1), which
    only TIFF and ``.npy`` write.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if pixels.ndim != 3 or pixels.shape[2] < 1:
        raise UsageError(f"{what} pixels must have shape (H, W) or (H, W, C), got {pixels.shape}")
    if alpha is not None and np.shape(alpha) != pixels.shape[:2]:
        raise UsageError(f"{what} alpha must have shape {pixels.shape[:2]}, got {np.shape(alpha)}")
    return pixels


@dataclass
class Frame:
    """One frame (or page) after the first: pixels (H, W, C) and alpha (H, W) or None."""

    pixels: np.ndarray
    alpha: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.pixels = check_shape(self.pixels, self.alpha, "Frame")
        if self.alpha is not None:
            self.alpha = np.asarray(self.alpha)


@dataclass(frozen=True)
class Timing:
    """How an animation plays: one duration (ms) and disposal per frame, and the plays.

    ``loop``: how many times the animation plays, 0 for ever (APNG's and WebP's count;
    GIF's loop extension counts repeats after the first play, converted on reading and
    writing). ``disposals`` are names from :data:`DISPOSALS`.
    """

    durations: tuple[float, ...]
    disposals: tuple[str, ...]
    loop: int = 0

    def __post_init__(self) -> None:
        if len(self.durations) != len(self.disposals):
            raise UsageError("Timing needs one duration and one disposal per frame")
        unknown = [d for d in self.disposals if d not in DISPOSALS]
        if unknown:
            raise UsageError(
                f"frame disposal must be one of {', '.join(DISPOSALS)}, got {unknown[0]!r}"
            )
        if any(not d >= 0 for d in self.durations) or int(self.loop) != self.loop or self.loop < 0:
            raise UsageError("frame durations and the loop count must not be negative")


def check_frames(fmt: str, count: int, source: str | None = None) -> None:
    """Refuse several frames for a format that holds one (a usage error naming --frames)."""
    if count > 1 and fmt not in MULTI_FRAME_FORMATS:
        apng = ", APNG (--format apng)" if fmt == "png" else ", APNG"
        raise UsageError(
            f"the input has {count} frames but {format_name(fmt)} holds one; add --frames first "
            f"to write only the first, or write GIF{apng}, WebP or TIFF",
            path=source,
        )

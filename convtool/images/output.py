"""From an :class:`~convtool.images.Image` to what one output format is given to encode.

:func:`prepare` maps every frame to the output depth (:mod:`convtool.images.ranges`),
composites alpha where the format has none (:mod:`convtool.images.background`), keeps
the metadata and timing the format holds, and says in one line each what it could not
hold; :func:`check_output_controls` refuses a quality, subsampling or compression given
for a format it does not concern. The policy of :func:`convtool.images.write_image`,
apart from its I/O.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convtool.errors import UsageError
from convtool.images import metadata as meta
from convtool.images.background import DEFAULT_BACKGROUND, composite, parse_colour
from convtool.images.encoders import COMPRESSIONS, SUBSAMPLINGS, Encoding
from convtool.images.frames import TIMED_FORMATS, format_name
from convtool.images.ranges import Samples, finite_span, output_samples

__all__ = ["KEEPS_ALPHA", "OUTPUT_CONTROLS", "check_output_controls", "prepare"]

OUTPUT_CONTROLS = {
    "quality": ("jpeg", "webp", "tiff"),
    "subsampling": ("jpeg",),
    "progressive": ("jpeg",),
    "compression": ("tiff",),
}
"""The output controls of :func:`write_image` and the formats each applies to (``quality``
applies to TIFF with JPEG compression)."""

KEEPS_ALPHA = frozenset({"png", "apng", "tiff", "webp", "gif", "npy", "zarr", "zarr2"})
"""Formats that hold alpha (GIF as one transparent palette entry); the others composite."""

_ANIMATED_CANVAS = ("gif", "apng", "webp")  # one canvas: every frame the same size
_BANDED = ("png", "apng", "npy")  # written band by band (convtool.images.png, encoders)


def prepare(
    image: Any,  # an images.Image (api imports this module, so not named here)
    fmt: str,
    depth: int | str,
    range_mode: str | None,
    level: int,
    controls: dict[str, Any],
    background: str | tuple[int, int, int] | None,
) -> tuple[Encoding, list[str]]:
    """The :class:`Encoding` of *image* for *fmt* at *depth*, and the notes to show."""
    pictures = [(image.pixels, image.alpha)] + [(f.pixels, f.alpha) for f in image.frames]
    if fmt in _ANIMATED_CANVAS and len({p.shape[:2] for p, _ in pictures}) > 1:
        raise UsageError(
            f"the frames differ in size, but {format_name(fmt)} frames share one canvas; "
            "write TIFF pages instead",
            path=image.source,
        )
    notes = []
    span = None
    if range_mode == "rescale" and len(pictures) > 1:  # one mapping for all frames
        spans = [finite_span(p) for p, _ in pictures]
        span = (min(s[0] for s in spans), max(s[1] for s in spans))
    samples = None
    if fmt in _BANDED:  # mapped band by band as the writer asks (alpha kept: no composite)
        samples = [Samples(p, a, image.depth, depth, range_mode, span) for p, a in pictures]
        frames = []
        height, width = samples[0].shape[:2]
        channels = samples[0].shape[2] - samples[0].has_alpha
    else:
        frames = [output_samples(p, a, image.depth, depth, range_mode, span) for p, a in pictures]
        height, width, channels = frames[0][0].shape
        if image.alpha is not None and fmt not in KEEPS_ALPHA:
            rgb = parse_colour(background) if isinstance(background, str) else background
            rgb = rgb or parse_colour(DEFAULT_BACKGROUND)
            frames = [(composite(c, _frame_alpha(a), rgb), None) for c, a in frames]
            if background is None:
                notes.append(
                    f"{format_name(fmt)} has no alpha channel: composited over "
                    f"{DEFAULT_BACKGROUND} (--background COLOR picks another)"
                )
        elif fmt == "gif" and image.alpha is not None and _has_partial_alpha(frames):
            notes.append(
                "GIF transparency is all or nothing: pixels under half opacity became transparent"
            )
    kept, dropped = meta.for_format(meta.sized(image.metadata, width, height), fmt, channels)
    count = len(pictures)
    timing = image.timing if count > 1 and fmt in TIMED_FORMATS else None
    if image.timing is not None and count > 1 and fmt not in TIMED_FORMATS:
        dropped.append("frame timing (durations, loop)")
    if dropped:
        notes.insert(
            0, f"{format_name(fmt)} cannot hold the input's {', '.join(dropped)}; left out"
        )
    encoding = Encoding(
        frames, depth, level, metadata=kept, timing=timing, samples=samples, **controls
    )
    return encoding, notes


def _frame_alpha(alpha: np.ndarray | None) -> np.ndarray:
    """A frame's alpha, when the image has alpha (an Image's frames all have it, or none)."""
    assert alpha is not None, "an Image's frames have alpha when its first frame does"
    return alpha


def _has_partial_alpha(frames: list[tuple[np.ndarray, np.ndarray | None]]) -> bool:
    top = np.iinfo(_frame_alpha(frames[0][1]).dtype).max
    return any(np.any((a > 0) & (a < top)) for _, a in frames if a is not None)


def check_output_controls(
    fmt: str,
    *,
    quality: int | None = None,
    subsampling: str | None = None,
    progressive: bool = False,
    compression: str | None = None,
) -> None:
    """Refuse a bad output control, or one given for a format it does not apply to."""
    if quality is not None and (
        isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100
    ):
        raise UsageError(f"--quality must be a whole number from 1 to 100, got {quality!r}")
    if subsampling is not None and subsampling not in SUBSAMPLINGS:
        raise UsageError(
            f"--subsampling must be one of {', '.join(SUBSAMPLINGS)}, got {subsampling!r}"
        )
    if compression is not None and compression not in COMPRESSIONS:
        raise UsageError(
            f"--compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}"
        )
    given = {"quality": quality is not None, "subsampling": subsampling is not None,
             "progressive": bool(progressive), "compression": compression is not None}  # fmt: skip
    for name, formats in OUTPUT_CONTROLS.items():
        if given[name] and fmt not in formats:
            names = [format_name(f) for f in formats]
            holders = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
            raise UsageError(f"--{name} applies to {holders} output, not {format_name(fmt)}")
    if quality is not None and fmt == "tiff" and compression != "jpeg":
        raise UsageError("--quality applies to TIFF output only with --compression jpeg")

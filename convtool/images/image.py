"""The :class:`Image` that reading gives and writing takes, and the facts about formats
both sides share: the extensions read and written, the depths each format holds, the
default pixel limit, the grey weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from convtool.errors import (
    UsageError,
)
from convtool.images.frames import (
    Frame,
    Timing,
    check_shape,
)
from convtool.images.metadata import Metadata
from convtool.images.ranges import MAX_VALUES

if TYPE_CHECKING:
    pass


DEFAULT_MAX_PIXELS = 250_000_000
"""Largest width × height read by default (about 16 000 × 16 000; 3 GB as float32 RGB)."""

GRAY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights for R, G, B, applied in floating point by ``gray=True``."""

IMAGE_EXTENSIONS = frozenset(
    {".png", ".apng", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif",
     ".ppm", ".pgm", ".pbm", ".pnm", ".npy", ".zarr"}
)  # fmt: skip
"""Extensions (lower case, with the dot) of the files read_image reads and batches look for."""

WRITE_EXTENSIONS = {
    ".png": "png", ".apng": "apng", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
    ".bmp": "bmp", ".webp": "webp", ".gif": "gif",
    ".ppm": "pnm", ".pgm": "pnm", ".pnm": "pnm", ".npy": "npy", ".zarr": "zarr",
}  # fmt: skip
"""Output extension → format name."""

FORMAT_DEPTHS: dict[str, tuple[int | str, ...]] = {
    "png": (8, 16),
    "apng": (8, 16),
    "jpeg": (8,),
    "tiff": (8, 16, 32, "float"),
    "bmp": (8,),
    "webp": (8,),
    "gif": (8,),
    "pnm": (8, 16),
    "npy": (8, 16, 32, "float"),
    "zarr": (8, 16, 32, "float"),
    "zarr2": (8, 16, 32, "float"),
}
"""The depths each output format can hold (``"float"``: 32-bit float TIFF, raw ``.npy``).

``zarr`` is a zarr v3 store, ``zarr2`` a v2 one (both need ``pip install "convtool[large]"``).
"""

FOLDER_FORMATS = frozenset({"zarr", "zarr2"})  # outputs that are folders, written by tiles

PRECISIONS = {"single": np.float32, "double": np.float64}


# The formats that hold any number of colour channels (filter banks, layers); the others
# hold 1 or 3.
ANY_CHANNELS = frozenset({"tiff", "npy"})


@dataclass
class Image:
    """An image as floats in its source's value scale, with alpha kept apart.

    ``pixels``: (H, W, C) floating array, C = 1 (grey) or 3 (RGB); a 2-D array is taken as
    grey and given the channel axis. ``alpha``: (H, W) opacity, or None: 0..255 for 8-bit,
    0..65535 for 16-bit (the value scale), and 0..1 for float images (1 = opaque).
    ``depth``: the source depth, 8, 16, 32 or ``"float"``; it gives the value scale
    (:attr:`max_value`) and the default output depth. ``format``/``source``: where it came
    from (e.g. ``"PNG"``, ``"photo.png"``; ``"-"`` for stdin). ``metadata``: ICC profile,
    EXIF, XMP, DPI and text, written back where the output format holds them.
    ``frames``: the frames (or pages) after this first one, each a
    :class:`~convtool.images.frames.Frame` of the same depth, channels and alpha;
    ``timing``: how an animation plays (one duration and disposal per frame), or None.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    depth: int | str = "float"
    format: str | None = None
    source: str | None = None
    metadata: Metadata = field(default_factory=Metadata)
    frames: list[Frame] = field(default_factory=list)
    timing: Timing | None = None

    def __post_init__(self) -> None:
        self.pixels = check_shape(self.pixels, self.alpha, "Image")
        if self.alpha is not None:
            self.alpha = np.asarray(self.alpha)
        if self.depth not in (8, 16, 32, "float"):
            raise UsageError(f"Image depth must be 8, 16, 32 or 'float', got {self.depth!r}")
        self.frames = list(self.frames)
        for frame in self.frames:
            if frame.pixels.shape[2] != self.channels or (frame.alpha is None) != (
                self.alpha is None
            ):
                raise UsageError(
                    "Image frames must all have the first frame's channels, and alpha if it has"
                )
        if self.timing is not None and len(self.timing.durations) != self.frame_count:
            raise UsageError(
                f"Image timing has {len(self.timing.durations)} durations for "
                f"{self.frame_count} frames"
            )

    @property
    def frame_count(self) -> int:
        """Frames (or pages) in all: this one and the later ``frames``."""
        return 1 + len(self.frames)

    @property
    def max_value(self) -> float | None:
        """The top of the value scale: 255, 65535, 4294967295, or None for float data."""
        return MAX_VALUES.get(self.depth) if isinstance(self.depth, int) else None

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        """Colour channels (1 or 3 as read; filter banks and layers make others), alpha not
        counted."""
        return self.pixels.shape[2]


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Tell whether *path* has one of the readable extensions (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name if it has none), for one-line errors."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__

"""What every decoder gives and the checks they share: :class:`Decoded` samples, the size
limit (``--max-pixels``) checked before any pixel is decoded, the value scale of a sample
type, and the quieting of decoders' own chatter (warnings, log records, C libraries
printing to file descriptor 2), so a damaged file gets one error line: ours.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from convtool.errors import ImageReadError, ResourceLimitError
from convtool.images import metadata as meta
from convtool.images.frames import Timing
from convtool.images.native import native_stderr_discarded


@dataclass
class Decoded:
    """Raw samples from a decoder, before orientation, alpha split, grey and precision."""

    array: np.ndarray  # (H, W, C) numeric, C in 1..4, in the source's scale
    has_alpha: bool  # the last channel is alpha
    depth: int | str
    format: str
    orientation: int = 1  # EXIF/TIFF orientation tag, 1 = as stored
    metadata: meta.Metadata = field(default_factory=meta.Metadata)  # of the file (frame 1)
    more: list[Decoded] = field(default_factory=list)  # the later frames or pages
    timing: Timing | None = None  # an animation's, for all its frames


@contextlib.contextmanager
def quiet_decoders(native: bool) -> Iterator[None]:
    """Keep decoders' own chatter off stderr: a damaged file gets one error line, ours.

    Pillow warns (``Truncated File Read``, ``Corrupt EXIF data``), tifffile logs through
    ``logging`` and libtiff, inside Pillow, prints its errors from C straight to file
    descriptor 2 (``ZIPDecode: Decoding error ...``). Whatever they say is either harmless
    (the image still decodes) or followed by an exception that becomes our message. With
    ``native``, file descriptor 2 itself points at a scratch file meanwhile (only for
    TIFF, the one format whose C decoder prints). tifffile's logger is silenced when
    tifffile may speak: for a TIFF, or when it is loaded already (the band readers open
    it first); otherwise ``logging`` (3 ms to import) is not even imported. Pillow's loggers
    too (its TIFF plugin logs "More samples per pixel than can be decoded" for a damaged
    header and decodes on), once Pillow is loaded (it imports ``logging`` itself).
    """
    with contextlib.ExitStack() as stack:
        if native or "tifffile" in sys.modules:
            stack.enter_context(logger_silenced("tifffile"))
        if "PIL" in sys.modules:
            stack.enter_context(logger_silenced("PIL"))
        with warnings.catch_warnings(), native_stderr_discarded(native):
            warnings.simplefilter("ignore")
            yield


@contextlib.contextmanager
def logger_silenced(name: str) -> Iterator[None]:
    """Within the block, the logger ``name`` records nothing."""
    import logging

    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def fresh(src: Path | bytes) -> BinaryIO:
    """Open *src* anew: decoding 16-bit colour takes two passes over the same bytes."""
    return io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")  # noqa: SIM115


def check_size(
    width: int,
    height: int,
    name: str,
    max_pixels: int | None,
    frames: int = 1,
    total: int | None = None,
    planes: int = 1,
) -> None:
    """Refuse an empty image, or more pixels (over all *frames*) than *max_pixels*.

    *total*: the pixels of all frames when they differ in size (TIFF pages). *planes*: a
    TIFF page's planes (see :meth:`TiffLayout.check`), counted as pixels too.
    """
    if width <= 0 or height <= 0:
        raise ImageReadError(f"image has no pixels ({width}×{height})", path=name)
    total = width * height * frames * planes if total is None else total
    if max_pixels and total > max_pixels:
        size = f"{width}×{height}" if frames == 1 else f"{frames} frames of {width}×{height}"
        size += f"×{planes} planes" if planes > 1 else ""
        raise ResourceLimitError(
            f"image is {size} = {total:,} pixels, over the limit of "
            f"{max_pixels:,}; raise it with --max-pixels N (0 for no limit)"
            + (", or read one frame with --frames first" if frames > 1 else ""),
            path=name,
        )


COMPLEX = "complex numbers; convtool reads real-valued images"


def depth_of_dtype(dtype: np.dtype) -> int | str:
    """The value scale of integer or float samples: the bits of the type (signed alike).

    A signed type keeps its sign and takes the scale of the unsigned type of its size
    (int8: 0–255, so −27 stays −27, below black; int16: 0–65535).
    """
    if dtype.kind == "f":
        return "float"
    if dtype.itemsize == 1:
        return 8
    if dtype.itemsize == 2:
        return 16
    return 32


class NeedsCodec(Exception):
    """Internal: tifffile lacks the codec (imagecodecs is not installed)."""

"""Reading and writing images: the :class:`Image` type, :func:`read_image`, :func:`write_image`.

Images come in as an :class:`Image` whose ``pixels`` are floating point, shape ``(H, W, C)``
with ``C`` 1 (grey) or 3 (RGB), in the source's own value scale (0–255 for 8-bit, 0–65535
for 16-bit, as-is for 32-bit integer and float data), with alpha kept apart in ``alpha``,
the file's :class:`~convtool.images.metadata.Metadata` in ``metadata`` and, for an
animation or a multi-page TIFF, the later frames in ``frames`` (:mod:`convtool.images.frames`).
Nothing is clipped or rounded until :func:`write_image`, and then only as its
``range_mode`` says (:func:`map_range`).

This module is the public face: the names of :mod:`convtool.images.image` (the type and
the facts about formats), :mod:`convtool.images.reading` (the read policy: formats, size
limits, orientation, grey, stdin, one-line errors) and :mod:`convtool.images.writing` (the
write policy: depths, alpha and metadata, stdout, atomic writes). Decoding is
:mod:`convtool.images.codecs`' and encoding :mod:`convtool.images.encoders`'; range mapping
and the cast to an output depth are :mod:`convtool.images.ranges`'. Of the whole package,
only ``convtool.images`` imports Pillow.
"""

from __future__ import annotations

from convtool.images.atomic import (
    atomic_write,
    remove_stale_temp_files,
    same_file,
    stale_temp_files,
)
from convtool.images.frames import Frame, Timing, check_frames
from convtool.images.image import (
    DEFAULT_MAX_PIXELS,
    FORMAT_DEPTHS,
    GRAY_WEIGHTS,
    IMAGE_EXTENSIONS,
    WRITE_EXTENSIONS,
    Image,
    is_image_path,
)
from convtool.images.metadata import Metadata
from convtool.images.output import OUTPUT_CONTROLS, check_output_controls
from convtool.images.ranges import RANGE_MODES, map_range
from convtool.images.reading import (
    STREAM_BYTES_PER_PIXEL,
    float_image,
    read_band,
    read_image,
    read_stream,
)
from convtool.images.writing import check_format_agrees, format_for, output_depth, write_image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMAT_DEPTHS",
    "GRAY_WEIGHTS",
    "IMAGE_EXTENSIONS",
    "OUTPUT_CONTROLS",
    "RANGE_MODES",
    "STREAM_BYTES_PER_PIXEL",
    "WRITE_EXTENSIONS",
    "Frame",
    "Image",
    "Metadata",
    "Timing",
    "atomic_write",
    "check_format_agrees",
    "check_frames",
    "check_output_controls",
    "float_image",
    "format_for",
    "is_image_path",
    "map_range",
    "output_depth",
    "read_band",
    "read_image",
    "read_stream",
    "remove_stale_temp_files",
    "same_file",
    "stale_temp_files",
    "write_image",
]

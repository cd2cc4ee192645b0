"""Reading and writing images: decoders behind an allow-list, range mapping, atomic writes."""

from __future__ import annotations

from convtool.images.api import (
    DEFAULT_MAX_PIXELS,
    FORMAT_DEPTHS,
    GRAY_WEIGHTS,
    IMAGE_EXTENSIONS,
    RANGE_MODES,
    WRITE_EXTENSIONS,
    Image,
    atomic_write,
    format_for,
    is_image_path,
    map_range,
    output_depth,
    read_band,
    read_image,
    remove_stale_temp_files,
    same_file,
    stale_temp_files,
    write_image,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMAT_DEPTHS",
    "GRAY_WEIGHTS",
    "IMAGE_EXTENSIONS",
    "RANGE_MODES",
    "WRITE_EXTENSIONS",
    "Image",
    "atomic_write",
    "format_for",
    "is_image_path",
    "map_range",
    "output_depth",
    "read_band",
    "read_image",
    "remove_stale_temp_files",
    "same_file",
    "stale_temp_files",
    "write_image",
]

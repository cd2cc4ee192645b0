"""Reading and writing images: decoders behind an allow-list, metadata and frames, range
mapping, atomic writes."""

from __future__ import annotations

from convtool.images.api import (
    DEFAULT_MAX_PIXELS,
    FORMAT_DEPTHS,
    GRAY_WEIGHTS,
    IMAGE_EXTENSIONS,
    OUTPUT_CONTROLS,
    RANGE_MODES,
    WRITE_EXTENSIONS,
    Frame,
    Image,
    Metadata,
    Timing,
    atomic_write,
    check_frames,
    check_output_controls,
    format_for,
    is_image_path,
    map_range,
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
    "OUTPUT_CONTROLS",
    "RANGE_MODES",
    "WRITE_EXTENSIONS",
    "Frame",
    "Image",
    "Metadata",
    "Timing",
    "atomic_write",
    "check_frames",
    "check_output_controls",
    "format_for",
    "is_image_path",
    "map_range",
    "read_image",
    "remove_stale_temp_files",
    "same_file",
    "stale_temp_files",
    "write_image",
]

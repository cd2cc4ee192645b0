"""Reading and writing images: decoders behind an allow-list, metadata and frames, range
mapping, atomic writes.

The names below are imported from :mod:`convtool.images.api` when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
        check_format_agrees,
        check_frames,
        check_output_controls,
        float_image,
        format_for,
        is_image_path,
        map_range,
        output_depth,
        read_band,
        read_image,
        read_stream,
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


def __getattr__(name: str):
    # Lazily, so that convtool.images.readahead (the standard library only) can run
    # before numpy and Pillow are imported.
    if name in __all__:
        from convtool.images import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'convtool.images' has no attribute {name!r}")

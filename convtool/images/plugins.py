"""The Pillow plugins convtool uses: those of the formats README documents, and no others.

Pillow knows some 40 formats, and opening a file by its content (or saving in a format
whose plugin is not yet registered) makes it import them all (``Image.init()``, ~70 ms).
Among them is EPS, whose loader runs Ghostscript on the file: a PostScript program named
``photo.jpg`` could write and read files. convtool registers the plugin of each format it
reads or writes on first use (:func:`register`), opens a file only as the one format its
bytes show (:func:`convtool.images.codecs.open_pillow`), and saves through :func:`save`,
so no other plugin is ever imported.
"""

from __future__ import annotations

import importlib
from typing import Any, BinaryIO

from PIL import Image as PILImage

__all__ = ["READ_FORMATS", "READ_NAMES", "register", "save"]

READ_FORMATS = {
    "PNG": "PngImagePlugin",
    "JPEG": "JpegImagePlugin",
    "TIFF": "TiffImagePlugin",
    "BMP": "BmpImagePlugin",
    "WEBP": "WebPImagePlugin",
    "GIF": "GifImagePlugin",
    "PPM": "PpmImagePlugin",
}
"""Pillow's name of each format convtool reads (and writes through Pillow) → its plugin."""

READ_NAMES = "PNG, JPEG, TIFF, BMP, WebP, GIF, PNM (PBM/PGM/PPM) and .npy"
"""The formats convtool reads, as error messages name them."""


def register(fmt: str) -> None:
    """Import the plugin of *fmt* alone (a READ_FORMATS name; anything else: KeyError)."""
    importlib.import_module(f"PIL.{READ_FORMATS[fmt]}")
    # Image.open of a file object (no name to tell the format by) first runs preinit(),
    # which imports the BMP, GIF, JPEG, PPM and PNG plugins: 5-7 ms of a 0.35 s run. With
    # the one plugin needed registered here, that step is marked done. The flag is
    # Pillow's own (private): should it change, preinit merely runs again.
    if getattr(PILImage, "_initialized", 1) < 1:
        PILImage._initialized = 1  # type: ignore[attr-defined]


def save(image: PILImage.Image, f: BinaryIO, fmt: str, **options: Any) -> None:
    """``image.save(f, fmt, ...)`` with only that format's plugin registered first."""
    register(fmt)
    image.save(f, fmt, **options)

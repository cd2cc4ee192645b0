"""TIFF: what a page declares (:class:`TiffLayout`, checked before any pixel), its tags as
metadata, and the pages Pillow cannot hold exactly (float colour, 16-bit grey+alpha, 32-bit
integers, signed samples) read by ``tifffile``, imported only then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from convtool.errors import ImageReadError
from convtool.images import metadata as meta
from convtool.images.decoded import (
    COMPLEX,
    Decoded,
    NeedsCodec,
    check_size,
    depth_of_dtype,
    fresh,
)
from convtool.images.encoders import import_tifffile as _import_tifffile


def tiff_metadata(fileobj: BinaryIO) -> meta.Metadata:
    """A TIFF's tags as metadata (ICC profile, EXIF, XMP, resolution); none if damaged."""
    try:
        return meta.from_tiff(fileobj)
    except Exception:  # damaged tags should not stop reading the pixels
        return meta.Metadata()


# TIFF tags read from the header, before any pixel is decoded.
_SAMPLES_PER_PIXEL, _BITS_PER_SAMPLE, _SAMPLE_FORMAT, _IMAGE_DEPTH, _PHOTOMETRIC = (
    277, 258, 339, 32997, 262,
)  # fmt: skip


_SAMPLE_KINDS = {1: "unsigned integer", 2: "signed integer", 3: "floating point"}


_SAMPLE_BITS = {1: (1, 2, 4, 8, 16, 32, 64), 2: (8, 16, 32, 64), 3: (16, 32, 64)}


_SEPARATED = 5  # photometric CMYK: 4 colour samples, + alpha


@dataclass(frozen=True)
class TiffLayout:
    """What a TIFF's first page declares: the fields that decide whether convtool reads it."""

    width: int
    height: int
    samples: int = 1
    bits: int = 8
    sample_format: int = 1  # 1 unsigned, 2 signed, 3 float, 4 undefined, 5-6 complex
    planes: int = 1  # ImageDepth: the slices of a volume
    photometric: int = 1

    @classmethod
    def from_tags(cls, width: int, height: int, tags: Any) -> TiffLayout:
        """From Pillow's parsed tags (``im.tag_v2``)."""

        def first(tag: int, default: int) -> int:
            value = tags.get(tag, default)
            return int(value[0] if isinstance(value, tuple) else value)

        return cls(
            width,
            height,
            samples=first(_SAMPLES_PER_PIXEL, 1),
            bits=first(_BITS_PER_SAMPLE, 1),
            sample_format=first(_SAMPLE_FORMAT, 1),
            planes=first(_IMAGE_DEPTH, 1),
            photometric=first(_PHOTOMETRIC, 1),
        )

    def check(self, name: str, max_pixels: int | None) -> None:
        """Refuse, from the header alone, what convtool does not read or what is too large.

        ``max_pixels`` counts the planes of a volume, and a pixel of more than 4 samples as
        ⌈samples / 4⌉ pixels; then volumes, more than 4 samples (5 for CMYK with alpha),
        complex or undefined samples and unusual bit depths (12-bit, 24-bit) are refused.
        """
        planes = max(1, self.planes) * max(1, math.ceil(self.samples / 4))
        check_size(self.width, self.height, name, max_pixels, planes=planes)
        if self.planes > 1:
            raise ImageReadError(
                f"TIFF volume of {self.planes} planes (ImageDepth) is not supported; convtool "
                "reads 2-D images",
                path=name,
            )
        most = 5 if self.photometric == _SEPARATED else 4
        if self.samples > most:
            raise ImageReadError(
                f"TIFF with {self.samples} samples per pixel is not supported; convtool reads "
                "grey, RGB or CMYK samples with at most one alpha",
                path=name,
            )
        if self.sample_format in (5, 6):
            raise ImageReadError(f"TIFF samples are {COMPLEX}", path=name)
        kind = _SAMPLE_KINDS.get(self.sample_format)
        if kind is None:
            raise ImageReadError(
                f"TIFF sample format {self.sample_format} (undefined) is not supported", path=name
            )
        if self.bits not in _SAMPLE_BITS[self.sample_format]:
            allowed = ", ".join(map(str, _SAMPLE_BITS[self.sample_format]))
            raise ImageReadError(
                f"TIFF with {self.bits}-bit {kind} samples is not supported ({kind} samples "
                f"of {allowed} bits are)",
                path=name,
            )


def decode_tifffile(
    src: Path | bytes, name: str, max_pixels: int | None, all_pages: bool = False
) -> Decoded:
    """Read a TIFF's first page (and, if asked, the others) exactly with tifffile."""
    tifffile = _import_tifffile()
    with fresh(src) as fileobj, tifffile.TiffFile(fileobj) as tif:
        if not tif.pages:
            raise ImageReadError("truncated or corrupt image (a TIFF without pages)", path=name)
        pages = [tif.pages[0]]
        if all_pages:  # reduced-resolution copies (previews) are not pages
            pages += [page for page in tif.pages[1:] if not int(page.subfiletype) & 1]
        for page in pages:  # every page's layout from its header, before any pixel
            tiff_layout(page).check(name, max_pixels if len(pages) == 1 else None)
        total = sum(page.imagewidth * page.imagelength for page in pages)
        first = pages[0]
        check_size(first.imagewidth, first.imagelength, name, max_pixels, len(pages), total)
        decoded = tifffile_page(pages[0], name)
        decoded.more = [tifffile_page(page, name) for page in pages[1:]]
    return decoded


def decode_tifffile_page(
    src: Path | bytes, name: str, max_pixels: int | None, index: int
) -> Decoded:
    """Page ``index`` of a TIFF, read exactly with tifffile (its layout checked first)."""
    tifffile = _import_tifffile()
    with fresh(src) as fileobj, tifffile.TiffFile(fileobj) as tif:
        page = tif.pages[index]
        tiff_layout(page).check(name, max_pixels)
        return tifffile_page(page, name)


def tiff_layout(page: Any) -> TiffLayout:
    """A tifffile page's layout, as its header declares it."""
    return TiffLayout(
        page.imagewidth,
        page.imagelength,
        samples=page.samplesperpixel,
        bits=page.bitspersample,
        sample_format=int(page.sampleformat),
        planes=page.imagedepth,
        photometric=int(page.photometric),
    )


def tifffile_page(page, name: str) -> Decoded:
    """Grey or RGB(A) samples of one TIFF page, any integer or float type."""
    photometric = int(page.photometric)
    if photometric not in (1, 2):  # MINISBLACK, RGB
        raise ImageReadError(
            f"TIFF photometric interpretation {page.photometric.name} is not supported",
            path=name,
        )
    try:
        array = page.asarray()
    except (KeyError, ValueError) as err:
        if "imagecodecs" in str(err):
            raise NeedsCodec from None
        raise
    orientation_tag = page.tags.get(274)
    orientation = int(orientation_tag.value) if orientation_tag else 1
    axes = page.axes
    if axes.startswith("S"):  # planar configuration: one plane a sample
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    # Grey takes 1 sample (+ alpha), RGB 3 (+ alpha); other sample counts are not images here.
    if array.ndim != 3 or array.shape[2] not in ((1, 2) if photometric == 1 else (3, 4)):
        raise ImageReadError(f"TIFF layout {axes} {array.shape} is not supported", path=name)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    has_alpha = array.shape[2] in (2, 4)
    return Decoded(array, has_alpha, depth_of_dtype(array.dtype), "TIFF", orientation)

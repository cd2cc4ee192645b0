"""The formats convtool reads, and nothing else: the gate every file passes first.

:func:`sniff` tells the format from a file's first bytes (:data:`HEAD_BYTES`); anything
else is refused with :func:`refusal`, which names what the file seems to be from a fixed
table and never echoes the file. Pillow is asked to open a file as that one format
(:func:`open_pillow`, the one call of ``Image.open``; see :mod:`convtool.images.plugins`).
A stream's declared size is checked from its head (:func:`check_head_size`) before the
rest is read.
"""

from __future__ import annotations

import io
import re
import struct
from typing import BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile

from convtool.images.decoded import check_size
from convtool.images.plugins import READ_NAMES, register

NPY_MAGIC = b"\x93NUMPY"


TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


HEAD_BYTES = 4096
"""Bytes read to tell a file's format (:func:`sniff`) before anything else is read."""


def sniff(head: bytes) -> str | None:
    """The format of a file from its first bytes: a READ_FORMATS name, ``"NPY"``, or None."""
    if head.startswith(NPY_MAGIC):
        return "NPY"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(TIFF_MAGICS):
        return "TIFF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if re.match(rb"P[1-6](\s|#|$)", head[:3]):  # PBM, PGM, PPM; not PFM ("Pf", "PF")
        return "PPM"
    return None


def check_head_size(head: bytes, name: str, max_pixels: int | None) -> None:
    """Refuse a stream over ``max_pixels`` from its first bytes, before reading the rest.

    The formats whose size sits at a fixed place near the start (PNG's IHDR, GIF's screen,
    BMP's header, a ``.npy`` header) are checked here, so a decompression bomb on stdin is
    refused after :data:`HEAD_BYTES`; the others are checked once the stream is read.
    """
    size = _head_size(head)
    if size is not None and min(size) > 0:  # no pixels: the decoder's message, as for files
        check_size(size[0], size[1], name, max_pixels)


def _head_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) as the first bytes declare them, where that is simple; else None."""
    fmt = sniff(head)
    try:
        if fmt == "PNG" and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])  # type: ignore[return-value]
        if fmt == "GIF":
            return struct.unpack("<HH", head[6:10])  # type: ignore[return-value]
        if fmt == "BMP":
            if struct.unpack("<I", head[14:18])[0] == 12:  # OS/2 core header: 16-bit sides
                return struct.unpack("<HH", head[18:22])  # type: ignore[return-value]
            width, height = struct.unpack("<ii", head[18:26])
            return abs(width), abs(height)
        if fmt == "NPY":
            fileobj = io.BytesIO(head)
            version = np.lib.format.read_magic(fileobj)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}[version]  # fmt: skip
            shape = read(fileobj)[0]
            return (shape[1], shape[0]) if len(shape) in (2, 3) else None
    except (struct.error, ValueError, KeyError, IndexError, SyntaxError, TypeError):
        return None  # cut short or unusual: the decoder will say what is wrong
    return None


# What a refused file is, told from its first bytes, so the error can say so. Only names
# from this table (or "text") are printed: nothing of the file itself.
_OTHER_FORMATS = (
    (rb"%!PS|\xc5\xd0\xd3\xc6", "a PostScript/EPS file"),
    (rb"%PDF-", "a PDF document"),
    (rb"(?:\xef\xbb\xbf)?\s*<(\?xml|svg|!DOCTYPE svg)", "an XML/SVG file"),
    (rb"\x00\x00\x00\x0cjP  |\xff\x4f\xff\x51", "a JPEG 2000 image"),
    (rb"\x00\x00\x00\x0cJXL |\xff\x0a", "a JPEG XL image"),
    (rb"....ftyp(heic|heix|hevc|mif1|msf1|avif|avis)", "a HEIF/AVIF image"),
    (rb"8BPS", "a Photoshop (PSD) file"),
    (rb"gimp xcf", "a GIMP (XCF) file"),
    (rb"\x00\x00[\x01\x02]\x00", "a Windows icon (ICO/CUR)"),
    (rb"DDS ", "a DirectDraw surface (DDS)"),
    (rb"qoif", "a QOI image"),
    (rb"P[fF]\s", "a PFM (float PNM) image"),
    (rb"SIMPLE  =", "a FITS file"),
    (rb"\x76\x2f\x31\x01", "an OpenEXR image"),
    (rb"icns", "an Apple icon (ICNS)"),
    (rb"\x59\xa6\x6a\x95", "a Sun raster image"),
    (rb"\x01\xda", "an SGI image"),
    (rb"\xd7\xcd\xc6\x9a|\x01\x00\x00\x00.{36} EMF", "a Windows metafile (WMF/EMF)"),
    (rb"PK\x03\x04|\x1f\x8b|BZh|\xfd7zXZ|7z\xbc\xaf", "an archive or compressed file"),
    (rb"MATLAB", "a MATLAB file"),
)


def identify(head: bytes) -> str:
    """What a file that convtool does not read seems to be, for the error message."""
    for pattern, what in _OTHER_FORMATS:
        if re.match(pattern, head, re.DOTALL):
            return what
    if head[:1] in (b"\x00", b"\xff") and len(set(head[:64])) == 1:
        return "all zero bytes" if head[:1] == b"\x00" else "all 0xFF bytes"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:  # binary, or a character cut at the end of the head
        if err.start < len(head) - 3:
            return "an unknown format"
        text = head[: err.start].decode("utf-8")
    return "text" if all(c.isprintable() or c.isspace() for c in text) else "an unknown format"


def refusal(head: bytes) -> str:
    """The one-line reason a file is not read: what it seems to be, and what convtool reads."""
    what = identify(head)
    if what in ("an unknown format", "text", "all zero bytes", "all 0xFF bytes"):
        return f"not an image, or a format convtool cannot read ({what}); it reads {READ_NAMES}"
    return f"{what}, not a format convtool reads; it reads {READ_NAMES} (convert it first)"


def open_pillow(fileobj: BinaryIO, fmt: str) -> ImageFile.ImageFile:
    """The one door to Pillow's decoders: open *fileobj* as *fmt* (a READ_FORMATS name) only."""
    register(fmt)
    return PILImage.open(fileobj, formats=[fmt])

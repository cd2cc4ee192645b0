"""EXIF blocks: patched in place, built from a TIFF's own tags, split into TIFF sub-IFDs.

An EXIF block here is the TIFF structure a JPEG's APP1 carries after ``Exif\\0\\0`` (a
byte-order mark, IFD0 with Make, Model, DateTime, Orientation, and pointers to the Exif
and GPS sub-IFDs). It travels as bytes, so a block read from a photo is written back
byte for byte, maker notes included (their private offsets survive only if nothing
moves). What convtool changes it changes in place: the Orientation tag becomes 1 once
the pixels are turned upright, and PixelXDimension/PixelYDimension follow the written
size. Only when a value does not fit where it is (a SHORT dimension above 65535), or the
block is damaged, is it rebuilt through Pillow's ``Image.Exif``.

TIFF output holds EXIF not as a block but as tags: IFD0's descriptive tags go in the
file's own IFD0 and the Exif and GPS sub-IFDs are appended after the image
(:func:`tiff_parts`, :func:`sub_ifd_bytes`).
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator
from typing import Any, BinaryIO

from PIL import Image as PILImage
from PIL import TiffImagePlugin

__all__ = [
    "EXIF_IFD",
    "GPS_IFD",
    "IFD0_TEXT_TAGS",
    "from_tiff",
    "orientation",
    "sub_ifd_bytes",
    "tiff_parts",
    "upright",
    "with_size",
]

ORIENTATION = 0x0112
EXIF_IFD = 0x8769
GPS_IFD = 0x8825
INTEROP_IFD = 0xA005
PIXEL_X, PIXEL_Y = 0xA002, 0xA003
# IFD0 tags of an EXIF block that describe the picture rather than its storage: the ones
# a TIFF output takes into its own IFD0 (strip offsets, sizes and the like are the file's).
IFD0_TEXT_TAGS = (270, 271, 272, 305, 306, 315, 33432)  # description … copyright
_SHORT, _LONG = 3, 4
_PREFIX = b"Exif\x00\x00"


def _strip_prefix(blob: bytes) -> bytes:
    return blob[len(_PREFIX) :] if blob.startswith(_PREFIX) else blob


def _entries(blob: bytes, offset: int, order: str) -> Iterator[tuple[int, int, int, int]]:
    """(position of the entry, tag, type, count) for each entry of the IFD at *offset*."""
    (count,) = struct.unpack_from(order + "H", blob, offset)
    for index in range(count):
        position = offset + 2 + 12 * index
        tag, kind, number = struct.unpack_from(order + "HHI", blob, position)
        yield position, tag, kind, number


def _layout(blob: bytes) -> tuple[str, int]:
    """The struct byte order and the IFD0 offset of a TIFF-structured block."""
    order = {b"II": "<", b"MM": ">"}.get(blob[:2])
    if order is None or struct.unpack_from(order + "H", blob, 2)[0] != 42:
        raise ValueError("not a TIFF-structured EXIF block")
    return order, struct.unpack_from(order + "I", blob, 4)[0]


def _find(blob: bytes, order: str, ifd: int, tag: int) -> tuple[int, int, int] | None:
    """(entry position, type, count) of *tag* in the IFD at *ifd*, or None."""
    for position, found, kind, count in _entries(blob, ifd, order):
        if found == tag:
            return position, kind, count
    return None


def _value(blob: bytes, order: str, entry: tuple[int, int, int]) -> int:
    position, kind, _ = entry
    return struct.unpack_from(order + ("H" if kind == _SHORT else "I"), blob, position + 8)[0]


def orientation(blob: bytes | None) -> int:
    """The Orientation tag of an EXIF block (1–8; 1 when absent or unreadable)."""
    if not blob:
        return 1
    try:
        blob = _strip_prefix(blob)
        order, ifd0 = _layout(blob)
        entry = _find(blob, order, ifd0, ORIENTATION)
        value = _value(blob, order, entry) if entry and entry[1] == _SHORT else 1
    except (ValueError, struct.error):
        return 1
    return value if 1 <= value <= 8 else 1


def _patched(blob: bytes, changes: dict[tuple[str, int], int]) -> bytes:
    """*blob* with the given (IFD, tag) values written in place; ValueError if one cannot be.

    IFD is ``"0"`` or ``"exif"``; a tag that is absent is left absent.
    """
    out = bytearray(blob)
    order, ifd0 = _layout(blob)
    where = {"0": ifd0}
    pointer = _find(blob, order, ifd0, EXIF_IFD)
    if pointer is not None:
        where["exif"] = _value(blob, order, pointer)
    for (ifd, tag), value in changes.items():
        if ifd not in where:
            continue
        entry = _find(blob, order, where[ifd], tag)
        if entry is None:
            continue
        position, kind, count = entry
        if count != 1 or kind not in (_SHORT, _LONG) or (kind == _SHORT and value > 0xFFFF):
            raise ValueError(f"tag {tag:#x} cannot be patched in place")
        field = struct.pack(order + ("H" if kind == _SHORT else "I"), value)
        out[position + 8 : position + 8 + len(field)] = field
    return bytes(out)


def _rebuilt(blob: bytes, changes: dict[tuple[str, int], int]) -> bytes:
    """The same changes made through Pillow, which re-lays the whole block out."""
    exif = PILImage.Exif()
    with warnings.catch_warnings():  # "Corrupt EXIF data": the answer is ours to give
        warnings.simplefilter("ignore")
        exif.load(_PREFIX + blob)
    if not len(exif):
        raise ValueError("no tags could be read")
    for (ifd, tag), value in changes.items():
        target = exif if ifd == "0" else exif.get_ifd(EXIF_IFD)
        if tag in target:
            target[tag] = value
    return _strip_prefix(exif.tobytes())


def _changed(blob: bytes | None, changes: dict[tuple[str, int], int]) -> bytes | None:
    if not blob:
        return None
    blob = _strip_prefix(blob)
    try:
        return _patched(blob, changes)
    except (ValueError, struct.error):
        pass
    try:
        return _rebuilt(blob, changes)
    except Exception:  # a block neither reader understands is not worth keeping
        return None


def upright(blob: bytes | None) -> bytes | None:
    """The block with Orientation 1 (the pixels have been turned upright); None if unusable."""
    return _changed(blob, {("0", ORIENTATION): 1})


def with_size(blob: bytes | None, width: int, height: int) -> bytes | None:
    """The block with PixelXDimension/PixelYDimension (where present) set to the size."""
    return _changed(blob, {("exif", PIXEL_X): width, ("exif", PIXEL_Y): height})


# --------------------------------------------------------------------------------------------
# TIFF: tags of the file itself rather than a block
# --------------------------------------------------------------------------------------------


def from_tiff(fileobj: BinaryIO) -> tuple[dict[int, Any], bytes | None]:
    """IFD0 of a TIFF file (tag → value), and its EXIF as a block (None if it has none).

    The block holds IFD0's descriptive tags (:data:`IFD0_TEXT_TAGS`, Orientation) and the
    Exif and GPS sub-IFDs; the file's storage tags stay out.
    """
    fileobj.seek(0)
    tags = PILImage.Exif()
    tags.load_from_fp(fileobj)
    ifd0 = dict(tags.items())
    exif = PILImage.Exif()
    for tag in (*IFD0_TEXT_TAGS, ORIENTATION):
        if tag in ifd0:
            exif[tag] = ifd0[tag]
    for tag in (EXIF_IFD, GPS_IFD):
        if tag in ifd0:
            sub = dict(tags.get_ifd(tag))
            if tag == EXIF_IFD and INTEROP_IFD in sub:
                sub[INTEROP_IFD] = dict(tags.get_ifd(INTEROP_IFD))
            if sub:
                exif[tag] = sub
    fileobj.seek(0)
    return ifd0, (_strip_prefix(exif.tobytes()) if len(exif) else None)


def tiff_parts(blob: bytes) -> tuple[dict[int, str], dict[int, dict[int, Any]]]:
    """Split a block for a TIFF file: IFD0's descriptive tags (text; Orientation as
    ``"1"``), and the sub-IFDs."""
    exif = PILImage.Exif()
    exif.load(_PREFIX + _strip_prefix(blob))
    text = {tag: str(exif[tag]) for tag in IFD0_TEXT_TAGS if tag in exif}
    if ORIENTATION in exif:
        text[ORIENTATION] = "1"  # the pixels are upright (the block says so too)
    subs = {}
    for tag in (EXIF_IFD, GPS_IFD):
        sub = dict(exif.get_ifd(tag))
        if tag == EXIF_IFD and INTEROP_IFD in sub:
            sub[INTEROP_IFD] = dict(exif.get_ifd(INTEROP_IFD))
        if sub:
            subs[tag] = sub
    return text, subs


def sub_ifd_bytes(tags: dict[int, Any], group: int, offset: int, byteorder: str) -> bytes:
    """One sub-IFD (and the values it points to) laid out to sit at *offset* in a file.

    *byteorder* is ``"<"`` or ``">"``, the file's; classic TIFF only (4-byte offsets).
    """
    head = (b"II*\x00" if byteorder == "<" else b"MM\x00*") + b"\x00" * 4
    ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh=head, group=group)
    for tag, value in tags.items():
        ifd[tag] = value
    return ifd.tobytes(offset)

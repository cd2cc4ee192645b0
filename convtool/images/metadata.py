"""What a file carries besides its pixels, and which output format can hold what.

:class:`Metadata` is the ICC colour profile, the EXIF block, the XMP packet, the
resolution (DPI) and text entries (PNG tEXt/zTXt/iTXt; a JPEG or GIF comment is the
entry ``Comment``). :func:`from_pillow` and :func:`from_tiff` read them;
:func:`for_format` keeps what an output format can hold and names the rest, so the
writer can say what was left out. :data:`HOLDS` is that table, the README's too.

Orientation: EXIF (and XMP) orientation is applied to the pixels when an image is read,
so the metadata read with it says 1; the pixel dimensions in EXIF and XMP follow the
written size (:func:`sized`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

from convtool.images import exif as exif_block

__all__ = ["HOLDS", "ITEMS", "Metadata", "for_format", "from_pillow", "from_tiff", "sized"]

ITEMS = ("icc", "exif", "xmp", "dpi", "text")
"""The kinds of metadata, in the order they are listed."""

_NAMES = {"icc": "ICC profile", "exif": "EXIF", "xmp": "XMP", "dpi": "DPI", "text": "text"}

HOLDS: dict[str, frozenset[str]] = {
    "png": frozenset({"icc", "exif", "xmp", "dpi", "text"}),
    "apng": frozenset({"icc", "exif", "xmp", "dpi", "text"}),
    "jpeg": frozenset({"icc", "exif", "xmp", "dpi", "comment"}),
    "tiff": frozenset({"icc", "exif", "xmp", "dpi"}),
    "webp": frozenset({"icc", "exif", "xmp"}),
    "gif": frozenset({"comment"}),
    "bmp": frozenset({"dpi"}),
    "pnm": frozenset(),
    "npy": frozenset(),
    "zarr": frozenset(),
    "zarr2": frozenset(),
}
"""Per output format, the metadata it holds; ``comment``: only the text entry ``Comment``."""

COMMENT = "Comment"
_XMP_KEY = "XML:com.adobe.xmp"
# JPEG segments hold at most 65533 bytes after their length; the EXIF and XMP markers
# spend some of it on their signatures. Longer blocks would need extensions Pillow lacks;
# an ICC profile may span 255 segments.
_JPEG_LIMITS = {"exif": 65533 - 6, "xmp": 65533 - 29, "text": 65533, "icc": 255 * (65533 - 14)}


@dataclass
class Metadata:
    """What a file carries besides pixels; every field None (or empty) when absent.

    ``icc``: the ICC profile's bytes. ``exif``: the EXIF block (TIFF-structured, without
    the ``Exif\\0\\0`` of JPEG's APP1). ``xmp``: the XMP packet (UTF-8 XML). ``dpi``:
    (horizontal, vertical) pixels per inch. ``text``: key → value (PNG text chunks; a
    JPEG or GIF comment under ``Comment``).
    """

    icc: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    dpi: tuple[float, float] | None = None
    text: dict[str, str] = field(default_factory=dict)

    def present(self) -> list[str]:
        """The kinds present (names from :data:`ITEMS`)."""
        return [item for item in ITEMS if getattr(self, item)]

    def __bool__(self) -> bool:
        return bool(self.present())


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def from_pillow(info: dict[str, Any], text: dict[str, Any] | None = None) -> Metadata:
    """Metadata from an opened Pillow image's ``info`` (and ``text``, for PNG), upright.

    Any EXIF orientation has been applied to the pixels, so it is reset to 1 here, in
    EXIF and XMP alike.
    """
    entries = {str(k): _as_text(v) for k, v in (text or {}).items() if str(k) != _XMP_KEY}
    comment = info.get("comment")
    if comment and COMMENT not in entries:
        entries[COMMENT] = _as_text(comment)
    return Metadata(
        icc=info.get("icc_profile") or None,
        exif=exif_block.upright(info.get("exif") or None),
        xmp=_upright_xmp(_as_bytes(info.get("xmp"))),
        dpi=_dpi(info),
        text={k: v for k, v in entries.items() if v},
    )


def from_tiff(fileobj: BinaryIO) -> Metadata:
    """Metadata from a TIFF's first IFD (ICC, XMP, resolution) and its EXIF tags, upright."""
    ifd0, block = exif_block.from_tiff(fileobj)
    dpi = None
    if 282 in ifd0 and 283 in ifd0 and ifd0.get(296, 2) in (2, 3):
        x, y = float(ifd0[282]), float(ifd0[283])
        scale = 2.54 if ifd0.get(296, 2) == 3 else 1.0  # unit 3: per centimetre
        dpi = (x * scale, y * scale) if x > 0 and y > 0 else None
    icc = ifd0.get(34675)
    return Metadata(
        icc=bytes(icc) if icc else None,
        exif=exif_block.upright(block),
        xmp=_upright_xmp(_as_bytes(ifd0.get(700))),
        dpi=dpi,
    )


def _as_bytes(value: Any) -> bytes | None:
    if isinstance(value, tuple):  # Pillow gives some TIFF byte tags as tuples of ints
        value = bytes(value)
    if isinstance(value, str):
        value = value.encode("utf-8")
    return bytes(value) if value else None


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).replace("\x00", "")  # C strings' terminators; PNG text holds no NUL


def _dpi(info: dict[str, Any]) -> tuple[float, float] | None:
    dpi = info.get("dpi")
    if dpi is None:  # a JPEG whose JFIF header gives only an aspect ratio has no "dpi"
        return None
    try:
        x, y = (float(v) for v in dpi)
    except (TypeError, ValueError):
        return None
    # pHYs stores whole pixels per metre: 300 dpi reads back as 299.9994, 150 as 150.0124
    x, y = (round(v, 1) for v in (x, y))
    return (x, y) if x > 0 and y > 0 else None


_XMP_TAGS = {"Orientation": "tiff:Orientation", "PixelX": "exif:PixelXDimension",
             "PixelY": "exif:PixelYDimension"}  # fmt: skip


def _set_xmp(xmp: bytes | None, name: str, value: int) -> bytes | None:
    """XMP with a property's value replaced, as an attribute or as an element."""
    if not xmp:
        return xmp
    tag = re.escape(_XMP_TAGS[name].encode())
    text = str(value).encode()
    xmp = re.sub(rb"(" + tag + rb"\s*=\s*[\"'])[^\"']*([\"'])", rb"\g<1>" + text + rb"\2", xmp)
    return re.sub(rb"(<" + tag + rb">)[^<]*(</" + tag + rb">)", rb"\g<1>" + text + rb"\2", xmp)


def _upright_xmp(xmp: bytes | None) -> bytes | None:
    return _set_xmp(xmp, "Orientation", 1)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def sized(metadata: Metadata, width: int, height: int) -> Metadata:
    """The metadata with the pixel dimensions in EXIF and XMP set to the written size."""
    if not (metadata.exif or metadata.xmp):
        return metadata
    xmp = _set_xmp(_set_xmp(metadata.xmp, "PixelX", width), "PixelY", height)
    return replace(metadata, exif=exif_block.with_size(metadata.exif, width, height), xmp=xmp)


def for_format(metadata: Metadata, fmt: str, channels: int) -> tuple[Metadata, list[str]]:
    """What of *metadata* a *fmt* file can hold, and the names of what it cannot.

    *channels* (1 or 3) is what is written: an ICC profile for another colour space (an
    RGB profile on a grey result, a CMYK one on pixels Pillow turned into RGB) would
    misdescribe the pixels, so it is left out and named.
    """
    holds = HOLDS[fmt]
    kept, dropped = Metadata(), []
    for item in ITEMS:
        value = getattr(metadata, item)
        if not value:
            continue
        if item == "text":
            fits = {k: v for k, v in value.items() if "text" in holds or _is_comment(k, holds)}
            if fmt == "jpeg":
                fits = {k: v for k, v in fits.items() if len(v.encode()) <= _JPEG_LIMITS["text"]}
            if fits:
                kept.text = fits
            left = [k for k in value if k not in fits]
            if left:
                dropped.append(f"text ({', '.join(left)})")
        elif item not in holds:
            dropped.append(_NAMES[item])
        elif item == "icc" and not _icc_fits(value, channels):
            dropped.append("ICC profile (made for another colour space)")
        elif fmt == "jpeg" and item in _JPEG_LIMITS and len(value) > _JPEG_LIMITS[item]:
            dropped.append(f"{_NAMES[item]} (too large for a JPEG segment)")
        else:
            setattr(kept, item, value)
    return kept, dropped


def _is_comment(key: str, holds: frozenset[str]) -> bool:
    return "comment" in holds and key == COMMENT


def _icc_fits(icc: bytes, channels: int) -> bool:
    """Whether a profile's colour space (header bytes 16–19) matches grey or RGB pixels."""
    space = icc[16:20]
    if space not in (b"GRAY", b"RGB ", b"CMYK", b"Lab ", b"YCbr"):
        return True  # unusual or damaged: let the reader judge it
    return space == (b"GRAY" if channels == 1 else b"RGB ")

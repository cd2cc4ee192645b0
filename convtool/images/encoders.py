"""Encoders: samples already mapped and cast for the output depth → one format's bytes.

Each encoder takes an :class:`Encoding`: every frame's samples, the depth, the output
controls (quality, chroma subsampling, progressive, TIFF compression) and the metadata
the format holds (already chosen by :func:`convtool.images.metadata.for_format`). PNG and
APNG are written by :mod:`convtool.images.png`, TIFF by ``tifffile`` (imported lazily;
Pillow's libtiff when a compression needs ``imagecodecs`` and that is missing), the rest
by Pillow.

One module, though past 400 lines: every encoder is a short function over the same
:class:`Encoding`, and the registry ``ENCODERS`` beside them is the one list of what convtool
writes; cutting them apart would scatter that list.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
from PIL import Image as PILImage

from convtool.choices import Compression, Subsampling, values
from convtool.errors import ConvtoolError, UsageError
from convtool.images import exif as exif_block
from convtool.images import plugins
from convtool.images.frames import Timing
from convtool.images.metadata import COMMENT, Metadata
from convtool.images.png import write_png
from convtool.images.ranges import Samples

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_QUALITY",
    "ENCODERS",
    "SUBSAMPLINGS",
    "Encoding",
    "import_tifffile",
]

DEFAULT_QUALITY = 92
"""JPEG quality when none is given (ImageMagick's default)."""

SUBSAMPLINGS = values(Subsampling)
"""JPEG chroma subsampling; the default 4:4:4 keeps the colour of filtered edges."""

COMPRESSIONS = values(Compression)
"""TIFF compressions; the default is deflate at the compress level (none at level 0)."""

_TIFFFILE_NAMES = {"deflate": "zlib", "lzw": "lzw", "zstd": "zstd", "jpeg": "jpeg",
                   "packbits": "packbits"}  # fmt: skip
_PILLOW_TIFF_NAMES = {"none": "raw", "deflate": "tiff_adobe_deflate", "lzw": "tiff_lzw",
                      "zstd": "zstd", "jpeg": "jpeg", "packbits": "packbits"}  # fmt: skip
# A classic TIFF addresses 4 GB; tifffile's own margin for its tags and offsets.
BIGTIFF_BYTES = 2**32 - 2**25
_GIF_DISPOSALS = {"none": 1, "background": 2, "previous": 1}  # see _encode_gif


@dataclass(frozen=True)
class Encoding:
    """What one file is made of: samples per frame and how to write them.

    ``frames``: (colour (H, W, C) integer or float samples, alpha (H, W) or None), the
    first frame first; for PNG and APNG ``samples`` instead, the same frames still to be
    mapped, band by band as the writer asks (``frames`` is empty then). ``level``: the
    zlib level of PNG and TIFF deflate/zstd.
    """

    frames: list[tuple[np.ndarray, np.ndarray | None]]
    depth: int | str
    level: int = 1
    quality: int | None = None
    subsampling: str | None = None
    progressive: bool = False
    compression: str | None = None
    metadata: Metadata = field(default_factory=Metadata)
    timing: Timing | None = None
    samples: list[Samples] | None = None  # PNG's frames, mapped band by band as written

    def stacked(self) -> list[np.ndarray]:
        """Each frame's colour with its alpha as the last channel."""
        if self.samples is not None:
            return [samples.whole() for samples in self.samples]
        return [_stacked(colour, alpha) for colour, alpha in self.frames]


def _stacked(colour: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    if alpha is None:
        return colour
    return np.concatenate([colour, alpha[:, :, np.newaxis].astype(colour.dtype)], axis=2)


def _pil_image(colour: np.ndarray, alpha: np.ndarray | None) -> PILImage.Image:
    """An 8-bit Pillow image (L, LA, RGB or RGBA) from uint8 samples."""
    samples = _stacked(colour, alpha)  # Pillow infers L, LA, RGB or RGBA from the shape
    return PILImage.fromarray(samples[:, :, 0] if samples.shape[2] == 1 else samples)


def _exif_app1(metadata: Metadata) -> bytes:
    return b"Exif\x00\x00" + metadata.exif if metadata.exif else b""


def _pillow_metadata(metadata: Metadata) -> dict[str, Any]:
    """Pillow's save arguments for ICC, EXIF and XMP (empty where absent)."""
    args: dict[str, Any] = {}
    if metadata.icc:
        args["icc_profile"] = metadata.icc
    if metadata.exif:
        args["exif"] = _exif_app1(metadata)
    if metadata.xmp:
        args["xmp"] = metadata.xmp
    return args


def _pillow_frames(encoding: Encoding, mode: str | None = None) -> list[PILImage.Image]:
    pictures = [_pil_image(colour, alpha) for colour, alpha in encoding.frames]
    return [p.convert(mode) if mode and p.mode != mode else p for p in pictures]


def _durations(encoding: Encoding) -> list[int] | None:
    if encoding.timing is None:
        return None
    return [round(d) for d in encoding.timing.durations]


def _encode_png(f: BinaryIO, encoding: Encoding) -> None:
    bits = 16 if encoding.depth == 16 else 8
    frames = encoding.samples
    if frames is None:  # an Encoding made with arrays: they are mapped already
        frames = [Samples.of(samples) for samples in encoding.stacked()]
    write_png(f, frames, bits, encoding.level, encoding.metadata, encoding.timing)


def _encode_jpeg(f: BinaryIO, encoding: Encoding) -> None:
    (colour, _), metadata = encoding.frames[0], encoding.metadata
    args = _pillow_metadata(metadata)
    if metadata.dpi:
        args["dpi"] = tuple(round(v) for v in metadata.dpi)
    if COMMENT in metadata.text:
        args["comment"] = metadata.text[COMMENT].encode("utf-8")
    plugins.save(
        _pil_image(colour, None),
        f,
        "JPEG",
        quality=encoding.quality or DEFAULT_QUALITY,
        # 4:4:4 by default: filtered edges keep their colour
        subsampling=encoding.subsampling or SUBSAMPLINGS[0],
        progressive=encoding.progressive,
        **args,
    )


def _encode_bmp(f: BinaryIO, encoding: Encoding) -> None:
    dpi = encoding.metadata.dpi
    plugins.save(
        _pil_image(encoding.frames[0][0], None),
        f,
        "BMP",
        **({"dpi": tuple(round(v) for v in dpi)} if dpi else {}),
    )


def _encode_webp(f: BinaryIO, encoding: Encoding) -> None:
    # Lossless unless a quality is given: convtool's results are exact. WebP has no grey.
    pictures = _pillow_frames(encoding)
    has_alpha = encoding.frames[0][1] is not None
    pictures = [p.convert("RGBA" if has_alpha else "RGB") for p in pictures]
    if encoding.quality is None:
        quality: dict[str, Any] = {"lossless": True}
    else:
        quality = {"lossless": False, "quality": encoding.quality}
    animation: dict[str, Any] = {}
    if len(pictures) > 1:
        animation = {"save_all": True, "append_images": pictures[1:]}
        if encoding.timing is not None:
            animation |= {"duration": _durations(encoding), "loop": encoding.timing.loop}
    metadata = _pillow_metadata(encoding.metadata)
    plugins.save(pictures[0], f, "WEBP", **quality, **animation, **metadata)


def _gif_frame(colour: np.ndarray, alpha: np.ndarray | None) -> PILImage.Image:
    """A GIF frame: grey exact, colour reduced to a palette, alpha to one transparent index.

    GIF transparency is all or nothing: pixels under half opacity become transparent.
    """
    if alpha is None:
        return _pil_image(colour, None)
    rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
    picture = PILImage.fromarray(np.ascontiguousarray(rgb)).quantize(255)
    indices = np.asarray(picture).copy()
    indices[alpha < 128] = 255
    out = PILImage.fromarray(indices, "P")
    palette = picture.getpalette()
    assert palette is not None, "a quantized image has a palette"
    out.putpalette(palette[: 255 * 3] + [0, 0, 0])
    out.info["transparency"] = 255
    return out


def _encode_gif(f: BinaryIO, encoding: Encoding) -> None:
    # Frames are whole canvases (as read), and Pillow writes each as its change from the
    # one before: that shows correctly after "none" and "background" but not after
    # "previous", which is therefore written as "none" (the same picture on screen).
    pictures = [_gif_frame(colour, alpha) for colour, alpha in encoding.frames]
    args: dict[str, Any] = {}
    if COMMENT in encoding.metadata.text:
        args["comment"] = encoding.metadata.text[COMMENT].encode("utf-8")
    if len(pictures) > 1:
        args |= {"save_all": True, "append_images": pictures[1:]}
        timing = encoding.timing
        if timing is not None:
            args["duration"] = _durations(encoding)
            args["disposal"] = [_GIF_DISPOSALS[d] for d in timing.disposals]
            if timing.loop != 1:  # GIF counts repeats after the first play; none: play once
                args["loop"] = max(0, timing.loop - 1) if timing.loop else 0
    plugins.save(pictures[0], f, "GIF", **args)


def _encode_pnm(f: BinaryIO, encoding: Encoding) -> None:
    _write_pnm(f, encoding.frames[0][0])


def _encode_npy(f: BinaryIO, encoding: Encoding) -> None:
    """A ``.npy`` file written band by band: its header, then the rows in C order.

    What ``np.save`` writes, without the whole mapped (and, for a view of channel planes,
    copied) image at once.
    """
    if encoding.samples is not None:
        samples = encoding.samples[0]
    else:
        samples = Samples.of(encoding.stacked()[0])
    height, width, channels = samples.shape
    shape = (height, width) if channels == 1 else (height, width, channels)
    header = {"descr": np.lib.format.dtype_to_descr(samples.dtype), "fortran_order": False,
              "shape": shape}  # fmt: skip
    if _header_too_long(header):
        np.lib.format.write_array_header_2_0(f, header)
    else:
        np.lib.format.write_array_header_1_0(f, header)
    step = max(1, _NPY_BAND_BYTES // max(1, width * channels * samples.dtype.itemsize))
    for start in range(0, height, step):
        f.write(samples.rows(start, min(start + step, height)).tobytes())


_NPY_BAND_BYTES = 1 << 20


def _header_too_long(header: dict[str, Any]) -> bool:
    """Whether the header needs format 2.0 (its text over 65535 bytes: a huge shape)."""
    return len(repr(header)) > 65000


def _write_pnm(f: BinaryIO, colour: np.ndarray) -> None:
    """Binary PGM (P5, grey) or PPM (P6, RGB), maxval 255 or 65535, big-endian samples."""
    height, width, channels = colour.shape
    magic = b"P5" if channels == 1 else b"P6"
    maxval = 255 if colour.dtype == np.uint8 else 65535
    f.write(b"%s\n%d %d\n%d\n" % (magic, width, height, maxval))
    f.write(colour.astype(">u2" if maxval == 65535 else np.uint8).tobytes())


# --------------------------------------------------------------------------------------------
# TIFF
# --------------------------------------------------------------------------------------------


def import_tifffile() -> Any:
    """tifffile, imported on first use (it costs start-up), or an error naming it."""
    try:
        import tifffile
    except ImportError:  # a declared dependency, but say what is missing rather than crash
        raise ConvtoolError(
            "this TIFF needs the 'tifffile' package: pip install tifffile"
        ) from None
    return tifffile


def _has_imagecodecs() -> bool:
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return False
    return True


def _compression(encoding: Encoding) -> str:
    if encoding.compression is not None:
        return encoding.compression
    return "deflate" if encoding.level else "none"


def _encode_tiff(f: BinaryIO, encoding: Encoding) -> None:
    compression = _compression(encoding)
    if compression == "jpeg" and encoding.depth != 8:
        raise UsageError(
            f"TIFF JPEG compression holds 8-bit samples, not depth {encoding.depth}; "
            "add --depth 8 or choose another --compression"
        )
    # tifffile deflates with zlib itself; the other codecs are imagecodecs'
    if compression in ("none", "deflate") or _has_imagecodecs():
        _write_tifffile(f, encoding, compression)
    else:
        _write_pillow_tiff(f, encoding, compression)


def _tifffile_args(encoding: Encoding, compression: str) -> dict[str, Any]:
    args: dict[str, Any] = {"compression": _TIFFFILE_NAMES.get(compression)}
    if compression in ("deflate", "zstd") and encoding.level:
        args["compressionargs"] = {"level": encoding.level}
    elif compression == "jpeg":
        args["compressionargs"] = {"level": encoding.quality or DEFAULT_QUALITY}
    return args


def _write_tifffile(f: BinaryIO, encoding: Encoding, compression: str) -> None:
    """Every frame a page; ICC and DPI on each, EXIF and XMP on the first."""
    tifffile = import_tifffile()
    metadata = encoding.metadata
    frames = encoding.stacked()
    bigtiff = sum(frame.nbytes for frame in frames) > BIGTIFF_BYTES
    text, subs = exif_block.tiff_parts(metadata.exif) if metadata.exif else ({}, {})
    if bigtiff:
        subs = {}  # sub-IFDs below are laid out with 4-byte offsets (classic TIFF)
    first_tags = [
        # as UTF-8 bytes: tifffile would turn a str's non-ASCII letters into "?"
        (tag, "H", 1, 1, True)
        if tag == exif_block.ORIENTATION
        else (tag, "s", 0, value.encode("utf-8"), True)
        for tag, value in text.items()
    ]
    # tifffile writes no EXIF or GPS pointer itself: placeholders, renamed afterwards
    first_tags += [(_PLACEHOLDERS[tag], "I", 1, 0, True) for tag in subs]
    if metadata.xmp:
        first_tags.append((700, "B", len(metadata.xmp), metadata.xmp, True))
    page_args = _tifffile_args(encoding, compression)
    if metadata.icc:
        page_args["iccprofile"] = metadata.icc
    if metadata.dpi:
        page_args |= {"resolution": metadata.dpi, "resolutionunit": "INCH"}
    buffer = io.BytesIO() if subs else None
    target = f if buffer is None else buffer
    with tifffile.TiffWriter(target, bigtiff=bigtiff, byteorder="<") as tif:
        for index, (samples, (colour, alpha)) in enumerate(
            zip(frames, encoding.frames, strict=True)
        ):
            if encoding.depth == "float":  # 32-bit float whatever the precision (.npy for more)
                samples = samples.astype(np.float32)
            channels = colour.shape[2]
            # grey and RGB are photometric; other counts (filter banks) are grey plus
            # unnamed samples
            extra = ["unspecified"] * (channels - 1) if channels not in (1, 3) else []
            extra += ["unassalpha"] if alpha is not None else []
            tif.write(
                samples if samples.shape[2] > 1 else samples[:, :, 0],
                photometric="rgb" if channels == 3 else "minisblack",
                planarconfig="contig" if samples.shape[2] > 1 else None,
                extrasamples=extra or None,
                metadata=None,  # no JSON ImageDescription: a plain TIFF
                software=False,
                extratags=first_tags if index == 0 else None,
                **page_args,
            )
    if buffer is not None:
        _append_sub_ifds(buffer, subs)
        f.write(buffer.getbuffer())


# Private tag numbers (the reusable range) that stand for the EXIF and GPS pointers
# while tifffile writes, which refuses those two tags.
_PLACEHOLDERS = {exif_block.EXIF_IFD: 65100, exif_block.GPS_IFD: 65101}


def _append_sub_ifds(buffer: io.BytesIO, subs: dict[int, dict[int, Any]]) -> None:
    """Lay the EXIF and GPS sub-IFDs out after the file and point IFD0's tags at them.

    The placeholders' entries get the real tag numbers and the sub-IFDs' offsets; IFD0's
    12-byte entries are then sorted again (TIFF wants ascending tags; their values are
    inline or at absolute offsets, so moving entries changes nothing else).
    """
    buffer.seek(0, io.SEEK_END)
    offsets = {}
    for tag, tags in subs.items():
        if buffer.tell() % 2:
            buffer.write(b"\x00")  # IFDs start on a word boundary
        offsets[tag] = buffer.tell()
        buffer.write(exif_block.sub_ifd_bytes(tags, tag, offsets[tag], "<"))
    data = buffer.getbuffer()
    (ifd0,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd0)
    start, end = ifd0 + 2, ifd0 + 2 + 12 * count
    entries = [bytes(data[p : p + 12]) for p in range(start, end, 12)]
    real = {code: tag for tag, code in _PLACEHOLDERS.items()}
    for index, entry in enumerate(entries):
        (code,) = struct.unpack_from("<H", entry)
        if code in real and real[code] in offsets:
            tag = real[code]
            entries[index] = struct.pack("<HHII", tag, 4, 1, offsets[tag])
    entries.sort(key=lambda entry: struct.unpack_from("<H", entry)[0])
    data[start:end] = b"".join(entries)


_PILLOW_TIFF_MODES = {(1, np.uint8): "L", (2, np.uint8): "LA", (3, np.uint8): "RGB",
                      (4, np.uint8): "RGBA", (1, np.uint16): "I;16",
                      (1, np.float32): "F"}  # fmt: skip


def _write_pillow_tiff(f: BinaryIO, encoding: Encoding, compression: str) -> None:
    """TIFF through Pillow's libtiff, for compressions tifffile needs imagecodecs for."""
    pictures = []
    for samples in encoding.stacked():
        if encoding.depth == "float":
            samples = samples.astype(np.float32)
        mode = _PILLOW_TIFF_MODES.get((samples.shape[2], samples.dtype.type))
        if mode is None:
            raise ConvtoolError(
                f"TIFF {compression} compression of {samples.shape[2]}-sample "
                f"{samples.dtype} pixels needs the 'imagecodecs' package: pip install "
                "imagecodecs (or use --compression deflate)"
            )
        plane = samples[:, :, 0] if samples.shape[2] == 1 else samples
        pictures.append(PILImage.fromarray(plane, mode if mode in ("I;16", "F") else None))
    metadata = encoding.metadata
    tags = PILImage.Exif()
    if metadata.exif:
        tags.load(_exif_app1(metadata))
    if metadata.xmp:
        tags[700] = metadata.xmp
    args: dict[str, Any] = {"compression": _PILLOW_TIFF_NAMES[compression], "exif": tags}
    if metadata.icc:
        args["icc_profile"] = metadata.icc
    if metadata.dpi:
        args["dpi"] = metadata.dpi
    if compression == "jpeg":
        args["quality"] = encoding.quality or DEFAULT_QUALITY
    if len(pictures) > 1:
        args |= {"save_all": True, "append_images": pictures[1:]}
    big = sum(samples.nbytes for samples in encoding.stacked()) > BIGTIFF_BYTES
    plugins.save(pictures[0], f, "TIFF", big_tiff=big, **args)


_Encoder = Callable[[BinaryIO, Encoding], None]

ENCODERS: dict[str, _Encoder] = {
    "png": _encode_png,
    "apng": _encode_png,
    "jpeg": _encode_jpeg,
    "bmp": _encode_bmp,
    "webp": _encode_webp,
    "gif": _encode_gif,
    "pnm": _encode_pnm,
    "tiff": _encode_tiff,
    "npy": _encode_npy,
}

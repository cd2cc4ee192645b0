"""Reading and writing images: the :class:`Image` type, :func:`read_image`, :func:`write_image`.

Images come in as an :class:`Image` whose ``pixels`` are floating point, shape ``(H, W, C)``
with ``C`` 1 (grey) or 3 (RGB), in the source's own value scale (0–255 for 8-bit, 0–65535
for 16-bit, as-is for 32-bit integer and float data), with alpha kept apart in ``alpha``,
the file's :class:`~convtool.images.metadata.Metadata` in ``metadata`` and, for an
animation or a multi-page TIFF, the later frames in ``frames`` (:mod:`convtool.images.frames`).
Nothing is clipped or rounded until :func:`write_image`, and then only as its
``range_mode`` says (:func:`map_range`).

This module is the public face and the policy: formats and the depths they hold, what
becomes of alpha and metadata, EXIF orientation, grey, stdin/stdout and atomic writes,
one-line errors. Decoding is :mod:`convtool.images.codecs`' and encoding
:mod:`convtool.images.encoders`' (with Pillow, and around its limits: 16-bit colour,
PNG and APNG, TIFF through tifffile); range mapping and the cast to an output depth are
:mod:`convtool.images.ranges`'. Of the whole package, only ``convtool.images`` imports Pillow.
"""

from __future__ import annotations

import dataclasses
import io
import os
import stat
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from convtool import stdio
from convtool.errors import (
    ConvtoolError,
    ImageReadError,
    ImageWriteError,
    ResourceLimitError,
    UsageError,
)
from convtool.images import output
from convtool.images.atomic import (
    atomic_write,
    remove_stale_temp_files,
    same_file,
    stale_temp_files,
)
from convtool.images.codecs import (
    ENCODERS,
    HEAD_BYTES,
    Decoded,
    NeedsCodec,
    check_head_size,
    decode,
    refusal,
    sniff,
)
from convtool.images.frames import (
    FRAME_CHOICES,
    Frame,
    Timing,
    check_frames,
    check_shape,
)
from convtool.images.layout import to_planes
from convtool.images.metadata import Metadata
from convtool.images.output import OUTPUT_CONTROLS, check_output_controls
from convtool.images.ranges import MAX_VALUES, RANGE_MODES, map_range

if TYPE_CHECKING:
    from convtool.images import tiles

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

DEFAULT_MAX_PIXELS = 250_000_000
"""Largest width × height read by default (about 16 000 × 16 000; 3 GB as float32 RGB)."""

GRAY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights for R, G, B, applied in floating point by ``gray=True``."""

IMAGE_EXTENSIONS = frozenset(
    {".png", ".apng", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif",
     ".ppm", ".pgm", ".pbm", ".pnm", ".npy", ".zarr"}
)  # fmt: skip
"""Extensions (lower case, with the dot) of the files read_image reads and batches look for."""

WRITE_EXTENSIONS = {
    ".png": "png", ".apng": "apng", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
    ".bmp": "bmp", ".webp": "webp", ".gif": "gif",
    ".ppm": "pnm", ".pgm": "pnm", ".pnm": "pnm", ".npy": "npy", ".zarr": "zarr",
}  # fmt: skip
"""Output extension → format name."""

FORMAT_DEPTHS: dict[str, tuple[int | str, ...]] = {
    "png": (8, 16),
    "apng": (8, 16),
    "jpeg": (8,),
    "tiff": (8, 16, 32, "float"),
    "bmp": (8,),
    "webp": (8,),
    "gif": (8,),
    "pnm": (8, 16),
    "npy": (8, 16, 32, "float"),
    "zarr": (8, 16, 32, "float"),
    "zarr2": (8, 16, 32, "float"),
}
"""The depths each output format can hold (``"float"``: 32-bit float TIFF, raw ``.npy``).

``zarr`` is a zarr v3 store, ``zarr2`` a v2 one (both need ``pip install "convtool[large]"``).
"""

_FOLDER_FORMATS = frozenset({"zarr", "zarr2"})  # outputs that are folders, written by tiles

_PRECISIONS = {"single": np.float32, "double": np.float64}


# The formats that hold any number of colour channels (filter banks, layers); the others
# hold 1 or 3.
_ANY_CHANNELS = frozenset({"tiff", "npy"})


@dataclass
class Image:
    """An image as floats in its source's value scale, with alpha kept apart.

    ``pixels``: (H, W, C) floating array, C = 1 (grey) or 3 (RGB); a 2-D array is taken as
    grey and given the channel axis. ``alpha``: (H, W) opacity, or None: 0..255 for 8-bit,
    0..65535 for 16-bit (the value scale), and 0..1 for float images (1 = opaque).
    ``depth``: the source depth, 8, 16, 32 or ``"float"``; it gives the value scale
    (:attr:`max_value`) and the default output depth. ``format``/``source``: where it came
    from (e.g. ``"PNG"``, ``"photo.png"``; ``"-"`` for stdin). ``metadata``: ICC profile,
    EXIF, XMP, DPI and text, written back where the output format holds them.
    ``frames``: the frames (or pages) after this first one, each a
    :class:`~convtool.images.frames.Frame` of the same depth, channels and alpha;
    ``timing``: how an animation plays (one duration and disposal per frame), or None.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    depth: int | str = "float"
    format: str | None = None
    source: str | None = None
    metadata: Metadata = field(default_factory=Metadata)
    frames: list[Frame] = field(default_factory=list)
    timing: Timing | None = None

    def __post_init__(self) -> None:
        self.pixels = check_shape(self.pixels, self.alpha, "Image")
        if self.alpha is not None:
            self.alpha = np.asarray(self.alpha)
        if self.depth not in (8, 16, 32, "float"):
            raise UsageError(f"Image depth must be 8, 16, 32 or 'float', got {self.depth!r}")
        self.frames = list(self.frames)
        for frame in self.frames:
            if frame.pixels.shape[2] != self.channels or (frame.alpha is None) != (
                self.alpha is None
            ):
                raise UsageError(
                    "Image frames must all have the first frame's channels, and alpha if it has"
                )
        if self.timing is not None and len(self.timing.durations) != self.frame_count:
            raise UsageError(
                f"Image timing has {len(self.timing.durations)} durations for "
                f"{self.frame_count} frames"
            )

    @property
    def frame_count(self) -> int:
        """Frames (or pages) in all: this one and the later ``frames``."""
        return 1 + len(self.frames)

    @property
    def max_value(self) -> float | None:
        """The top of the value scale: 255, 65535, 4294967295, or None for float data."""
        return MAX_VALUES.get(self.depth) if isinstance(self.depth, int) else None

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        """Colour channels (1 or 3 as read; filter banks and layers make others), alpha not
        counted."""
        return self.pixels.shape[2]


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Tell whether *path* has one of the readable extensions (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_image(
    source: str | os.PathLike[str],
    *,
    precision: str = "single",
    gray: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    stdin: BinaryIO | None = None,
    frames: str = "all",
    keep_8bit: bool = False,
) -> Image:
    """Read an image file (or ``"-"``: all of stdin) into an :class:`Image`.

    Formats: PNG and APNG, JPEG, TIFF, BMP, WebP, GIF and PNM, told from the bytes, not
    the name, and nothing else (EPS, PDF and the other formats Pillow knows are refused
    without being opened: :data:`convtool.images.codecs.READ_FORMATS`); ``.npy`` arrays
    (H×W or H×W×C, C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA; any real numeric or bool
    dtype; signed integers keep their sign), and zarr arrays laid out the same way (a store
    folder; needs ``pip install "convtool[large]"``). EXIF orientation is applied (and
    set to 1 in the metadata). Values keep their scale; 1-bit and bool become 0/255;
    palettes become RGB(A); CMYK, YCbCr and LAB become RGB through Pillow. ``precision``:
    ``"single"`` (float32) or ``"double"``. ``gray``: colour → one BT.601 luma channel
    (:data:`GRAY_WEIGHTS`). ``max_pixels``: width × height (times the frames) checked from
    the header before decoding (None or 0: no limit). ``stdin``: a binary stream to use
    instead of ``sys.stdin.buffer`` for ``"-"``; it, and any path that is not a regular
    file, is read within limits (:func:`read_stream`). ``frames``: ``"all"`` frames of an
    animation or pages of a TIFF (composited as shown), or only the ``"first"``.
    ``keep_8bit``: an 8-bit image of one frame (not made grey) keeps its uint8 samples as
    ``pixels`` and ``alpha``, oriented, for filters that work in integers; :func:`float_image`
    turns it into what a plain read gives.
    """
    if precision not in _PRECISIONS:
        raise UsageError(f"precision must be 'single' or 'double', got {precision!r}")
    if frames not in FRAME_CHOICES:
        raise UsageError(f"--frames must be one of {', '.join(FRAME_CHOICES)}, got {frames!r}")
    if max_pixels is not None and max_pixels < 0:
        raise UsageError(
            f"--max-pixels must be a positive number of pixels, or 0 for no limit, got {max_pixels}"
        )
    name = str(source)
    with _read_errors(name):
        if name == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            decoded = decode(read_stream(stream, name, max_pixels), name, max_pixels, frames)
        else:
            path = Path(source)
            info = path.stat()
            if stat.S_ISDIR(info.st_mode) and _tiles().is_zarr_store(path):
                tiles = _tiles()
                array, reader = tiles.read_whole(path, max_pixels)
                decoded = Decoded(array, reader.has_alpha, reader.depth, reader.format)
                return _to_image(decoded, name, _PRECISIONS[precision], gray)
            if stat.S_ISDIR(info.st_mode):
                raise ImageReadError("is a directory, not an image", path=name)
            if stat.S_ISREG(info.st_mode):
                if info.st_size == 0:
                    raise ImageReadError("empty file", path=name)
                decoded = decode(path, name, max_pixels, frames)  # read as the decoder needs it
            else:
                # A pipe (/dev/stdin, <(...)) or a device can be read only once, and may
                # never end (/dev/zero): take its bytes as for "-", within the limits.
                with open(path, "rb") as stream:
                    data = read_stream(stream, name, max_pixels)
                decoded = decode(data, name, max_pixels, frames)
    if keep_8bit and decoded.depth == 8 and not decoded.more and not gray:
        array = _apply_orientation(decoded.array, decoded.orientation)
        alpha = array[:, :, -1] if decoded.has_alpha else None
        pixels = array[:, :, :-1] if decoded.has_alpha else array
        return Image(pixels, alpha, 8, decoded.format, name, decoded.metadata, [], decoded.timing)
    return _to_image(decoded, name, _PRECISIONS[precision], gray)


def float_image(image: Image, precision: str = "single") -> Image:
    """*image* with float pixels and alpha, as :func:`read_image` gives them without
    ``keep_8bit`` (an image whose pixels are float already is returned as it is)."""
    if image.pixels.dtype.kind == "f":
        return image
    dtype = _PRECISIONS[precision]
    alpha = None if image.alpha is None else to_planes(image.alpha[:, :, np.newaxis], dtype)[0]
    pixels = to_planes(image.pixels, dtype).transpose(1, 2, 0)
    return dataclasses.replace(image, pixels=pixels, alpha=alpha)


def read_band(
    reader: tiles.BandReader,
    start: int,
    stop: int,
    *,
    precision: str = "single",
    gray: bool = False,
) -> Image:
    """Rows ``start..stop-1`` of an image read band by band, as :func:`read_image` gives them.

    ``reader``: from :func:`convtool.images.tiles.open_reader`. Pixels and alpha are those
    rows of what :func:`read_image` returns for the whole file (its first frame), value for
    value; the metadata is the reader's.
    """
    if precision not in _PRECISIONS:
        raise UsageError(f"precision must be 'single' or 'double', got {precision!r}")
    decoded = Decoded(reader.read(start, stop), reader.has_alpha, reader.depth, reader.format)
    return _to_image(decoded, reader.name, _PRECISIONS[precision], gray)


STREAM_BYTES_PER_PIXEL = 32
"""The most a pixel of any format read takes, uncompressed: 4 samples of float64."""
_STREAM_SLACK = 16 << 20  # headers and metadata (ICC profiles, EXIF) beyond the pixels
_STREAM_CHUNK = 1 << 20


def read_stream(stream: BinaryIO, name: str, max_pixels: int | None) -> bytes:
    """All the bytes of a stream (stdin, a pipe, a device), within limits; the image's bytes.

    Its first bytes must show a format convtool reads (:data:`codecs.HEAD_BYTES` are read
    to tell, no more): anything else (``/dev/zero``, text, EPS, ...) is refused at once,
    as is a PNG, GIF, BMP or ``.npy`` header over ``max_pixels``. Then at most ``32 × max_pixels`` bytes (plus 16 MB of metadata) are read, the largest an
    image within ``--max-pixels`` can take uncompressed (4 float64 samples a pixel): a
    longer stream is refused naming the limit. ``max_pixels`` None or 0: no limit.
    """
    head = _read_up_to(stream, HEAD_BYTES)
    if not head:
        what = "no data on standard input" if name == "-" else "no data (an empty stream)"
        raise ImageReadError(what, path=name)
    if sniff(head) is None:
        raise ImageReadError(refusal(head), path=name)
    check_head_size(head, name, max_pixels)  # a bomb's header is refused before its data
    limit = max_pixels * STREAM_BYTES_PER_PIXEL + _STREAM_SLACK if max_pixels else None
    chunks = [head]
    size = len(head)
    while True:
        chunk = stream.read(_STREAM_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if limit is not None and size > limit:
            raise ResourceLimitError(
                f"the stream holds more than {_megabytes(limit)}, more than an image within "
                f"--max-pixels ({max_pixels:,}) takes; raise --max-pixels (0 for no limit) "
                "or read it from a file",
                path=name,
            )
        chunks.append(chunk)


def _read_up_to(stream: BinaryIO, count: int) -> bytes:
    """Up to *count* bytes, fewer only at the end of the stream (a pipe gives them in parts)."""
    parts, size = [], 0
    while size < count:
        part = stream.read(count - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _megabytes(count: int) -> str:
    return f"{count / (1 << 20):,.0f} MB"


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored (H, W, C) samples upright, as ImageOps.exif_transpose does."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, -1)
    if orientation == 7:
        return array[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, 1)
    return array


def _to_image(decoded: Decoded, name: str, dtype: type, gray: bool) -> Image:
    """Orient, split alpha off, optionally reduce to grey, and convert to float planes.

    Pixels are the (H, W, C) view of new (C, H, W) planes (:mod:`convtool.images.layout`):
    one pass de-interleaves and converts, and filters read the planes without a copy.

    float64 values beyond float32's range become ±inf with ``precision="single"`` (no
    warning on stderr); filtering refuses them with a hint for ``--precision double``.
    Later frames are made alike: grey ones become RGB if any frame is colour, and all get
    alpha (opaque where they had none) if any has it.
    """
    parts = [decoded, *decoded.more]
    if any(part.depth != decoded.depth for part in parts):
        raise ImageReadError("the frames (pages) of this file differ in depth", path=name)
    colour = any(part.array.shape[2] - part.has_alpha == 3 for part in parts)
    with_alpha = any(part.has_alpha for part in parts)
    top = MAX_VALUES.get(decoded.depth, 1.0) if isinstance(decoded.depth, int) else 1.0
    pictures = [_frame_arrays(part, dtype, gray, colour, with_alpha, top) for part in parts]
    pixels, alpha = pictures[0]
    frames = [Frame(p, a) for p, a in pictures[1:]]
    return Image(
        pixels, alpha, decoded.depth, decoded.format, name, decoded.metadata, frames, decoded.timing
    )


def _frame_arrays(
    decoded: Decoded, dtype: type, gray: bool, colour: bool, with_alpha: bool, top: float
) -> tuple[np.ndarray, np.ndarray | None]:
    array = _apply_orientation(decoded.array, decoded.orientation)
    alpha = None
    with np.errstate(over="ignore"):
        if decoded.has_alpha:
            alpha = to_planes(array[:, :, -1:], dtype)[0]
            array = array[:, :, :-1]
        elif with_alpha:
            alpha = np.full(array.shape[:2], top, dtype=dtype)
        if gray and array.shape[2] == 3:
            pixels = (array.astype(np.float64) @ np.asarray(GRAY_WEIGHTS))[:, :, np.newaxis]
            pixels = pixels.astype(dtype)
        elif colour and not gray and array.shape[2] == 1:
            pixels = to_planes(np.repeat(array, 3, axis=2), dtype).transpose(1, 2, 0)
        else:  # the (H, W, C) view of new (C, H, W) planes: the layout filters read
            pixels = to_planes(array, dtype).transpose(1, 2, 0)
    return pixels, alpha


@contextmanager
def _read_errors(name: str) -> Iterator[None]:
    """Turn whatever reading raises into a one-line ImageReadError/ResourceLimitError."""
    try:
        yield
    except ConvtoolError:
        raise
    except Exception as err:
        raise _read_error_for(err, name) from None


def _read_error_for(err: Exception, name: str) -> ConvtoolError:
    if isinstance(err, FileNotFoundError):
        return ImageReadError("no such file", path=name)
    if isinstance(err, IsADirectoryError):
        return ImageReadError("is a directory, not an image", path=name)
    if isinstance(err, PermissionError):
        return ImageReadError("permission denied", path=name)
    if isinstance(err, UnidentifiedImageError):
        return ImageReadError("not an image, or a format convtool cannot read", path=name)
    if isinstance(err, PILImage.DecompressionBombError):
        return ResourceLimitError(f"{_first_line(err)}; see --max-pixels", path=name)
    if isinstance(err, MemoryError):
        return ResourceLimitError("not enough memory to read this image", path=name)
    if isinstance(err, NeedsCodec):
        return ImageReadError(
            "this TIFF's compression needs the 'imagecodecs' package (pip install imagecodecs)",
            path=name,
        )
    if isinstance(err, OSError) and err.errno is not None:
        return ImageReadError(f"cannot read: {(err.strerror or str(err)).lower()}", path=name)
    return ImageReadError(f"truncated or corrupt image ({_first_line(err)})", path=name)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def format_for(path: str | os.PathLike[str], format: str | None = None) -> str:  # noqa: A002
    """Return the output format name for *path* (or the explicit *format*).

    Names: png, jpeg, tiff, bmp, webp, gif, pnm, npy; ``format`` also takes the extension
    spellings (jpg, tif, ppm, pgm). ``"-"`` (stdout) defaults to png. Unknown → UsageError.
    """
    known = ", ".join(sorted({ext.lstrip(".") for ext in WRITE_EXTENSIONS}))
    if format is not None:
        key = "." + str(format).lower().lstrip(".")
        if key in WRITE_EXTENSIONS:
            return WRITE_EXTENSIONS[key]
        if key[1:] in FORMAT_DEPTHS:
            return key[1:]
        raise UsageError(f"unknown output format {format!r}; supported: {known}")
    if str(path) == "-":
        return "png"
    suffix = Path(path).suffix.lower()
    if suffix in WRITE_EXTENSIONS:
        return WRITE_EXTENSIONS[suffix]
    what = f"extension {suffix!r}" if suffix else "no extension"
    raise UsageError(f"cannot write {str(path)!r}: {what}; use one of {known} (or --format)")


def check_format_agrees(dest: str | os.PathLike[str], format: str | None) -> None:  # noqa: A002
    """Refuse a ``format`` that contradicts ``dest``'s image extension (``x.png`` as JPEG).

    Nothing to check without ``format``, for ``"-"``, or for a name without an image
    extension (``result.dat`` takes any format). Spellings of one format agree (``.jpeg``
    with ``jpg``, ``.tif`` with ``tiff``). UsageError otherwise.
    """
    name = str(dest)
    if format is None or name == "-":
        return
    wanted = format_for("-", format)
    suffix = Path(name).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS or _kind(WRITE_EXTENSIONS.get(suffix)) == _kind(wanted):
        return
    raise UsageError(
        f"the name ends in {suffix} but --format {format} writes {wanted.upper()}; "
        f"make them agree, or leave out --format to write what the name says",
        path=name,
    )


def _kind(fmt: str | None) -> str | None:
    """An APNG is a PNG file: ``anim.png`` with ``--format apng`` agrees."""
    return "png" if fmt == "apng" else fmt


def write_image(
    dest: str | os.PathLike[str],
    image: Image,
    *,
    format: str | None = None,  # noqa: A002 - the name users know from the CLI
    depth: int | str | None = None,
    range_mode: str | None = None,
    compress_level: int = 1,
    quality: int | None = None,
    subsampling: str | None = None,
    progressive: bool = False,
    compression: str | None = None,
    background: str | tuple[int, int, int] | None = None,
    stdout: BinaryIO | None = None,
    inside: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Write *image* (all its frames, its metadata) to *dest* atomically, or to stdout (``"-"``).

    ``format``: from dest's extension unless given (``"-"``: png); see :func:`format_for`.
    ``depth``: 8, 16, 32 or ``"float"`` as the format allows (:data:`FORMAT_DEPTHS`);
    None = the image's depth if the format holds it, else the deepest integer depth below
    it (so 16-bit → JPEG is 8-bit), 8 for float images; ``.npy`` defaults to raw float.
    Between 8 and 16 bits values are rescaled (×257, ÷257); float and 32-bit values are
    written as they are. ``range_mode`` (:func:`map_range`): integer outputs default to
    ``clip``, then round half to even; float outputs are raw unless a mode is given, which
    then maps into the image's own scale (0..1 for float images); ``rescale`` spans all
    frames. Alpha is opacity: 0..max for integer depths, 0..1 for float (so float alpha
    0.5 is 8-bit 128, and 8-bit 255 is float 1.0), clipped, never range-mapped. PNG, APNG,
    TIFF, WebP and ``.npy`` (as the last channel) keep it; GIF as all-or-nothing
    transparency; JPEG, BMP and PNM get the colour composited over ``background`` (a
    colour name, ``#rrggbb``, ``R,G,B`` or a triple; default white). A ``format``
    contradicting dest's image extension is refused (:func:`check_format_agrees`).

    Output controls (a :class:`UsageError` for a format they do not apply to, see
    :data:`OUTPUT_CONTROLS`): ``compress_level`` 0–9, the zlib level of PNG and TIFF;
    ``quality`` 1–100 for JPEG (default 92), for WebP (lossy; lossless without it) and for
    TIFF's JPEG compression; ``subsampling`` ``4:4:4`` (default), ``4:2:2`` or ``4:2:0``
    and ``progressive`` for JPEG; ``compression`` for TIFF: none, deflate (the default;
    none at level 0), lzw, zstd, jpeg or packbits, BigTIFF past 4 GB.

    Several frames need a format that holds them (GIF, APNG, WebP, TIFF). The image's
    metadata is written where the format holds it, with EXIF's and XMP's pixel size set
    to the written size. Returns one line for each thing the format could not hold
    (what was left out; alpha composited without a ``background`` given), for the caller
    to show; nothing is printed.

    ``inside``: a folder *dest* must stay in (see :func:`convtool.images.atomic.atomic_write`:
    the folders between are created and never followed through a symbolic link). Stdout
    gets every byte or a :class:`~convtool.errors.StdoutError`
    (:func:`convtool.stdio.write_all`).
    """
    dest_name = str(dest)
    check_format_agrees(dest_name, format)
    fmt = format_for(dest_name, format)
    out_depth = output_depth(fmt, image.depth, depth)
    if not isinstance(compress_level, int) or not 0 <= compress_level <= 9:
        raise UsageError(f"compress level must be an integer from 0 to 9, got {compress_level!r}")
    controls = {"quality": quality, "subsampling": subsampling, "progressive": progressive,
                "compression": compression}  # fmt: skip
    check_output_controls(
        fmt,
        quality=quality,
        subsampling=subsampling,
        progressive=progressive,
        compression=compression,
    )
    check_frames(fmt, image.frame_count, image.source)
    if image.channels not in (1, 3) and fmt not in _ANY_CHANNELS:
        raise UsageError(
            f"{fmt.upper()} holds 1 or 3 colour channels, the result has {image.channels}; "
            "write .npy or .tif (or, with --stack, any image format for a contact sheet)",
            path=dest_name,
        )
    encoding, notes = output.prepare(
        image, fmt, out_depth, range_mode, compress_level, controls, background
    )
    if fmt in _FOLDER_FORMATS:
        if dest_name == "-":
            raise UsageError(f"a {fmt} store is a folder; it cannot go to stdout (-o -)")
        colour, alpha = encoding.frames[0]
        _tiles().write_whole(dest_name, fmt, colour, alpha, compress_level)
        return notes
    encode = ENCODERS[fmt]

    def write(fileobj: BinaryIO) -> None:
        try:
            encode(fileobj, encoding)
        except (ValueError, TypeError, KeyError, struct.error) as err:
            message = f"cannot encode as {fmt.upper()}: {_first_line(err)}"
            raise ImageWriteError(message, path=dest_name) from None

    if dest_name == "-":
        buffer = io.BytesIO()
        write(buffer)
        stdio.write_all(stdout if stdout is not None else sys.stdout.buffer, buffer.getbuffer())
        return notes
    atomic_write(dest_name, write, inside=inside)
    return notes


def output_depth(fmt: str, image_depth: int | str, depth: int | str | None) -> int | str:
    """The depth written to *fmt* for an image of *image_depth* when *depth* is asked (or None)."""
    allowed = FORMAT_DEPTHS[fmt]
    if depth is not None:
        wanted = depth if depth == "float" else _as_int_depth(depth)
        if wanted not in allowed:
            holds = " or ".join(str(d) for d in allowed)
            raise UsageError(f"{fmt.upper()} cannot hold depth {depth!r}; it holds {holds}")
        return wanted
    if fmt == "npy":
        return "float"
    if image_depth in allowed:
        return image_depth
    if image_depth == "float":
        return 8
    return max(d for d in allowed if d != "float" and d <= image_depth)  # type: ignore[operator]


def _as_int_depth(depth: int | str) -> int | str:
    try:
        return int(depth)
    except (TypeError, ValueError):
        return depth


def _tiles():
    """:mod:`convtool.images.tiles` (zarr and tiled TIFF stores, a thread pool), imported
    only when a store is read or written: an ordinary file never needs it."""
    from convtool.images import tiles

    return tiles

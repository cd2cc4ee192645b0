"""Reading images: :func:`read_image` (files, ``-``, pipes, zarr stores) and :func:`read_band`.

The format is told from the first bytes (:mod:`convtool.images.sniff`), the size checked
before decoding, EXIF orientation applied, alpha split off, and the decoded samples turned
into float channel planes in one banded pass (:mod:`convtool.images.layout`), or kept as
uint8 for the 8-bit route. Any decoder's failure becomes one line naming the file.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from convtool.errors import (
    ConvtoolError,
    ImageReadError,
    ResourceLimitError,
    UsageError,
)
from convtool.images.codecs import (
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
)
from convtool.images.layout import to_planes
from convtool.images.ranges import MAX_VALUES

if TYPE_CHECKING:
    from convtool.images import tiles

from convtool.images.image import (
    DEFAULT_MAX_PIXELS,
    GRAY_WEIGHTS,
    PRECISIONS,
    Image,
    first_line,
)


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
    palettes become RGB(A); CMYK, YCbCr and LAB become RGB through Pillow.

    Parameters
    ----------
    source : str or os.PathLike
        The file (or zarr store folder) to read; ``"-"`` reads all of stdin.
    precision : {"single", "double"}
        The pixels' type: float32 or float64.
    gray : bool
        Colour becomes one BT.601 luma channel (:data:`GRAY_WEIGHTS`).
    max_pixels : int or None
        Width × height (times the frames), checked from the header before decoding (None
        or 0: no limit).
    stdin : binary stream, optional
        What to read for ``"-"`` instead of ``sys.stdin.buffer``; it, and any path that is
        not a regular file, is read within limits (:func:`read_stream`).
    frames : {"all", "first"}
        Every frame of an animation or page of a TIFF (composited as shown), or only the
        first.
    keep_8bit : bool
        An 8-bit image of one frame (not made grey) keeps its uint8 samples as ``pixels``
        and ``alpha``, oriented, for filters that work in integers; :func:`float_image`
        turns it into what a plain read gives.

    Returns
    -------
    Image
        ``pixels`` (H, W, C) floats in the file's value scale (0..255 for 8-bit), ``alpha``
        kept apart, the ``depth``, ``format``, ``metadata`` and the other ``frames``.

    Raises
    ------
    convtool.errors.ImageReadError
        A file that is missing, unreadable, truncated or of a format that is not read.
    convtool.errors.ResourceLimitError
        An image larger than ``max_pixels``.
    convtool.errors.UsageError
        An unknown ``precision`` or ``frames``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from convtool.images import Image, read_image, write_image
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "ramp.png")
    >>> write_image(path, Image(np.array([[0.0, 127.6, 255.0]]), depth=8))
    []
    >>> image = read_image(path)
    >>> image.pixels.shape, image.pixels.dtype, image.depth, image.format
    ((1, 3, 1), dtype('float32'), 8, 'PNG')
    >>> image.pixels[..., 0].tolist()  # the written 8-bit samples, in their own scale
    [[0.0, 128.0, 255.0]]
    >>> read_image(path, max_pixels=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    convtool.errors.ResourceLimitError: ...ramp.png: image is 3×1 = 3 pixels, over the limit of 2...
    >>> folder.cleanup()
    """
    if precision not in PRECISIONS:
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
                return to_image(decoded, name, PRECISIONS[precision], gray)
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
        array = apply_orientation(decoded.array, decoded.orientation)
        alpha = array[:, :, -1] if decoded.has_alpha else None
        pixels = array[:, :, :-1] if decoded.has_alpha else array
        return Image(pixels, alpha, 8, decoded.format, name, decoded.metadata, [], decoded.timing)
    return to_image(decoded, name, PRECISIONS[precision], gray)


def float_image(image: Image, precision: str = "single") -> Image:
    """*image* with float pixels and alpha, as :func:`read_image` gives them without
    ``keep_8bit`` (an image whose pixels are float already is returned as it is)."""
    if image.pixels.dtype.kind == "f":
        return image
    dtype = PRECISIONS[precision]
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
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be 'single' or 'double', got {precision!r}")
    decoded = Decoded(reader.read(start, stop), reader.has_alpha, reader.depth, reader.format)
    return to_image(decoded, reader.name, PRECISIONS[precision], gray)


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


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
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


def to_image(decoded: Decoded, name: str, dtype: type, gray: bool) -> Image:
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
    array = apply_orientation(decoded.array, decoded.orientation)
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
        return ResourceLimitError(f"{first_line(err)}; see --max-pixels", path=name)
    if isinstance(err, MemoryError):
        return ResourceLimitError("not enough memory to read this image", path=name)
    if isinstance(err, NeedsCodec):
        return ImageReadError(
            "this TIFF's compression needs the 'imagecodecs' package (pip install imagecodecs)",
            path=name,
        )
    if isinstance(err, OSError) and err.errno is not None:
        return ImageReadError(f"cannot read: {(err.strerror or str(err)).lower()}", path=name)
    return ImageReadError(f"truncated or corrupt image ({first_line(err)})", path=name)


def _tiles():
    """:mod:`convtool.images.tiles` (zarr and tiled TIFF stores, a thread pool), imported
    only when a store is read or written: an ordinary file never needs it."""
    from convtool.images import tiles

    return tiles

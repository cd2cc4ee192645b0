"""Writing images: :func:`write_image`, the output format and depth, and the policy around
the encoders: what becomes of alpha and metadata (:mod:`convtool.images.output`), range
mapping (:mod:`convtool.images.ranges`), stdout and atomic writes.
"""

from __future__ import annotations

import io
import os
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from convtool import stdio
from convtool.errors import (
    ImageWriteError,
    UsageError,
)
from convtool.images import output
from convtool.images.atomic import (
    atomic_write,
)
from convtool.images.codecs import (
    ENCODERS,
)
from convtool.images.frames import (
    check_frames,
)
from convtool.images.output import check_output_controls

if TYPE_CHECKING:
    pass

from convtool.images.image import (
    ANY_CHANNELS,
    FOLDER_FORMATS,
    FORMAT_DEPTHS,
    IMAGE_EXTENSIONS,
    WRITE_EXTENSIONS,
    Image,
    first_line,
)


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

    Several frames need a format that holds them (GIF, APNG, WebP, TIFF). The image's
    metadata is written where the format holds it, with EXIF's and XMP's pixel size set
    to the written size. Alpha is opacity: 0..max for integer depths, 0..1 for float (so
    float alpha 0.5 is 8-bit 128, and 8-bit 255 is float 1.0), clipped, never range-mapped.
    PNG, APNG, TIFF, WebP and ``.npy`` (as the last channel) keep it; GIF as all-or-nothing
    transparency; JPEG, BMP and PNM get the colour composited over ``background``.

    Parameters
    ----------
    dest : str or os.PathLike
        The file to write (through a temporary file renamed over it), or ``"-"``: stdout.
    image : Image
        What to write: pixels in their value scale, alpha, metadata, frames.
    format : str, optional
        From dest's extension unless given (``"-"``: png); see :func:`format_for`. A
        ``format`` contradicting dest's image extension is refused
        (:func:`check_format_agrees`).
    depth : {8, 16, 32, "float"}, optional
        As the format allows (:data:`FORMAT_DEPTHS`); None = the image's depth if the
        format holds it, else the deepest integer depth below it (so 16-bit → JPEG is
        8-bit), 8 for float images; ``.npy`` defaults to raw float. Between 8 and 16 bits
        values are rescaled (×257, ÷257); float and 32-bit values are written as they are.
    range_mode : {"clip", "abs", "offset", "rescale"}, optional
        How values meet the output's range (:func:`map_range`): integer outputs default
        to ``clip``, then round half to even; float outputs are raw unless a mode is given,
        which then maps into the image's own scale (0..1 for float images); ``rescale``
        spans all frames.
    compress_level : int
        0–9, the zlib level of PNG and TIFF.
    quality : int, optional
        1–100 for JPEG (default 92), for WebP (lossy; lossless without it) and for TIFF's
        JPEG compression.
    subsampling : {"4:4:4", "4:2:2", "4:2:0"}, optional
        JPEG's chroma subsampling (default 4:4:4).
    progressive : bool
        A progressive JPEG.
    compression : str, optional
        For TIFF: none, deflate (the default; none at level 0), lzw, zstd, jpeg or
        packbits; BigTIFF past 4 GB.
    background : str or (int, int, int), optional
        The colour alpha is composited over for JPEG, BMP and PNM: a colour name,
        ``#rrggbb``, ``R,G,B`` or a triple (default white).
    stdout : binary stream, optional
        Where ``"-"`` writes instead of ``sys.stdout.buffer``; it gets every byte or a
        :class:`~convtool.errors.StdoutError` (:func:`convtool.stdio.write_all`).
    inside : str or os.PathLike, optional
        A folder *dest* must stay in (see :func:`convtool.images.atomic.atomic_write`: the
        folders between are created and never followed through a symbolic link).

    Returns
    -------
    list of str
        One line for each thing the format could not hold (what was left out; alpha
        composited without a ``background`` given), for the caller to show; nothing is
        printed.

    Raises
    ------
    convtool.errors.UsageError
        An unknown format, a depth the format does not hold, an unknown range mode, or an
        output control for a format it does not apply to (:data:`OUTPUT_CONTROLS`).
    convtool.errors.ImageWriteError
        The file cannot be written (no such folder, no permission, disk full, a folder
        outside ``inside``); nothing is left half-written.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from convtool.images import Image, read_image, write_image
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "edges.png")
    >>> edges = Image(np.array([[-1.0, 0.0, 1.0]]), depth="float")
    >>> write_image(path, edges, depth=16, range_mode="rescale")
    []
    >>> read_image(path).pixels[..., 0].tolist()  # -1..1 spread over 0..65535
    [[0.0, 32768.0, 65535.0]]
    >>> grey = np.full((1, 2, 3), 200.0)
    >>> write_image(os.path.join(folder.name, "x.jpg"), Image(grey, np.array([[255.0, 0.0]]), 8))
    ['JPEG has no alpha channel: composited over white (--background COLOR picks another)']
    >>> write_image(path, edges, depth=12)
    Traceback (most recent call last):
    ...
    convtool.errors.UsageError: PNG cannot hold depth 12; it holds 8 or 16
    >>> folder.cleanup()
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
    if image.channels not in (1, 3) and fmt not in ANY_CHANNELS:
        raise UsageError(
            f"{fmt.upper()} holds 1 or 3 colour channels, the result has {image.channels}; "
            "write .npy or .tif (or, with --stack, any image format for a contact sheet)",
            path=dest_name,
        )
    encoding, notes = output.prepare(
        image, fmt, out_depth, range_mode, compress_level, controls, background
    )
    if fmt in FOLDER_FORMATS:
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
            message = f"cannot encode as {fmt.upper()}: {first_line(err)}"
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

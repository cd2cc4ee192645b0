"""One job band by band: when the image would not fit in memory, or when asked (``--stream``).

:func:`wants_stream` decides from the input's header, before anything is decoded: an image
streams when ``--stream`` asks for it, or when filtering it whole would need more memory
than is available (:func:`convtool.pipeline.memory.chain_peak_bytes` against
``CONVTOOL_MAX_MEMORY`` or what the system has), or when it is over ``--max-pixels`` (a
limit for decoding images whole) and no limit was given for streaming. It can only stream
from the formats :mod:`convtool.images.tiles` reads band by band to those it writes so;
other cases go on as before (and are refused there, if they do not fit).

:func:`process_streaming` reads, filters and writes the bands (:mod:`convtool.pipeline.stream`);
the result is the in-memory one, byte for byte.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from convtool import images
from convtool.batch.jobs import Job, Settings
from convtool.errors import ConvtoolError, ResourceLimitError, UsageError
from convtool.images.ranges import output_samples
from convtool.images.sniff import NPY_MAGIC, TIFF_MAGICS
from convtool.pipeline import memory as limits
from convtool.pipeline import stream, stream_memory

if TYPE_CHECKING:
    from convtool.images import tiles

_PRECISION_ITEMSIZE = {"single": 4, "double": 8}


def _formats_out() -> str:
    return ", ".join(f"{name} ({what})" for name, what in _tiles().STREAM_WRITE_FORMATS.items())


def output_format(job: Job, settings: Settings) -> str:
    """The format the job writes (from ``-f`` or the output's extension)."""
    return images.format_for(job.dest, settings.write.format)


def writes_zarr(job: Job, settings: Settings) -> bool:
    """Whether ``job`` writes a zarr store (what one image on a Dask cluster needs)."""
    return output_format(job, settings) in ("zarr", "zarr2")


def wants_stream(job: Job, settings: Settings) -> bool:
    """Whether ``job`` is filtered band by band (raises when ``--stream`` cannot be met)."""
    fmt = output_format(job, settings)
    if settings.stream:
        if job.source == "-" or job.dest == "-":
            raise UsageError("--stream reads and writes files, not standard input or output")
        if _is_pipe(job.source):
            raise UsageError(
                "--stream reads band by band from a file or a zarr folder, not a pipe or a "
                "device; give the file itself, or leave --stream out",
                path=job.source,
            )
        if not _tiles().stream_format(fmt):
            raise UsageError(
                f"--stream writes band by band to {_formats_out()}; not {fmt}", path=job.dest
            )
        return True
    if job.source == "-" or job.dest == "-" or stream.unsupported(settings.chain):
        return False
    if not _may_stream(job.source):
        return False  # a PNG, a JPEG...: decoded whole (tiles, zarr, tifffile never loaded)
    try:
        reader = _tiles().open_reader(job.source, None)
    except (ConvtoolError, OSError, ValueError):
        return False  # not a format that streams: read whole, which says what is wrong
    with reader:
        if reader.pages > 1 and settings.read.frames == "all":
            return False  # several pages: read whole, as frames
        height, width = reader.height, reader.width
        colour = reader.samples - reader.has_alpha
        channels = 1 if settings.read.gray and colour == 3 else colour
        alpha = reader.has_alpha
    itemsize = _PRECISION_ITEMSIZE.get(settings.read.precision, 4)
    need = limits.chain_peak_bytes(
        settings.chain, height, width, channels, itemsize=itemsize, alpha=alpha
    )
    available = limits.available_memory()
    if available is not None:
        available //= max(1, settings.workers)
    too_large = available is not None and need + limits.HEADROOM > available
    limit = settings.read.max_pixels
    too_many = (
        limit is not None and 0 < limit < height * width and settings.read.stream_max_pixels is None
    )
    if not (too_large or too_many):
        return False
    if not _tiles().stream_format(fmt):
        if not too_large or available is None:
            return False  # the pixel limit refuses it, with its own hint
        raise ResourceLimitError(
            f"filtering this {width}×{height} image whole needs about "
            f"{limits.format_bytes(need)}, more than the {limits.format_bytes(available)} "
            f"available; band by band it needs far less, but only to {_formats_out()}: "
            "choose such an -o (e.g. out.tif)",
            path=job.source,
        )
    return True


def process_streaming(
    job: Job, settings: Settings, *, band_rows: int | None = None, progress=None
) -> list[str]:
    """Read, filter and write ``job`` band by band; ``band_rows``: rows per output band
    (default: the tallest that fits the memory available, see :func:`stream_band_rows`);
    ``progress(rows done, rows in all)`` after each band (a :data:`pipeline.Progress`).

    Returns the notes of what the output could not hold, as :func:`write_image` does. The
    input's metadata goes to a TIFF output (ICC profile, DPI, XMP, EXIF's IFD0 tags; a
    BigTIFF holds no EXIF sub-IFDs) unless ``--strip``.
    """
    fmt = output_format(job, settings)
    write = settings.write
    if write.range_mode == "rescale":
        raise UsageError(
            "--range rescale maps the whole result's minimum and maximum, so it does not "
            "stream; use clip, abs or offset, or --depth float"
        )
    images.check_output_controls(fmt, **write.controls_for(fmt))
    with _tiles().open_reader(job.source, settings.read.stream_max_pixels) as reader:
        if reader.pages > 1 and settings.read.frames == "all":
            raise UsageError(
                f"this TIFF has {reader.pages} pages; band by band convtool filters one "
                "image: add --frames first",
                path=job.source,
            )
        out_depth = images.output_depth(fmt, reader.depth, write.depth)
        graph = graph_for(reader, settings)
        out_dtype = _tiles().sample_dtype(fmt, out_depth, graph.colour.dtype)
        kept, notes = _metadata_for(reader, graph, fmt, write.strip)
        if band_rows is None:
            available = limits.available_memory()
            if available is not None:
                available //= max(1, settings.workers)
            band_rows = stream_memory.stream_band_rows(
                graph, available, out_itemsize=out_dtype.itemsize, source=job.source
            )

        def converted() -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
            for colour, alpha in graph.bands(band_rows, ahead=True):
                yield output_samples(colour, alpha, reader.depth, out_depth, write.range_mode)

        def bands() -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
            done = 0
            for samples in _schedule().made_ahead(converted(), "convert"):
                yield samples
                done += samples[0].shape[0]
                if progress is not None:
                    progress(done, graph.height)

        shape = (graph.height, graph.width, graph.channels)
        controls = write.controls_for(fmt)
        try:
            _tiles().write_bands(
                job.dest,
                fmt,
                shape,
                out_dtype,
                graph.alpha is not None,
                bands(),
                compress_level=write.compress_level,
                compression=controls.get("compression"),
                quality=controls.get("quality"),
                metadata=kept,
                inside=job.root,  # its folders are opened with no symbolic link followed
            )
        finally:
            graph.finish()  # (no read ahead left under way once the file is closed)
    return notes


def _metadata_for(reader, graph, fmt: str, strip: bool):
    """What of the input's metadata the output holds, and the note naming the rest."""
    from convtool.images import metadata as meta
    from convtool.images.frames import format_name

    if strip or not reader.metadata:
        return meta.Metadata(), []
    sized = meta.sized(reader.metadata, graph.width, graph.height)
    kept, dropped = meta.for_format(sized, fmt, graph.channels)
    if fmt == "tiff" and kept.exif:
        from convtool.images import exif as exif_block

        if exif_block.tiff_parts(kept.exif)[1]:
            dropped.append("EXIF sub-IFDs (Exif, GPS: a BigTIFF written band by band)")
    note = f"{format_name(fmt)} cannot hold the input's {', '.join(dropped)}; left out"
    return kept, [note] if dropped else []


def graph_for(reader: tiles.BandReader, settings: Settings) -> stream.Graph:
    """The stream graph of ``settings.chain`` over the image ``reader`` reads."""
    read = settings.read
    colour = reader.samples - reader.has_alpha
    channels = 1 if read.gray and colour == 3 else colour
    dtype = np.float64 if read.precision == "double" else np.float32

    def rows(start: int, stop: int):
        band = images.read_band(reader, start, stop, precision=read.precision, gray=read.gray)
        return band.pixels, band.alpha

    graph = stream.build(
        settings.chain,
        rows,
        (reader.height, reader.width, channels),
        reader.has_alpha,
        dtype,
        block_rows=reader.block_rows,
        source=reader.name,
        check_finite=reader.dtype.kind == "f",  # integers read as floats are finite
    )
    if isinstance(graph.source, stream.Source):  # what memory prices the file's blocks at
        graph.source.raw_row_bytes = reader.width * reader.samples * reader.dtype.itemsize
    return graph


def _may_stream(source: str) -> bool:
    """Whether ``source`` may be a format read band by band (a folder: a zarr store; a
    regular file with a TIFF or ``.npy`` signature), from its first bytes. A pipe or a
    device is never peeked at (its first bytes would be lost to the whole read), and
    anything unreadable is left to the whole read, which says what is wrong."""
    try:
        info = os.stat(source)
        if stat.S_ISDIR(info.st_mode):
            return True
        if not stat.S_ISREG(info.st_mode):
            return False  # a pipe (<(...), /dev/stdin) can be read once: by the whole read
        with open(source, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head.startswith(NPY_MAGIC) or head.startswith(TIFF_MAGICS)


def _is_pipe(source: str) -> bool:
    """Whether ``source`` exists and is neither a regular file nor a folder (a pipe, a
    device): something that can be read once, front to back."""
    try:
        mode = os.stat(source).st_mode
    except OSError:
        return False  # missing: the read says so
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _tiles():
    """:mod:`convtool.images.tiles` (tiled TIFF, zarr, ``.npy`` bands; a thread pool),
    imported when an image may stream: a PNG or a JPEG never needs it."""
    from convtool.images import tiles

    return tiles


def _schedule():
    """:mod:`convtool.engine.schedule` (the kept threads a stream's stages run on)."""
    from convtool.engine import schedule

    return schedule

"""Images written band by band: a tiled BigTIFF, a zarr array (v2 or v3) or a ``.npy`` file.

:func:`write_bands` takes bands of rows as they come (samples as
:func:`convtool.images.write_image` encodes them: unsigned integers of the output depth, or
floats; alpha the last channel) and writes them under a temporary name renamed when
complete (:func:`~convtool.images.atomic.atomic_write` for a file,
:func:`~convtool.images.atomic.atomic_directory` for a store), so a streamed result is the
in-memory one, band by band. TIFF tiles are encoded on threads by tifffile (imagecodecs for
compression). zarr is imported only when a store is read or written (:func:`import_zarr`,
here because reading, :mod:`convtool.images.tiles`, needs it too and imports this module).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from convtool._system import cpu_count
from convtool.errors import ImageWriteError, UsageError
from convtool.images import metadata as meta
from convtool.images.atomic import atomic_directory, atomic_write

__all__ = [
    "LARGE_EXTRA", "STREAM_WRITE_FORMATS", "TIFF_TILE", "ZARR_CHUNK", "create_zarr",
    "import_zarr", "is_zarr_store", "sample_dtype", "stream_format", "write_bands",
    "write_whole",
]  # fmt: skip


LARGE_EXTRA = 'pip install "convtool[large]"'
STREAM_WRITE_FORMATS = {
    "tiff": "tiled BigTIFF",
    "zarr": "zarr v3",
    "zarr2": "zarr v2",
    "npy": ".npy",
}
"""Output formats written band by band, and what each becomes."""

TIFF_TILE = 256  # side of the tiles of a streamed TIFF (libvips' default is 128)
ZARR_CHUNK = (256, 4096)  # rows x columns of a zarr output's chunks unless told


def is_zarr_store(path: str | os.PathLike[str]) -> bool:
    """Whether *path* is a folder holding a zarr array or group (v2 or v3)."""
    folder = Path(path)
    return folder.is_dir() and any(
        (folder / name).is_file() for name in (".zarray", ".zgroup", "zarr.json")
    )


def sample_dtype(fmt: str, depth: int | str, float_dtype) -> np.dtype:
    """The type of the samples written for output *depth*: as the in-memory writers do
    (unsigned integers; float TIFF is 32-bit, .npy and zarr keep the working precision)."""
    if depth != "float":
        integers: dict[int | str, type] = {8: np.uint8, 16: np.uint16, 32: np.uint32}
        return np.dtype(integers[depth])
    return np.dtype(np.float32) if fmt == "tiff" else np.dtype(float_dtype)


def stream_format(fmt: str) -> bool:
    """Whether output format *fmt* is written band by band."""
    return fmt in STREAM_WRITE_FORMATS


def import_zarr() -> Any:
    """The ``zarr`` package, or a UsageError naming the extra that installs it."""
    try:
        import zarr
    except ImportError:
        raise UsageError(
            f"reading and writing zarr stores needs the zarr package: {LARGE_EXTRA}"
        ) from None
    return zarr


Band = tuple[np.ndarray, "np.ndarray | None"]


def write_bands(
    dest: str | os.PathLike[str],
    fmt: str,
    shape: tuple[int, int, int],
    dtype,
    alpha: bool,
    bands: Iterable[Band],
    *,
    compress_level: int = 1,
    compression: str | None = None,
    quality: int | None = None,
    metadata: meta.Metadata | None = None,
    chunks: tuple[int, int] | None = None,
    inside: str | os.PathLike[str] | None = None,
) -> None:
    """Write *bands* of rows, top to bottom, as one image of *shape* ``(H, W, C)``.

    Each band is ``(colour, alpha)``: ``(rows, W, C)`` samples of *dtype*, already mapped
    for the output depth, and ``(rows, W)`` alpha (or None, when *alpha* is false).
    *fmt*: ``tiff`` (tiled BigTIFF; ``compression`` as for :func:`write_image`: deflate at
    ``compress_level`` by default, none at 0; ``metadata``'s ICC profile, DPI, XMP and EXIF
    IFD0 tags), ``zarr`` / ``zarr2`` (zarr v3 / v2, *chunks* rows x columns) or ``npy``.
    Written under a
    temporary name and renamed when the last band is in: an error or an interruption
    leaves no output, a killed process a hidden temporary one. ``inside``: a batch's output
    folder, as for :func:`convtool.images.atomic.atomic_write`.
    """
    if fmt not in STREAM_WRITE_FORMATS:
        names = ", ".join(STREAM_WRITE_FORMATS)
        raise UsageError(
            f"{fmt} cannot be written band by band; use one of {names}", path=str(dest)
        )
    height, width, channels = shape
    dtype = np.dtype(dtype)
    stacked = (_stacked(colour.astype(dtype, copy=False), a) for colour, a in bands)
    total = channels + alpha
    if fmt == "npy":
        atomic_write(
            dest, lambda f: _write_npy(f, (height, width, total), dtype, stacked), inside=inside
        )
    elif fmt == "tiff":
        options = _tiff_options(compression, compress_level, quality, dtype,
                                metadata or meta.Metadata())  # fmt: skip
        atomic_write(
            dest,
            lambda f: _write_tiff(f, (height, width, total), dtype, channels, alpha, stacked,
                                  options),
            inside=inside,
        )  # fmt: skip
    else:
        zarr = import_zarr()
        with atomic_directory(dest, is_zarr_store, inside=inside) as temp:
            _write_zarr(zarr, temp, (height, width, total), dtype, stacked, fmt, compress_level,
                        chunks or ZARR_CHUNK)  # fmt: skip


def _stacked(colour: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    if alpha is None:
        return colour
    return np.concatenate([colour, alpha[:, :, np.newaxis].astype(colour.dtype)], axis=2)


def _write_npy(f: BinaryIO, shape, dtype: np.dtype, bands: Iterator[np.ndarray]) -> None:
    """The bytes ``np.save`` writes for the whole array, one band at a time."""
    stored = shape if shape[2] > 1 else shape[:2]
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": stored}  # fmt: skip
    np.lib.format.write_array_header_1_0(f, header)
    rows = 0
    for band in bands:
        f.write(np.ascontiguousarray(band, dtype).tobytes())
        rows += band.shape[0]
    _check_rows(rows, shape[0])


def _check_rows(rows: int, height: int) -> None:
    if rows != height:  # a bug upstream, never a user's error: do not rename a short file
        raise ImageWriteError(f"internal error: {rows} rows written for an image of {height}")


def _rows_of(bands: Iterator[np.ndarray], block: int, height: int) -> Iterator[np.ndarray]:
    """Regroup bands into blocks of *block* rows (the last one shorter)."""
    held: list[np.ndarray] = []
    count = done = 0
    for band in bands:
        held.append(band)
        count += band.shape[0]
        while count >= block or (count and done + count == height):
            joined = held[0] if len(held) == 1 else np.concatenate(held, axis=0)
            take = min(block, count)
            yield joined[:take]
            done += take
            rest = joined[take:]
            held, count = ([rest], rest.shape[0]) if rest.shape[0] else ([], 0)
    _check_rows(done + count, height)


def _tiff_options(compression, level: int, quality, dtype, metadata: meta.Metadata) -> dict:
    """tifffile's arguments for a compression and the metadata a BigTIFF page holds."""
    from convtool.images import exif as exif_block
    from convtool.images.encoders import _TIFFFILE_NAMES, DEFAULT_QUALITY

    compression = compression or ("deflate" if level else "none")
    if compression == "jpeg" and dtype != np.uint8:
        raise UsageError(
            "TIFF JPEG compression holds 8-bit samples; add --depth 8 or choose another "
            "--compression"
        )
    args: dict[str, Any] = {"compression": _TIFFFILE_NAMES.get(compression)}
    if compression in ("deflate", "zstd") and level:
        args["compressionargs"] = {"level": level}
    elif compression == "jpeg":
        args["compressionargs"] = {"level": quality or DEFAULT_QUALITY}
    tags = []
    if metadata.exif:  # IFD0's descriptive tags; a BigTIFF keeps no Exif/GPS sub-IFDs
        text, _ = exif_block.tiff_parts(metadata.exif)
        tags += [
            (tag, "H", 1, 1, True)  # upright, as the in-memory TIFF writer says
            if tag == exif_block.ORIENTATION
            else (tag, "s", 0, value.encode("utf-8"), True)
            for tag, value in text.items()
        ]
    if metadata.xmp:
        tags.append((700, "B", len(metadata.xmp), metadata.xmp, True))
    if metadata.icc:
        args["iccprofile"] = metadata.icc
    if metadata.dpi:
        args |= {"resolution": metadata.dpi, "resolutionunit": "INCH"}
    return args | {"extratags": tags}


def _write_tiff(f, shape, dtype, channels, alpha, bands, options) -> None:
    import tifffile

    height, width, total = shape
    tile = TIFF_TILE

    def tiles() -> Iterator[np.ndarray]:
        for rows in _rows_of(bands, tile, height):
            for x0 in range(0, width, tile):
                part = rows[:, x0 : x0 + tile]
                if part.shape[:2] != (tile, tile):  # tifffile wants whole tiles
                    full = np.zeros((tile, tile, total), dtype)
                    full[: part.shape[0], : part.shape[1]] = part
                    part = full
                yield part if total > 1 else part[:, :, 0]

    row_bytes = tile * width * total * dtype.itemsize
    tifffile.imwrite(
        f,
        tiles(),
        **options,
        shape=shape if total > 1 else shape[:2],
        dtype=dtype,
        tile=(tile, tile),
        bigtiff=True,
        photometric="rgb" if channels == 3 else "minisblack",
        extrasamples=["unassalpha"] if alpha else None,
        metadata=None,  # no JSON ImageDescription: a plain TIFF, as in memory
        software=False,
        maxworkers=cpu_count(),
        buffersize=row_bytes,  # tifffile would otherwise take up to 512 MB of tiles at once
    )


def _write_zarr(zarr, folder: Path, shape, dtype, bands, fmt, level, chunks) -> None:
    height, width, total = shape
    array = create_zarr(zarr, folder, shape, dtype, fmt, level, chunks)
    start = 0
    for rows in _rows_of(bands, array.chunks[0], height):
        array[start : start + rows.shape[0]] = rows if total > 1 else rows[:, :, 0]
        start += rows.shape[0]


def create_zarr(zarr, folder, shape, dtype, fmt: str, level: int, chunks):
    """An empty zarr array for an image of *shape* (H, W, C): v3 for ``zarr``, v2 for ``zarr2``."""
    height, width, total = shape
    stored = shape if total > 1 else shape[:2]
    chunk = (min(chunks[0], height), min(chunks[1], width)) + ((total,) if total > 1 else ())
    return zarr.create_array(
        store=str(folder),
        shape=stored,
        chunks=chunk,
        dtype=dtype,
        zarr_format=2 if fmt == "zarr2" else 3,
        compressors="auto" if level else None,
        overwrite=True,
    )


def write_whole(dest, fmt: str, colour: np.ndarray, alpha: np.ndarray | None, level: int) -> None:
    """One band: how :func:`convtool.images.write_image` writes a zarr store."""
    shape = colour.shape
    write_bands(dest, fmt, shape, colour.dtype, alpha is not None, [(colour, alpha)],
                compress_level=level)  # fmt: skip

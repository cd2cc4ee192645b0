"""Images read and written band by band: tiled or striped TIFF, zarr arrays, ``.npy`` maps.

For images larger than memory. A :class:`BandReader` gives the samples of a run of rows,
decoding only the tiles or strips that hold them; :func:`write_bands` writes bands of rows
as they come, to a tiled BigTIFF, a zarr array (v2 or v3) or a ``.npy`` file, under a
temporary name renamed when complete (:mod:`convtool.images.atomic`). Samples are as
:mod:`convtool.images.codecs` decodes them (``(rows, W, C)``, the file's own type, alpha as
the last channel) and as :func:`convtool.images.write_image` encodes them, so a streamed
result is the in-memory one, band by band.

TIFF tiles are decoded with tifffile (and imagecodecs for compressed ones); zarr through
the ``zarr`` package, imported only when a zarr store is read or written: both are in the
``large`` extra (``pip install "convtool[large]"``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from convtool._system import cpu_count
from convtool.errors import ConvtoolError, ImageReadError, ImageWriteError, UsageError
from convtool.images import metadata as meta
from convtool.images.atomic import atomic_directory, atomic_write
from convtool.images.decoded import check_size, depth_of_dtype, quiet_decoders
from convtool.images.sniff import NPY_MAGIC, TIFF_MAGICS

__all__ = [
    "LARGE_EXTRA",
    "STREAM_READ_FORMATS",
    "STREAM_WRITE_FORMATS",
    "BandReader",
    "is_zarr_store",
    "open_reader",
    "stream_format",
    "write_bands",
]

LARGE_EXTRA = 'pip install "convtool[large]"'
STREAM_READ_FORMATS = "tiled or striped TIFF/BigTIFF/OME-TIFF, zarr arrays and .npy files"
"""The inputs that are read band by band, as messages name them."""
STREAM_WRITE_FORMATS = {
    "tiff": "tiled BigTIFF",
    "zarr": "zarr v3",
    "zarr2": "zarr v2",
    "npy": ".npy",
}
"""Output formats written band by band, and what each becomes."""

TIFF_TILE = 256  # side of the tiles of a streamed TIFF (libvips' default is 128)
ZARR_CHUNK = (256, 4096)  # rows x columns of a zarr output's chunks unless told
_NPY_BLOCK_BYTES = 1 << 20  # rows of a .npy (or uncompressed TIFF) map read at once: ~1 MB
_MAX_BLOCK_BYTES = 256 << 20  # a strip or tile this large is no band: refuse the file


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


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@dataclass
class BandReader:
    """An image whose rows are read a band at a time.

    ``read(start, stop)`` returns rows ``start..stop-1`` as ``(rows, W, C)`` samples (alpha
    the last channel when ``has_alpha``); ``block_rows`` is the height of what the file
    decodes at once (a tile or strip row), so reads aligned to it decode nothing twice.
    """

    name: str
    height: int
    width: int
    samples: int
    dtype: np.dtype
    has_alpha: bool
    depth: int | str
    format: str
    block_rows: int
    _read: Callable[[int, int], np.ndarray]
    _close: Callable[[], None] = lambda: None
    metadata: meta.Metadata = dataclasses.field(default_factory=meta.Metadata)
    pages: int = 1  # images in the file (TIFF pages, reduced-resolution copies not counted)

    def read(self, start: int, stop: int) -> np.ndarray:
        with _read_errors(self.name):
            block = self._read(start, stop)
        if block.dtype == np.bool_:  # as the in-memory decoders: 1-bit becomes 0/255
            block = block.astype(np.uint8) * 255
        return block

    def close(self) -> None:
        self._close()

    def __enter__(self) -> BandReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_reader(path: str | os.PathLike[str], max_pixels: int | None = None) -> BandReader:
    """Open *path* for reading band by band, checking its header (size, type, layout).

    Reads TIFF (tiled or striped, BigTIFF, the first image of an OME-TIFF), zarr arrays
    and ``.npy`` files; anything else raises :class:`ImageReadError` naming the formats
    that stream. ``max_pixels``: width x height limit (None or 0: none).
    """
    name = str(path)
    if name == "-":
        raise ImageReadError(f"standard input cannot be read band by band; {_formats()}", path=name)
    if is_zarr_store(path):
        return _open_zarr(name, max_pixels)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise ImageReadError("no such file", path=name) from None
    except IsADirectoryError:
        raise ImageReadError("is a directory, not an image (nor a zarr store)", path=name) from None
    except OSError as err:
        raise ImageReadError(
            f"cannot read: {(err.strerror or str(err)).lower()}", path=name
        ) from None
    if head.startswith(NPY_MAGIC):
        return _open_npy(name, max_pixels)
    if head.startswith(TIFF_MAGICS):
        return _open_tiff(name, max_pixels)
    raise ImageReadError(f"this format is decoded whole, not band by band; {_formats()}", path=name)


def _formats() -> str:
    return f"the formats that stream are {STREAM_READ_FORMATS}"


def _checked_layout(shape, dtype, name: str, what: str, max_pixels: int | None):
    """(height, width, samples) of an (H, W) or (H, W, C) array of numbers, C from 1 to 4."""
    if len(shape) not in (2, 3) or (len(shape) == 3 and not 1 <= shape[2] <= 4):
        raise ImageReadError(
            f"{what} has shape {tuple(shape)}; expected (H, W) or (H, W, C) with C from 1 to 4",
            path=name,
        )
    if np.dtype(dtype).kind not in "biuf":
        raise ImageReadError(f"{what} has dtype {dtype}, not a number type", path=name)
    check_size(shape[1], shape[0], name, max_pixels)
    return int(shape[0]), int(shape[1]), int(shape[2]) if len(shape) == 3 else 1


def _depth(dtype) -> int | str:
    return 8 if np.dtype(dtype) == np.bool_ else depth_of_dtype(np.dtype(dtype))


def _open_npy(name: str, max_pixels: int | None) -> BandReader:
    with _read_errors(name):
        array = np.load(name, mmap_mode="r", allow_pickle=False)
    height, width, samples = _checked_layout(
        array.shape, array.dtype, name, ".npy array", max_pixels
    )
    view = array.reshape(height, width, samples)
    row_bytes = width * samples * array.dtype.itemsize
    return BandReader(
        name, height, width, samples, array.dtype, samples in (2, 4), _depth(array.dtype), "NPY",
        max(1, _NPY_BLOCK_BYTES // row_bytes),
        lambda start, stop: np.array(view[start:stop]),
        lambda: getattr(array, "_mmap", None) and array._mmap.close(),
    )  # fmt: skip


def _open_zarr(name: str, max_pixels: int | None) -> BandReader:
    zarr = import_zarr()
    with _read_errors(name):
        node = zarr.open(name, mode="r")
    if not hasattr(node, "shape"):
        raise ImageReadError(
            "is a zarr group; name one of its arrays (e.g. store.zarr/0)", path=name
        )
    height, width, samples = _checked_layout(node.shape, node.dtype, name, "zarr array", max_pixels)
    return BandReader(
        name, height, width, samples, np.dtype(node.dtype), samples in (2, 4),
        _depth(node.dtype), "ZARR", int(node.chunks[0]),
        lambda start, stop: np.asarray(node[start:stop]).reshape(stop - start, width, samples),
    )  # fmt: skip


def _open_tiff(name: str, max_pixels: int | None) -> BandReader:
    import tifffile

    with _read_errors(name), quiet_decoders(native=False):
        tif = tifffile.TiffFile(name)
    try:
        with _read_errors(name):
            reader = _tiff_reader(tif, name, max_pixels)
    except BaseException:
        tif.close()
        raise
    return reader


def _tiff_reader(tif, name: str, max_pixels: int | None) -> BandReader:
    if not tif.pages:
        raise ImageReadError("truncated or corrupt image (a TIFF without pages)", path=name)
    page = tif.pages[0]
    from convtool.images.tiff import TiffLayout

    TiffLayout(  # the in-memory reader's checks of the header: size, samples, types
        int(page.imagewidth),
        int(page.imagelength),
        samples=int(page.samplesperpixel),
        bits=int(page.bitspersample),
        sample_format=int(page.sampleformat),
        planes=int(page.imagedepth),
        photometric=int(page.photometric),
    ).check(name, max_pixels)
    if int(page.photometric) not in (1, 2):  # MINISBLACK, RGB, as the in-memory reader
        raise ImageReadError(
            f"TIFF photometric interpretation {page.photometric.name} cannot be read band by band",
            path=name,
        )
    orientation = page.tags.get(274)
    if orientation is not None and int(orientation.value) != 1:
        raise ImageReadError(
            "this TIFF is stored rotated or flipped (an Orientation tag); it cannot be read "
            "band by band: save it upright first",
            path=name,
        )
    if page.axes not in ("YX", "YXS", "SYX"):
        raise ImageReadError(f"TIFF layout {page.axes} cannot be read band by band", path=name)
    height, width = int(page.imagelength), int(page.imagewidth)
    samples = int(page.samplesperpixel)
    if samples not in ((1, 2) if int(page.photometric) == 1 else (3, 4)):
        raise ImageReadError(f"TIFF with {samples} samples a pixel is not supported", path=name)
    dtype = np.dtype(page.dtype)
    if page.is_memmappable:  # uncompressed and contiguous: rows are slices of a map
        array = page.asarray(out="memmap")  # the first image only, as read whole
        view = np.moveaxis(array, 0, -1) if page.axes == "SYX" else array
        view = view.reshape(height, width, samples)
        row_bytes = width * samples * dtype.itemsize
        return BandReader(
            name, height, width, samples, dtype, samples in (2, 4), _depth(dtype), "TIFF",
            max(1, _NPY_BLOCK_BYTES // row_bytes),
            lambda start, stop: np.array(view[start:stop]), tif.close, *_tiff_extras(tif),
        )  # fmt: skip
    segments = _TiffSegments(tif, page, name)
    return BandReader(
        name, height, width, samples, dtype, samples in (2, 4), _depth(dtype), "TIFF",
        segments.rows, segments.read, tif.close, *_tiff_extras(tif),
    )  # fmt: skip


def _tiff_extras(tif) -> tuple[meta.Metadata, int]:
    """The file's metadata (as the in-memory reader finds it) and how many pages it has."""
    from convtool.images.tiff import tiff_metadata

    pages = 1 + sum(1 for page in tif.pages[1:] if not int(page.subfiletype) & 1)
    with open(tif.filehandle.path, "rb") as fileobj:
        return tiff_metadata(fileobj), pages


class _TiffSegments:
    """Rows of a tiled or striped TIFF page, decoding only the tiles or strips that hold them.

    Segments are decoded on a thread per CPU (imagecodecs releases the GIL); their bytes
    are read under a lock, as tifffile reads them.
    """

    def __init__(self, tif, page, name: str) -> None:
        self.page, self.name, self.fh = page, name, tif.filehandle
        self.height, self.width = int(page.imagelength), int(page.imagewidth)
        self.samples = int(page.samplesperpixel)
        self.planar = page.axes == "SYX"
        if page.is_tiled:
            self.rows, self.cols = int(page.tilelength), int(page.tilewidth)
        else:
            self.rows, self.cols = min(int(page.rowsperstrip), self.height), self.width
        self.down = -(-self.height // self.rows)
        self.across = -(-self.width // self.cols)
        self.decode = page.decode
        block = self.rows * self.width * self.samples * np.dtype(page.dtype).itemsize
        if block > _MAX_BLOCK_BYTES:
            raise ImageReadError(
                f"this TIFF is stored in strips of {self.rows} rows, too large to read band by "
                "band; save it tiled (e.g. vips tiffsave --tile, or tifffile with tile=)",
                path=name,
            )
        self.dtype = np.dtype(page.dtype)
        self.workers = min(cpu_count(), 8)
        self.lock = threading.Lock()  # one file position: reads take turns

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.width, self.samples), self.dtype)
        first, last = start // self.rows, (stop - 1) // self.rows
        planes = range(self.samples) if self.planar else range(1)
        indices = [
            (plane * self.down + down) * self.across + across
            for plane in planes
            for down in range(first, last + 1)
            for across in range(self.across)
        ]
        raw = []
        with self.lock:  # reading is sequential; decoding runs in parallel
            for index in indices:
                offset, count = self.page.dataoffsets[index], self.page.databytecounts[index]
                if count:
                    self.fh.seek(offset)
                    raw.append((index, self.fh.read(count)))
                else:
                    raw.append((index, None))

        def place(item) -> None:
            index, data = item
            plane, rest = divmod(index, self.down * self.across)
            down, across = divmod(rest, self.across)
            y0, x0 = down * self.rows, across * self.cols
            y1, x1 = min(y0 + self.rows, self.height), min(x0 + self.cols, self.width)
            a, b = max(y0, start), min(y1, stop)
            channels = slice(plane, plane + 1) if self.planar else slice(None)
            target = out[a - start : b - start, x0:x1, channels]
            if data is None:  # a tile that was never written reads as zeros
                target[...] = 0
                return
            segment = self.decode(data, index)[0]  # (1, rows, cols, samples)
            target[...] = segment[0, a - y0 : b - y0, : x1 - x0]

        with quiet_decoders(native=False):
            if self.workers > 1 and len(raw) > 1:
                with ThreadPoolExecutor(self.workers) as pool:
                    list(pool.map(place, raw))
            else:
                for item in raw:
                    place(item)
        return out


@contextlib.contextmanager
def _read_errors(name: str) -> Iterator[None]:
    """Whatever a reader raises becomes one ImageReadError line (naming a missing codec)."""
    try:
        yield
    except ConvtoolError:
        raise
    except MemoryError:
        raise ImageReadError("not enough memory to read this band", path=name) from None
    except FileNotFoundError:
        raise ImageReadError("no such file", path=name) from None
    except Exception as err:  # noqa: BLE001 - every decoder failure becomes one line
        text = " ".join(str(err).split()) or type(err).__name__
        if "imagecodecs" in text:
            raise ImageReadError(
                f"this TIFF's compression needs the 'imagecodecs' package ({LARGE_EXTRA})",
                path=name,
            ) from None
        raise ImageReadError(f"truncated or corrupt image ({text[:200]})", path=name) from None


def import_zarr() -> Any:
    """The ``zarr`` package, or a UsageError naming the extra that installs it."""
    try:
        import zarr
    except ImportError:
        raise UsageError(
            f"reading and writing zarr stores needs the zarr package: {LARGE_EXTRA}"
        ) from None
    return zarr


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


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


def read_whole(
    path: str | os.PathLike[str], max_pixels: int | None
) -> tuple[np.ndarray, BandReader]:
    """All rows of a zarr store (the in-memory path of :func:`convtool.images.read_image`)."""
    reader = open_reader(path, max_pixels)
    with reader:
        return reader.read(0, reader.height), reader


def write_whole(dest, fmt: str, colour: np.ndarray, alpha: np.ndarray | None, level: int) -> None:
    """One band: how :func:`convtool.images.write_image` writes a zarr store."""
    shape = colour.shape
    write_bands(dest, fmt, shape, colour.dtype, alpha is not None, [(colour, alpha)],
                compress_level=level)  # fmt: skip

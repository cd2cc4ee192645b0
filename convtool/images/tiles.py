"""Images read and written band by band: tiled or striped TIFF, zarr arrays, ``.npy`` maps.

For images larger than memory. A :class:`BandReader` gives the samples of a run of rows,
decoding only the tiles or strips that hold them (this module); :func:`write_bands` writes
bands of rows as they come, to a tiled BigTIFF, a zarr array (v2 or v3) or a ``.npy`` file,
under a temporary name renamed when complete (:mod:`convtool.images.band_writers`,
re-exported here, so this module is the family's one door). Samples are as
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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from convtool._system import cpu_count
from convtool.errors import ConvtoolError, ImageReadError
from convtool.images import metadata as meta
from convtool.images.band_writers import (
    LARGE_EXTRA,
    STREAM_WRITE_FORMATS,
    TIFF_TILE,
    ZARR_CHUNK,
    create_zarr,
    import_zarr,
    is_zarr_store,
    sample_dtype,
    stream_format,
    write_bands,
    write_whole,
)
from convtool.images.decoded import check_size, depth_of_dtype, quiet_decoders
from convtool.images.sniff import NPY_MAGIC, TIFF_MAGICS

__all__ = [
    "LARGE_EXTRA",
    "STREAM_READ_FORMATS",
    "STREAM_WRITE_FORMATS",
    "TIFF_TILE",
    "ZARR_CHUNK",
    "BandReader",
    "create_zarr",
    "import_zarr",
    "is_zarr_store",
    "open_reader",
    "read_whole",
    "sample_dtype",
    "stream_format",
    "write_bands",
    "write_whole",
]

STREAM_READ_FORMATS = "tiled or striped TIFF/BigTIFF/OME-TIFF, zarr arrays and .npy files"
"""The inputs that are read band by band, as messages name them."""

_NPY_BLOCK_BYTES = 1 << 20  # rows of a .npy (or uncompressed TIFF) map read at once: ~1 MB
_MAX_BLOCK_BYTES = 256 << 20  # a strip or tile this large is no band: refuse the file


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


def read_whole(
    path: str | os.PathLike[str], max_pixels: int | None
) -> tuple[np.ndarray, BandReader]:
    """All rows of a zarr store (the in-memory path of :func:`convtool.images.read_image`)."""
    reader = open_reader(path, max_pixels)
    with reader:
        return reader.read(0, reader.height), reader

"""Images filtered band by band equal the in-memory result byte for byte, in bounded memory.

The graph of a chain (convtool/pipeline/stream.py) is checked against Chain.apply for every
padding mode, kernels odd, even, non-square and taller than a band, strides, dilations,
chains and iterations, with the engine's bands and the stream's made a few rows tall so
that their edges fall inside kernels; then files (tiled, striped and planar TIFF, zarr v2
and v3, .npy) in and out against the in-memory path; then the choice to stream, its
refusals, its memory estimate, and what a killed run leaves.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import tifffile

from convtool import batch, images
from convtool.batch import Job, ReadOptions, Settings, WriteOptions, streaming
from convtool.engine import plan as engine_plan
from convtool.errors import ImageReadError, ImageWriteError, ResourceLimitError, UsageError
from convtool.images import atomic, tiles
from convtool.pipeline import Chain, FilterOptions, parse_steps, stream
from convtool.pipeline import memory as limits

zarr = pytest.importorskip("zarr")

ROOT = Path(__file__).resolve().parent.parent
PADDINGS = ["zero", "constant", "edge", "reflect", "symmetric", "wrap", "valid", "full"]
KERNELS = {
    "odd (gaussian 5x5, separable)": "gaussian:sigma=1",
    "even (4x6, direct)": "[1 2 3 4 5 6; 0 1 0 1 0 1; 2 0 2 0 2 0; 1 1 1 1 1 2]",
    "non-square (3x9)": "[1 2 3 4 5 4 3 2 1; 0 0 0 0 1 0 0 0 0; -1 -2 -3 -4 -5 -4 -3 -2 -1]",
    "taller than a band (box 1x33)": "[1; 1; 1; 1; 1; 1; 1; 1; 1; 1; 1; 1; 1; 1; 1; 1; 1; 1; "
    "1; 1; 1; 1; 1; 1; 1; 1; 1; 1; 1; 1; 1; 1; 1]/33",
    "large (15x15 random, fft)": "RANDOM15",
}


@pytest.fixture
def small_bands(monkeypatch):
    """Engine bands of a few rows (as in memory: the same constants), box sums from 3 taps."""
    monkeypatch.setattr(engine_plan, "_BAND_ELEMENTS", 400)
    monkeypatch.setattr(engine_plan, "_BOX_MIN_TAPS", 3)


def kernel_steps(name: str, rng) -> list[str]:
    spec = KERNELS[name]
    if spec == "RANDOM15":
        rows = "; ".join(" ".join(f"{v:.3f}" for v in row) for row in rng.uniform(-1, 1, (15, 15)))
        spec = f"[{rows}]"
    return [spec]


def streamed(chain, pixels, alpha, band_rows: int, block_rows: int = 5):
    """The output of the chain's graph, band by band, joined."""
    height, width, channels = pixels.shape

    def read(start, stop):
        return pixels[start:stop], None if alpha is None else alpha[start:stop]

    graph = stream.build(chain, read, (height, width, channels), alpha is not None,
                         pixels.dtype, block_rows=block_rows)  # fmt: skip
    bands = list(graph.bands(band_rows))
    colour = np.concatenate([c for c, _ in bands])
    out_alpha = None if alpha is None else np.concatenate([a for _, a in bands])
    return colour, out_alpha


def assert_same_bytes(got, want) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("padding", PADDINGS)
def test_every_padding_kernel_shape_stride_and_dilation_streams_exactly(small_bands, rng, padding):
    pixels = rng.uniform(0, 255, (47, 31, 1)).astype(np.float32)
    cval = 7.5 if padding == "constant" else 0.0
    crossed = 0
    for name, stride, dilation in itertools.product(KERNELS, (1, 2), (1, 3)):
        options = FilterOptions(padding=padding, cval=cval, stride=stride, dilation=dilation)
        chain = Chain(parse_steps(kernel_steps(name, rng)), options)
        try:
            want, _ = chain.apply(pixels)
        except UsageError:  # valid padding with a kernel larger than the image
            continue
        for band_rows in (1, 4, 64):
            got, _ = streamed(chain, pixels, None, band_rows)
            assert_same_bytes(got, want)
        crossed += want.shape[0] > 4
    assert crossed >= 10


@pytest.mark.parametrize(
    "steps",
    [
        ["gaussian:sigma=1.5", "sobel-x"],
        ["grad:sobel", "maxpool:2"],
        ["[1 2 3; 4 5 6]", "avgpool:size=3,stride=2", "box:4"],
        ["grad:op=roberts,norm=max", "laplacian"],
    ],
)
@pytest.mark.parametrize("iterations", [1, 3])
def test_chains_and_iterations_stream_exactly(small_bands, rng, steps, iterations):
    pixels = rng.uniform(0, 255, (64, 40, 1)).astype(np.float32)
    for padding, stride in itertools.product(("reflect", "wrap", "zero", "valid"), (1, 2)):
        chain = Chain(parse_steps(steps), FilterOptions(padding=padding, stride=stride),
                      iterations=iterations)  # fmt: skip
        try:
            want, _ = chain.apply(pixels)
        except UsageError:  # the image shrank away
            continue
        for band_rows in (1, 3, 16):
            got, _ = streamed(chain, pixels, None, band_rows)
            assert_same_bytes(got, want)


@pytest.mark.parametrize(("channels", "alpha_mode"), [("all", "carry"), ("luma", "carry"),
                                                      ("0,2", "filter"), ("1", "carry")])  # fmt: skip
def test_channels_and_alpha_stream_exactly(small_bands, rng, channels, alpha_mode):
    pixels = rng.uniform(0, 255, (80, 61, 3)).astype(np.float32)
    alpha = rng.uniform(0, 255, (80, 61)).astype(np.float32)
    for steps, options in [
        (["box:5", "sharpen"], FilterOptions(padding="valid", stride=2)),
        (["maxpool:3", "grad:sobel", "avgpool:size=2,stride=1"], FilterOptions(padding="full")),
        (["box:4"], FilterOptions(padding="constant", cval=9.0, dilation=2)),
    ]:  # carried channels move with each window's centre; alpha is pooled, or carried
        chain = Chain(parse_steps(steps), options, iterations=2, channels=channels,
                      alpha_mode=alpha_mode)  # fmt: skip
        want, want_alpha = chain.apply(pixels, alpha)
        for band_rows in (1, 5):
            got, got_alpha = streamed(chain, pixels, alpha, band_rows)
            assert_same_bytes(got, want)
            assert_same_bytes(got_alpha, want_alpha)


def test_streamed_carry_never_reads_unwritten_memory(small_bands, rng, poisoned_empty):
    pixels = rng.uniform(0, 255, (40, 33, 3)).astype(np.float32)
    alpha = rng.uniform(0, 255, (40, 33)).astype(np.float32)
    chain = Chain(parse_steps(["box:5", "sharpen"]), FilterOptions(), channels="luma")
    got, got_alpha = streamed(chain, pixels, alpha, 5)
    assert np.isfinite(got).all()
    assert_same_bytes(got_alpha, alpha)


def test_double_precision_streams_exactly(small_bands, rng):
    pixels = rng.uniform(-1, 1, (60, 20, 1))
    chain = Chain(parse_steps(["box:41", "gaussian:sigma=2"]), FilterOptions(padding="edge"))
    want, _ = chain.apply(pixels)
    got, _ = streamed(chain, pixels, None, 7)
    assert_same_bytes(got, want)


def test_a_band_edge_in_the_middle_of_a_kernel(small_bands, rng):
    """Output bands of 4 rows, engine bands shorter than the 9-row kernel, file blocks of 5:
    every edge falls inside some kernel window, and the rows across it are real neighbours."""
    pixels = rng.uniform(0, 255, (40, 34, 1)).astype(np.float32)
    chain = Chain(parse_steps(["[1;2;3;4;5;4;3;2;1]"]), FilterOptions(padding="zero"))
    call = stream.build(chain, lambda a, b: (pixels[a:b], None), (40, 34, 1), False,
                        np.float32).colour.call  # fmt: skip
    assert call.band < 9
    got, _ = streamed(chain, pixels, None, 4, block_rows=5)
    want = np.zeros_like(pixels[:, :, 0], dtype=np.float64)
    weights = [1, 2, 3, 4, 5, 4, 3, 2, 1]
    for i in range(40):  # the definition, row by row, in float64
        for t, w in enumerate(weights):
            r = i + 4 - t
            if 0 <= r < 40:
                want[i] += w * pixels[r, :, 0]
    np.testing.assert_allclose(got[:, :, 0], want, rtol=1e-6)
    assert_same_bytes(got, chain.apply(pixels)[0])


def test_nan_in_a_band_is_refused_when_read(rng):
    pixels = rng.uniform(0, 1, (30, 10, 1)).astype(np.float32)
    pixels[25, 3] = np.nan
    chain = Chain(parse_steps(["box:3"]))
    with pytest.raises(ImageReadError, match="NaN"):
        streamed(chain, pixels, None, 4)


def test_weighted_alpha_does_not_stream(rng):
    pixels = rng.uniform(0, 1, (10, 10, 1)).astype(np.float32)
    chain = Chain(parse_steps(["box:3"]), alpha_mode="weighted")
    with pytest.raises(UsageError, match="weighted"):
        streamed(chain, pixels, pixels[:, :, 0], 4)


# ----------------------------------------------------------------------------- files


def tiff(path, array, **options):
    tifffile.imwrite(path, array, metadata=None, **options)
    return path


@pytest.fixture
def inputs(tmp_path, rng):
    """Images in every layout that streams, 70 x 45 (tiles and strips cut their rows)."""
    grey = rng.integers(0, 256, (70, 45), dtype=np.uint8)
    rgba = rng.integers(0, 65536, (70, 45, 4), dtype=np.uint16)
    z3 = zarr.create_array(store=str(tmp_path / "v3.zarr"), shape=grey.shape, chunks=(16, 16),
                           dtype=grey.dtype, zarr_format=3)  # fmt: skip
    z3[:] = grey
    z2 = zarr.create_array(store=str(tmp_path / "v2.zarr"), shape=rgba.shape[:2] + (3,),
                           chunks=(9, 45, 3), dtype=rgba.dtype, zarr_format=2)  # fmt: skip
    z2[:] = rgba[:, :, :3]
    np.save(tmp_path / "float.npy", rng.uniform(-1, 1, (70, 45)).astype(np.float32))
    return {
        "tiled": tiff(tmp_path / "tiled.tif", grey, tile=(16, 32), compression="zlib"),
        "striped": tiff(tmp_path / "striped.tif", grey, rowsperstrip=6),
        "plain": tiff(tmp_path / "plain.tif", grey),  # one uncompressed strip: a memory map
        "rgba16 planar": tiff(
            tmp_path / "planar.tif",
            np.moveaxis(rgba, 2, 0),
            photometric="rgb",
            planarconfig="separate",
            extrasamples=["unassalpha"],
            tile=(32, 32),
            compression="zlib",
        ),  # fmt: skip
        "bigtiff": tiff(tmp_path / "big.tif", grey, bigtiff=True, tile=(16, 16)),
        "zarr v3": tmp_path / "v3.zarr",
        "zarr v2": tmp_path / "v2.zarr",
        "npy": tmp_path / "float.npy",
    }


def read_back(path) -> np.ndarray:
    path = Path(path)
    if tiles.is_zarr_store(path):
        return zarr.open_array(str(path), mode="r")[:]
    if path.suffix == ".npy":
        return np.load(path)
    return tifffile.imread(path)


@pytest.mark.parametrize("out", ["tif", "zarr", "npy"])
def test_files_in_every_layout_stream_to_the_in_memory_result(small_bands, tmp_path, inputs, out):
    chain = Chain(parse_steps(["gaussian:sigma=1", "grad:sobel"]), FilterOptions(padding="wrap"))
    for name, source in inputs.items():
        whole, banded = tmp_path / f"whole-{name}.{out}", tmp_path / f"banded-{name}.{out}"
        settings = Settings(chain, write=WriteOptions(range_mode="abs"))
        batch.process(Job(str(source), str(whole)), settings)
        streaming.process_streaming(Job(str(source), str(banded)), settings, band_rows=3)
        got, want = read_back(banded), read_back(whole)
        assert got.tobytes() == want.tobytes(), (name, np.abs(got - want.astype(float)).max())
        if out == "npy":  # the very bytes np.save writes
            assert banded.read_bytes() == whole.read_bytes()


def test_streamed_tiffs_are_tiled_bigtiffs_and_zarr2_is_v2(tmp_path, inputs):
    chain = Chain(parse_steps(["box:3"]))
    for dest, fmt in ((tmp_path / "o.tif", None), (tmp_path / "o2.zarr", "zarr2")):
        settings = Settings(chain, write=WriteOptions(format=fmt), stream=True)
        batch.process(Job(str(inputs["tiled"]), str(dest)), settings)
    with tifffile.TiffFile(tmp_path / "o.tif") as tif:
        assert tif.is_bigtiff and tif.pages[0].is_tiled
        assert tif.pages[0].dtype == np.uint8  # the input's depth, as in memory
    assert zarr.open_array(str(tmp_path / "o2.zarr"), mode="r").metadata.zarr_format == 2


def test_precision_gray_and_depth_carry_as_in_memory(small_bands, tmp_path, rng):
    source = tiff(tmp_path / "rgb.tif", rng.integers(0, 256, (40, 30, 3), dtype=np.uint8),
                  photometric="rgb", tile=(16, 16))  # fmt: skip
    chain = Chain(parse_steps(["sobel-y"]))
    read = ReadOptions(precision="double", gray=True)
    for depth in (None, "16", "float"):
        settings = Settings(chain, read=read, write=WriteOptions(depth=depth, range_mode="offset"))
        whole, banded = tmp_path / f"w{depth}.npy", tmp_path / f"b{depth}.npy"
        batch.process(Job(str(source), str(whole)), settings)
        streaming.process_streaming(Job(str(source), str(banded)), settings, band_rows=2)
        assert banded.read_bytes() == whole.read_bytes()


# ----------------------------------------------------------------------------- choosing


def test_an_image_that_does_not_fit_streams_and_one_that_fits_does_not(tmp_path, monkeypatch, rng):
    source = tiff(tmp_path / "in.tif", rng.integers(0, 256, (3000, 2000), dtype=np.uint8),
                  tile=(256, 256))  # fmt: skip
    settings = Settings(Chain(parse_steps(["gaussian:sigma=2"])))
    job = Job(str(source), str(tmp_path / "out.tif"))
    whole = limits.chain_peak_bytes(settings.chain, 3000, 2000, 1)
    monkeypatch.setenv(limits.MEMORY_ENV, str(whole + limits.HEADROOM + (1 << 20)))
    assert not streaming.wants_stream(job, settings)
    monkeypatch.setenv(limits.MEMORY_ENV, str(whole // 2 + limits.HEADROOM))
    assert streaming.wants_stream(job, settings)
    batch.process(job, settings)  # streams, and fits
    monkeypatch.setenv(limits.MEMORY_ENV, "0")
    batch.process(Job(str(source), str(tmp_path / "ref.tif")), settings)
    assert_same_bytes(read_back(tmp_path / "out.tif"), read_back(tmp_path / "ref.tif"))


def test_too_large_for_memory_and_a_format_that_does_not_stream(tmp_path, monkeypatch, rng):
    source = tiff(tmp_path / "in.tif", rng.integers(0, 256, (600, 500), dtype=np.uint8))
    settings = Settings(Chain(parse_steps(["box:3"])))
    monkeypatch.setenv(limits.MEMORY_ENV, str(limits.HEADROOM + (1 << 20)))
    with pytest.raises(ResourceLimitError, match="tiled BigTIFF.*out.tif"):
        batch.process(Job(str(source), str(tmp_path / "out.png")), settings)
    images.write_image(tmp_path / "in.png", images.read_image(source))
    with pytest.raises(ResourceLimitError, match="zarr"):  # read whole: the hint names them
        batch.process(Job(str(tmp_path / "in.png"), str(tmp_path / "o.tif")), settings)


@pytest.mark.parametrize(
    ("source", "dest", "write", "message"),
    [
        ("in.png", "o.tif", {}, "decoded whole.*the formats that stream are tiled or striped"),
        ("in.tif", "o.png", {}, "--stream writes band by band to tiff"),
        ("in.tif", "o.tif", {"range_mode": "rescale"}, "rescale.*does not stream"),
        ("-", "o.tif", {}, "not standard input"),
    ],
)
def test_stream_refuses_what_cannot_stream_in_one_line(tmp_path, rng, source, dest, write, message):
    grey = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    tiff(tmp_path / "in.tif", grey)
    images.write_image(tmp_path / "in.png", images.Image(grey.astype(np.float32), depth=8))
    settings = Settings(Chain(parse_steps(["box:3"])), write=WriteOptions(**write), stream=True)
    path = source if source == "-" else str(tmp_path / source)
    with pytest.raises((UsageError, ImageReadError), match=message):
        batch.process(Job(path, str(tmp_path / dest)), settings)
    assert not (tmp_path / dest).exists()


def test_16_bit_planar_tiffs_read_whole_exactly_too(tmp_path, rng):
    """Found by streaming: Pillow read deep planar samples as 8-bit; tifffile reads them."""
    rgba = rng.integers(0, 65536, (30, 20, 4), dtype=np.uint16)
    for options in ({}, {"tile": (16, 16), "compression": "zlib"}):
        tiff(tmp_path / "p.tif", np.moveaxis(rgba, 2, 0), photometric="rgb",
             planarconfig="separate", extrasamples=["unassalpha"], **options)  # fmt: skip
        image = images.read_image(tmp_path / "p.tif")
        assert np.array_equal(image.pixels, rgba[:, :, :3]) and np.array_equal(
            image.alpha, rgba[:, :, 3]
        )


def test_zarr_in_and_out_need_the_large_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(UsageError, match=r'pip install "convtool\[large\]"'):
        tiles.import_zarr()


def test_a_zarr_store_is_one_image_not_a_folder_of_inputs(tmp_path, inputs):
    plan = batch.plan([str(inputs["zarr v3"])], str(tmp_path / "out.zarr"))
    assert plan.single
    (tmp_path / "out.zarr").mkdir()
    (tmp_path / "out.zarr" / "zarr.json").write_text("{}")
    assert batch.plan([str(inputs["zarr v3"])], str(tmp_path / "out.zarr")).single


# ----------------------------------------------------------------------------- memory


def measured_peak(call) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("steps", "band_rows"),
    [
        (["gaussian:sigma=3"], 64),
        (["gaussian:sigma=2", "grad:sobel"], 16),
        (["box:9"] * 4, 8),
        (["[1 2; 3 4]", "maxpool:2", "sharpen"], 200),
    ],  # fmt: skip
)
def test_the_estimate_bounds_what_streaming_allocates(tmp_path, rng, steps, band_rows):
    settings = Settings(Chain(parse_steps(steps)), write=WriteOptions(compress_level=0))
    peaks = []
    for height in (2400, 7200):  # three times the rows, the same bands
        source = tiff(tmp_path / "in.tif", rng.integers(0, 256, (height, 1300), dtype=np.uint8),
                      tile=(128, 128), compression="zlib")  # fmt: skip
        with tiles.open_reader(source) as reader:
            graph = streaming.graph_for(reader, settings)
            estimate = limits.stream_peak_bytes(graph, band_rows, out_itemsize=1)
        job = Job(str(source), str(tmp_path / "o.tif"))
        peak = measured_peak(
            partial(streaming.process_streaming, job, settings, band_rows=band_rows)
        )
        assert peak <= estimate + (1 << 20)
        assert estimate < 5 * peak
        peaks.append(peak)
    assert peaks[1] < 1.25 * peaks[0]  # bounded by the bands, not the image
    assert peaks[1] < limits.chain_peak_bytes(settings.chain, 7200, 1300, 1) / 3


def test_the_band_height_is_the_tallest_that_fits(tmp_path, rng):
    chain = Chain(parse_steps(["gaussian:sigma=1"]))
    pixels = np.zeros((5000, 3000, 1), np.float32)
    graph = stream.build(chain, lambda a, b: (pixels[a:b], None), pixels.shape, False,
                         np.float32)  # fmt: skip
    free = limits.stream_band_rows(graph, None)
    assert free * 3000 * 4 <= limits.STREAM_BAND_BYTES
    budget = limits.stream_peak_bytes(graph, 100) + limits.HEADROOM
    rows = limits.stream_band_rows(graph, budget)
    assert rows <= 100 and limits.stream_peak_bytes(graph, rows) + limits.HEADROOM <= budget
    with pytest.raises(ResourceLimitError, match="even band by band"):
        limits.stream_band_rows(graph, limits.HEADROOM)


# ----------------------------------------------------------------------------- reading ahead


class RecordedReads:
    """A file's rows, read through ``read`` (as stream.build's ``read``), which records
    each read: its rows, its thread, and how many reads were under way at once."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels, self.reads, self.threads = pixels, [], set()
        self.under_way = self.most_at_once = 0
        self.lock = threading.Lock()

    def read(self, start: int, stop: int):
        with self.lock:
            self.under_way += 1
            self.most_at_once = max(self.most_at_once, self.under_way)
        time.sleep(0.002)  # (a read that takes a while: another would overlap it)
        with self.lock:
            self.under_way -= 1
            self.reads.append((start, stop))
            self.threads.add(threading.current_thread().name)
        return self.pixels[start:stop], None


@pytest.mark.parametrize("band_rows", [7, 16, 40])
def test_the_file_is_read_ahead_once_a_row_one_read_at_a_time(rng, band_rows):
    """While a band is filtered the blocks the next one needs are read on another thread:
    every row once (not at the border's wrap), one read at a time, the same bytes."""
    pixels = rng.uniform(0, 255, (300, 37, 1)).astype(np.float32)
    chain = Chain(parse_steps(["gaussian:sigma=2"]))
    file = RecordedReads(pixels)
    graph = stream.build(chain, file.read, pixels.shape, False, np.float32, block_rows=10)
    got = np.concatenate([c for c, _ in graph.bands(band_rows, ahead=True)])
    assert_same_bytes(got, chain.apply(pixels)[0])
    rows = np.concatenate([np.arange(a, b) for a, b in file.reads])
    assert np.array_equal(np.sort(rows), np.arange(300))
    assert file.most_at_once == 1
    assert any(name != "MainThread" for name in file.threads)


def test_a_stream_left_half_way_reads_nothing_once_closed(rng):
    pixels = rng.uniform(0, 255, (600, 20, 1)).astype(np.float32)
    file = RecordedReads(pixels)
    graph = stream.build(Chain(parse_steps(["box:5"])), file.read, pixels.shape, False,
                         np.float32, block_rows=8)  # fmt: skip
    bands = graph.bands(16, ahead=True)
    next(bands), next(bands)
    bands.close()  # the caller stops (an error while writing): the file may be closed now
    read = len(file.reads)
    time.sleep(0.05)
    assert file.under_way == 0 and len(file.reads) == read < 600 // 8


def test_a_read_that_fails_ahead_fails_the_band_that_needs_it(rng):
    pixels = rng.uniform(0, 255, (200, 20, 1)).astype(np.float32)

    def read(start, stop):
        if stop > 120:
            raise ImageReadError("truncated or corrupt image", path="in.tif")
        return pixels[start:stop], None

    graph = stream.build(Chain(parse_steps(["box:3"])), read, pixels.shape, False,
                         np.float32, block_rows=10)  # fmt: skip
    done = []
    with pytest.raises(ImageReadError, match="truncated"):
        for colour, _ in graph.bands(20, ahead=True):
            done.append(colour.shape[0])
    assert sum(done) <= 120


# ----------------------------------------------------------------------------- failures


def test_a_failure_mid_stream_leaves_no_output(tmp_path, rng):
    values = rng.uniform(0, 1, (200, 30)).astype(np.float32)
    values[150, 5] = np.inf  # found when band 150 is read
    np.save(tmp_path / "in.npy", values)
    for dest in ("out.tif", "out.zarr", "out.npy"):
        with pytest.raises(ImageReadError, match="infinite"):
            streaming.process_streaming(Job(str(tmp_path / "in.npy"), str(tmp_path / dest)),
                                        Settings(Chain(parse_steps(["box:3"]))), band_rows=8)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


def test_a_zarr_output_replaces_only_a_zarr_store(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(ImageWriteError, match="not a zarr store"), \
            atomic.atomic_directory(tmp_path / "photos", tiles.is_zarr_store):  # fmt: skip
        pass
    colour = np.ones((4, 4, 1), np.uint8)
    for value in (1, 2):
        tiles.write_whole(tmp_path / "o.zarr", "zarr", colour * value, None, 1)
    assert read_back(tmp_path / "o.zarr").max() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.zarr", "photos"]


def test_stale_temporary_stores_are_removed_and_live_ones_kept(tmp_path):
    """A temporary store is stale when no writer holds its lock (as temporary files are)."""
    stale = tmp_path / ".out.zarr.convtool-1-0a1b2c3d.tmp"
    (stale / "c").mkdir(parents=True)
    (stale / "zarr.json").write_text("{}")
    with atomic.atomic_directory(tmp_path / "o.zarr", tiles.is_zarr_store) as live:
        (live / "zarr.json").write_text("{}")
        assert atomic.remove_stale_temp_files(tmp_path) == [stale]
        assert live.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.zarr"]


SLOW_RUN = """
import sys
from convtool import batch
from convtool.batch import Job, Settings, streaming
from convtool.pipeline import Chain, parse_steps

settings = Settings(Chain(parse_steps(["box:15"]), iterations=3))
streaming.process_streaming(Job(sys.argv[1], sys.argv[2]), settings, band_rows=2)
"""


@pytest.mark.slow
@pytest.mark.parametrize("dest", ["out.tif", "out.zarr"])
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_streaming_run_leaves_nothing_that_looks_finished(tmp_path, rng, dest, signum):
    np.save(tmp_path / "in.npy", rng.integers(0, 256, (1500, 2000), dtype=np.uint8))
    # 12 iterations: the output's temporary file then lives some 0.3 s, not 0.06 s (a fast
    # machine under load finished the run between two polls, before the signal was sent)
    command = [sys.executable, "-m", "convtool", "filter", str(tmp_path / "in.npy"), "-k",
               "box:15", "-n", "12", "--stream", "-o", str(tmp_path / dest)]  # fmt: skip
    if signum == signal.SIGKILL:  # no chance to clean up: band rows as small as they go
        command = [sys.executable, "-c", SLOW_RUN, str(tmp_path / "in.npy"), str(tmp_path / dest)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no temporary output appeared"
            time.sleep(0.01)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not (tmp_path / dest).exists()
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "in.npy")
    if signum == signal.SIGKILL:  # a hidden temporary, for the next run to remove
        assert len(left) == 1 and left[0].startswith(f".{dest}.convtool-")
        assert atomic.remove_stale_temp_files(tmp_path)
    else:
        assert left == [] and process.returncode == 128 + signum
        assert b"no partial output" in stderr


# ----------------------------------------------------------------------------- tiny budgets


@pytest.mark.parametrize("padding", ["reflect", "wrap", "constant", "full"])
@pytest.mark.parametrize(("extra", "iterations"), [([], 1), (["grad:sobel"], 2)])
def test_tiny_budgets_stream_to_the_in_memory_bytes(
    small_bands, monkeypatch, tmp_path, rng, padding, extra, iterations
):
    """The memory budget, not a band height given by hand, picks bands of a few rows."""
    np.save(tmp_path / "in.npy", rng.integers(0, 256, (90, 64, 3), dtype=np.uint8))
    source = str(tmp_path / "in.npy")
    kernels = [KERNELS[name] for name in KERNELS if "fft" not in name]
    for kernel, (stride, dilation) in itertools.product(kernels, [(1, 1), (2, 3)]):
        options = FilterOptions(padding=padding, cval=4.0 if padding == "constant" else 0.0,
                                stride=stride, dilation=dilation)  # fmt: skip
        chain = Chain(parse_steps([kernel, *extra]), options, iterations=iterations)
        settings = Settings(chain)
        with tiles.open_reader(source) as reader:
            graph = streaming.graph_for(reader, settings)
        budget = limits.stream_peak_bytes(graph, 3, out_itemsize=4) + limits.HEADROOM
        monkeypatch.setenv(limits.MEMORY_ENV, str(budget))
        assert limits.stream_band_rows(graph, budget, out_itemsize=4) <= 3 < graph.height
        streaming.process_streaming(Job(source, str(tmp_path / "banded.npy")), settings)
        monkeypatch.setenv(limits.MEMORY_ENV, "0")
        batch.process(Job(source, str(tmp_path / "whole.npy")), settings)
        assert (tmp_path / "banded.npy").read_bytes() == (tmp_path / "whole.npy").read_bytes()


# ----------------------------------------------------------------------------- the command line


def run_cli(*args, env=None):
    from typer.testing import CliRunner

    from convtool.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def test_the_command_line_streams_when_asked_and_when_it_must(tmp_path, rng):
    source = tiff(tmp_path / "in.tif", rng.integers(0, 256, (3000, 2000), dtype=np.uint8),
                  tile=(256, 256), compression="zlib")  # fmt: skip
    steps = ["-k", "gaussian:sigma=2", "-k", "grad:sobel", "--padding", "symmetric"]
    done = run_cli("filter", source, *steps, "-o", tmp_path / "whole.tif")
    assert done.exit_code == 0, done.output
    done = run_cli("filter", source, *steps, "-o", tmp_path / "asked.tif", "--stream")
    assert done.exit_code == 0 and done.output == ""
    whole = limits.chain_peak_bytes(Chain(parse_steps(["gaussian:sigma=2", "grad:sobel"])),
                                    3000, 2000, 1)  # fmt: skip
    budget = {limits.MEMORY_ENV: str(whole // 2 + limits.HEADROOM)}
    done = run_cli("filter", source, *steps, "-o", tmp_path / "must.tif", env=budget)
    assert done.exit_code == 0, done.output
    for name in ("asked.tif", "must.tif"):
        assert_same_bytes(read_back(tmp_path / name), read_back(tmp_path / "whole.tif"))
    done = run_cli("filter", source, *steps, "-o", tmp_path / "must.png", env=budget)
    assert done.exit_code == 1 and not (tmp_path / "must.png").exists()
    assert "band by band" in done.output and len(done.output.strip().splitlines()) == 1


def test_the_command_line_names_the_formats_that_stream(tmp_path, rng):
    grey = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    images.write_image(tmp_path / "in.png", images.Image(grey.astype(np.float32), depth=8))
    done = run_cli("filter", tmp_path / "in.png", "-k", "box:3", "-o", tmp_path / "o.tif",
                   "--stream")  # fmt: skip
    assert done.exit_code == 1
    assert "zarr arrays and .npy files" in done.output and "Traceback" not in done.output


def test_stream_refuses_a_pipe_without_reading_it(tmp_path):
    # A pipe is read once, front to back; band by band needs a file to seek in.
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)  # nobody writes: opening it for reading would block the test
    done = run_cli("filter", pipe, "-k", "box:3", "-o", tmp_path / "o.tif", "--stream")
    assert done.exit_code == 2 and not (tmp_path / "o.tif").exists()
    assert "not a pipe or a device" in done.output and len(done.output.strip().splitlines()) == 1


def test_dask_with_one_file_to_a_non_zarr_output_filters_here_and_says_so(tmp_path, rng):
    np.save(tmp_path / "in.npy", rng.integers(0, 256, (20, 20), dtype=np.uint8))
    done = run_cli("filter", tmp_path / "in.npy", "-k", "box:3", "-o", tmp_path / "o.npy",
                   "--dask", "tcp://127.0.0.1:1")  # fmt: skip
    assert done.exit_code == 0 and "zarr output" in done.output
    assert (tmp_path / "o.npy").exists()


def test_progress_follows_the_bands(tmp_path, rng):
    np.save(tmp_path / "in.npy", rng.integers(0, 256, (50, 20), dtype=np.uint8))
    seen = []
    streaming.process_streaming(Job(str(tmp_path / "in.npy"), str(tmp_path / "o.npy")),
                                Settings(Chain(parse_steps(["box:3"]))), band_rows=16,
                                progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert seen == [(16, 50), (32, 50), (48, 50), (50, 50)]


def test_chains_that_need_the_whole_image_do_not_stream(tmp_path, rng):
    np.save(tmp_path / "in.npy", rng.integers(0, 256, (30, 30), dtype=np.uint8))
    job = Job(str(tmp_path / "in.npy"), str(tmp_path / "o.npy"))
    for chain, why in [
        (Chain(parse_steps(["box:3", "sobel-x"]), stack=True), "--stack"),
        (Chain(parse_steps(["box:3"]), FilterOptions(transposed=True, stride=2)), "--transposed"),
    ]:
        assert why in stream.unsupported(chain)
        assert not streaming.wants_stream(job, Settings(chain))
        with pytest.raises(UsageError, match=why):
            streaming.process_streaming(job, Settings(chain, stream=True))
    assert stream.unsupported(Chain(parse_steps(["box:3", "grad:sobel", "maxpool:2"]))) is None

"""convtool's own PNG pixel decoder (inflate + C unfiltering) and the CLI's read-ahead (PNG, JPEG).

The references are the PNG specification's filter formulas (written out below, row by
row, for hand-made files) and other decoders: Pillow, and libpng through imagecodecs for
16-bit colour, which Pillow cannot hold.
"""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage

from convtool.errors import ImageReadError
from convtool.images import png_pixels, png_stream, read_image, readahead

pytest.importorskip("convtool.images._png", reason="the compiled unfiltering was not built")

KINDS = {1: 0, 2: 4, 3: 2, 4: 6}  # channels → PNG colour type


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def header(width: int, height: int, bits: int, channels: int, interlace: int = 0) -> bytes:
    fields = struct.pack(">IIBBBBB", width, height, bits, KINDS[channels], 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", fields)


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filtered_stream(samples: np.ndarray, filters: list[int]) -> bytes:
    """The raw (not yet deflated) stream of *samples*, row y filtered with filters[y], by
    the specification's formulas, one byte at a time."""
    height, width, channels = samples.shape
    big = samples.astype(">u2") if samples.dtype == np.uint16 else samples
    rows = big.reshape(height, -1).view(np.uint8).astype(int)
    bpp = channels * samples.dtype.itemsize
    out = bytearray()
    for y, kind in enumerate(filters):
        out.append(kind)
        for x in range(rows.shape[1]):
            a = rows[y, x - bpp] if x >= bpp else 0
            b = rows[y - 1, x] if y else 0
            c = rows[y - 1, x - bpp] if y and x >= bpp else 0
            predictor = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
            out.append((rows[y, x] - predictor) % 256)
    return bytes(out)


def png_file(samples: np.ndarray, filters: list[int], *, idat_pieces: int = 1) -> bytes:
    height, width, channels = samples.shape
    bits = samples.dtype.itemsize * 8
    stream = zlib.compress(filtered_stream(samples, filters))
    cut = -(-len(stream) // idat_pieces)
    idats = b"".join(chunk(b"IDAT", stream[i : i + cut]) for i in range(0, len(stream), cut))
    return header(width, height, bits, channels) + idats + chunk(b"IEND", b"")


def random_samples(shape: tuple[int, int, int], dtype, seed: int = 0) -> np.ndarray:
    high = 256 if dtype == np.uint8 else 65536
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_every_filter_type_decodes_to_the_samples_written(channels, dtype):
    samples = random_samples((10, 7, channels), dtype, seed=channels)
    data = png_file(samples, [0, 1, 2, 3, 4, 4, 3, 2, 1, 0], idat_pieces=3)
    decoded = png_pixels.decode_samples(data)
    assert decoded is not None and decoded.dtype == dtype
    np.testing.assert_array_equal(decoded, samples)


def test_samples_agree_with_pillow_and_libpng_on_written_photographs(tmp_path):
    imagecodecs = pytest.importorskip("imagecodecs")
    rng = np.random.default_rng(3)
    smooth = np.cumsum(rng.integers(-3, 4, (64, 80, 3)), axis=1) % 256
    for mode, pixels in (("RGB", smooth.astype(np.uint8)), ("L", smooth[..., 0].astype(np.uint8))):
        buffer = io.BytesIO()
        PILImage.fromarray(pixels, mode).save(buffer, "PNG", optimize=True)  # adaptive filters
        decoded = png_pixels.decode_samples(buffer.getvalue())
        assert decoded is not None
        np.testing.assert_array_equal(decoded.reshape(pixels.shape), pixels)
    deep = random_samples((33, 17, 3), np.uint16, seed=5)
    data = imagecodecs.png_encode(deep)
    np.testing.assert_array_equal(png_pixels.decode_samples(data), deep)
    np.testing.assert_array_equal(png_pixels.decode_samples(data), imagecodecs.png_decode(data))


def test_a_filter_type_over_four_is_declined_and_the_read_still_refuses_the_file(tmp_path):
    samples = random_samples((6, 5, 3), np.uint8)
    raw = bytearray(filtered_stream(samples, [1] * 6))
    raw[3 * (5 * 3 + 1)] = 5  # row 3's filter type
    data = header(5, 6, 8, 3) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")
    assert png_pixels.decode_samples(data) is None
    path = tmp_path / "bad-filter.png"
    path.write_bytes(data)
    with pytest.raises(ImageReadError):
        read_image(path)


def test_a_decompression_bomb_stops_at_the_size_its_header_declares():
    declared = 4 * (4 * 3 + 1)  # a 4×4 RGB image
    bomb = zlib.compress(bytes(50_000_000), 9)  # 50 MB of zeros in ~50 KB
    assert png_stream.inflate(bomb, declared) is None
    data = header(4, 4, 8, 3) + chunk(b"IDAT", bomb) + chunk(b"IEND", b"")
    assert png_pixels.decode_samples(data) is None


@pytest.mark.parametrize(
    "damage",
    ["truncated stream", "short stream", "bytes after the stream", "IDAT split by a chunk",
     "no IEND", "palette", "transparent colour", "interlaced", "a chunk longer than the file"],
)  # fmt: skip
def test_files_it_does_not_take_are_declined(damage):
    samples = random_samples((8, 6, 3), np.uint8)
    stream = zlib.compress(filtered_stream(samples, [2] * 8))
    head, end = header(6, 8, 8, 3), chunk(b"IEND", b"")
    data = {
        "truncated stream": head + chunk(b"IDAT", stream[:-9]) + end,
        "short stream": head + chunk(b"IDAT", zlib.compress(filtered_stream(samples[:7], [2] * 7))) + end,
        "bytes after the stream": head + chunk(b"IDAT", stream + b"more") + end,
        "IDAT split by a chunk": head + chunk(b"IDAT", stream[:20]) + chunk(b"tEXt", b"a\0b")
        + chunk(b"IDAT", stream[20:]) + end,
        "no IEND": head + chunk(b"IDAT", stream),
        "palette": head + chunk(b"PLTE", bytes(12)) + chunk(b"IDAT", stream) + end,
        "transparent colour": head + chunk(b"tRNS", bytes(6)) + chunk(b"IDAT", stream) + end,
        "interlaced": header(6, 8, 8, 3, interlace=1) + chunk(b"IDAT", stream) + end,
        "a chunk longer than the file": head + chunk(b"IDAT", stream)[:-30],
    }[damage]  # fmt: skip
    assert png_pixels.decode_samples(data) is None


def test_declined_kinds_are_still_read_by_the_other_decoders(tmp_path):
    pixels = random_samples((9, 11, 3), np.uint8)
    palette = PILImage.fromarray(pixels).quantize(16)
    grey = PILImage.fromarray(pixels[..., 0])
    for name, picture, options in (("palette", palette, {}), ("trns", grey, {"transparency": 7})):
        path = tmp_path / f"{name}.png"
        picture.save(path, **options)
        assert png_pixels.decode_samples(path.read_bytes()) is None
        expected = np.asarray(picture.convert("RGBA" if options else "RGB"), dtype=np.float32)
        image = read_image(path)
        colour = expected[..., :3] if options else expected
        np.testing.assert_array_equal(image.pixels, colour[..., : image.pixels.shape[2]])


@pytest.fixture
def fresh_readahead(monkeypatch):
    monkeypatch.setattr(readahead, "_ahead", None)
    return readahead


def written_png(path, seed=0):
    pixels = random_samples((40, 30, 3), np.uint8, seed)
    PILImage.fromarray(pixels).save(path)
    return pixels


def test_the_read_ahead_hands_over_the_files_bytes_and_stream_once(tmp_path, fresh_readahead):
    path = tmp_path / "photo.png"
    pixels = written_png(path)
    fresh_readahead.start(str(path), None)
    data = fresh_readahead.file_bytes(path)
    assert data == path.read_bytes()
    assert fresh_readahead.file_bytes(path) is None  # once
    assert fresh_readahead.inflated(data[:1] + data[1:]) is None  # equal bytes, another object
    stream = fresh_readahead.inflated(data)
    assert stream is not None and len(stream) == 40 * (30 * 3 + 1)
    assert fresh_readahead.inflated(data) is None  # once
    np.testing.assert_array_equal(png_pixels.decode_samples(data), pixels)


def test_read_image_uses_the_bytes_read_ahead_and_decodes_the_same(tmp_path, fresh_readahead):
    path = tmp_path / "photo.png"
    pixels = written_png(path)
    fresh_readahead.start(str(path), None)
    image = read_image(path)
    np.testing.assert_array_equal(image.pixels, pixels.astype(np.float32))
    assert fresh_readahead._ahead.given is None  # both handed out: nothing held


def test_a_file_changed_after_the_read_ahead_is_read_again(tmp_path, fresh_readahead):
    path = tmp_path / "photo.png"
    written_png(path, seed=1)
    fresh_readahead.start(str(path), None)
    fresh_readahead._ahead.done.wait()
    now = written_png(tmp_path / "other.png", seed=2)
    os.replace(tmp_path / "other.png", path)  # another inode: another file
    assert fresh_readahead.file_bytes(path) is None
    np.testing.assert_array_equal(read_image(path).pixels, now.astype(np.float32))


def test_nothing_is_read_ahead_over_the_pixel_limit(tmp_path, fresh_readahead):
    path = tmp_path / "photo.png"
    written_png(path)
    fresh_readahead.start(str(path), 100)  # 40×30 = 1200 pixels
    fresh_readahead._ahead.done.wait()
    assert fresh_readahead._ahead.data is None
    assert fresh_readahead.file_bytes(path) is None


def test_a_named_pipe_is_never_opened_by_the_read_ahead(tmp_path, fresh_readahead):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    fresh_readahead.start(str(fifo), None)
    fresh_readahead._ahead.done.wait()
    # With no reader at the other end, a non-blocking open for writing fails (ENXIO): the
    # read-ahead never opened the pipe, so a writer still meets the real read.
    with pytest.raises(OSError):
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    assert fresh_readahead.file_bytes(fifo) is None


def written_jpeg(path, mode="RGB", **options):
    pixels = random_samples((48, 64, 3), np.uint8, seed=4)
    picture = PILImage.fromarray(pixels).convert(mode)
    picture.save(path, quality=90, **options)
    return picture


@pytest.mark.parametrize("mode, options", [("RGB", {}), ("L", {}), ("RGB", {"progressive": True})])
def test_a_jpeg_is_decoded_ahead_as_the_decoder_would(tmp_path, fresh_readahead, mode, options):
    from convtool.images import jpeg

    path = tmp_path / "photo.jpg"
    picture = written_jpeg(path, mode, **options)
    fresh_readahead.start(str(path), None)
    fresh_readahead._ahead.done.wait()
    assert fresh_readahead._ahead.jpeg is not None
    expected = jpeg.decode(path.read_bytes(), mode, picture.size)
    image = read_image(path)
    assert fresh_readahead._ahead.jpeg is None and fresh_readahead._ahead.given is None  # taken
    np.testing.assert_array_equal(image.pixels, expected.astype(np.float32))
    reference = np.asarray(PILImage.open(path), dtype=np.float32)
    np.testing.assert_array_equal(image.pixels, reference.reshape(image.pixels.shape))


def test_samples_read_ahead_in_another_mode_or_size_are_not_used(tmp_path, fresh_readahead):
    path = tmp_path / "photo.jpg"
    picture = written_jpeg(path)
    fresh_readahead.start(str(path), None)
    data = fresh_readahead.file_bytes(path)
    assert fresh_readahead.jpeg_samples(data, "L", picture.size) is None


def test_a_cmyk_jpeg_is_left_to_the_ordinary_read(tmp_path, fresh_readahead):
    path = tmp_path / "print.jpg"
    picture = written_jpeg(path, "CMYK")
    fresh_readahead.start(str(path), None)
    fresh_readahead._ahead.done.wait()
    assert fresh_readahead._ahead.jpeg is None
    assert read_image(path).pixels.shape == (picture.height, picture.width, 3)


def test_a_jpeg_over_the_pixel_limit_is_not_decoded_ahead(tmp_path, fresh_readahead):
    path = tmp_path / "photo.jpg"
    written_jpeg(path)
    fresh_readahead.start(str(path), 1000)  # 64×48 = 3072 pixels
    fresh_readahead._ahead.done.wait()
    assert fresh_readahead._ahead.jpeg is None


def test_without_the_compiled_unfiltering_no_stream_is_inflated_ahead(
    tmp_path, fresh_readahead, monkeypatch
):
    import sys

    path = tmp_path / "photo.png"
    pixels = written_png(path)
    monkeypatch.setitem(sys.modules, "convtool.images._png", None)  # as if never built
    assert png_pixels.decode_samples(path.read_bytes()) is None
    fresh_readahead.start(str(path), None)
    fresh_readahead._ahead.done.wait()
    assert fresh_readahead._ahead.raw is None and fresh_readahead._ahead.data is not None
    np.testing.assert_array_equal(read_image(path).pixels, pixels.astype(np.float32))

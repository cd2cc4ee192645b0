"""The fast path from file to file: channel planes, banded range mapping, the PNG writer.

Each shortcut is checked against the plain computation it replaces: mapping by bands
against :func:`map_range` over the whole image, the banded PNG writer against Pillow's
and libvips' reading of it, the Adler-32 of joined bands against zlib's own.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage

from convtool.images import Image, map_range, png, ranges, read_image, write_image
from convtool.pipeline import Chain, parse_steps

RNG = np.random.default_rng(14)


def pillow_array(data: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(data)) as im:
        return np.asarray(im)


# ------------------------------------------------------------------------------- layout


def test_read_pixels_are_a_view_of_channel_planes(tmp_path):
    rgb = RNG.integers(0, 256, (21, 34, 3), dtype=np.uint8)
    PILImage.fromarray(rgb).save(tmp_path / "in.png")
    image = read_image(tmp_path / "in.png")
    assert image.pixels.shape == (21, 34, 3)
    planes = np.moveaxis(image.pixels, -1, 0)
    assert planes.flags.c_contiguous  # the engine reads these rows without a copy
    np.testing.assert_array_equal(image.pixels, rgb)
    assert image.pixels.dtype == np.float32


def test_the_chain_gives_planes_back_and_writes_the_same_pixels(tmp_path):
    rgb = RNG.integers(0, 256, (40, 50, 3)).astype(np.float32)
    chain = Chain(parse_steps(["binomial:3"]))
    out, _ = chain.apply(rgb)
    assert np.moveaxis(out, -1, 0).flags.c_contiguous
    contiguous, _ = chain.apply(np.ascontiguousarray(rgb))
    np.testing.assert_array_equal(out, contiguous)
    write_image(tmp_path / "a.png", Image(out, depth=8))
    write_image(tmp_path / "b.png", Image(np.ascontiguousarray(out), depth=8))
    assert np.array_equal(
        pillow_array((tmp_path / "a.png").read_bytes()),
        pillow_array((tmp_path / "b.png").read_bytes()),
    )


# ------------------------------------------------------------------------- range mapping

SPECIAL = np.array([np.nan, np.inf, -np.inf, -0.5, 0.5, 1.5, 2.5, 254.5, 255.5, 1e30])


def results(channels: int, dtype=np.float32) -> np.ndarray:
    """Filter-like results: out of range both ways, halves to round, NaN and infinities."""
    values = RNG.normal(128, 150, (29, 31, channels)).astype(dtype)
    values.flat[: SPECIAL.size] = SPECIAL
    return values


def whole_image_reference(pixels, alpha, source, depth, mode):
    """What output_samples promises, computed the plain way over the whole image."""
    top = ranges.MAX_VALUES.get(depth)
    if depth == "float":
        colour = (
            pixels
            if mode is None
            else map_range(pixels, mode, ranges.MAX_VALUES.get(source) or 1.0)
        )
        factor = ranges._alpha_factor(source, depth)
        parts = [colour]
        if alpha is not None:
            a = alpha * factor if factor != 1.0 else alpha
            a = a if mode is None else map_range(a, "clip", 1.0)
            parts.append(a[:, :, None].astype(colour.dtype))
        return np.concatenate(parts, axis=2)
    work = np.float64 if depth == 32 else pixels.dtype
    factor = ranges._rescale_factor(source, depth)
    colour = pixels.astype(work) * factor
    colour = np.rint(map_range(colour, mode or "clip", top))
    parts = [colour]
    if alpha is not None:
        a = alpha.astype(work) * ranges._alpha_factor(source, depth)
        parts.append(np.rint(map_range(a, "clip", top))[:, :, None])
    return np.concatenate(parts, axis=2).astype(ranges._INT_DTYPES[depth])


@pytest.mark.parametrize("mode", [None, "clip", "abs", "offset", "rescale"])
@pytest.mark.parametrize(
    ("source", "depth"),
    [(8, 8), (8, 16), (16, 8), (16, 16), ("float", 8), (32, 32), (8, "float"), ("float", "float")],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_banded_mapping_equals_mapping_the_whole_image(monkeypatch, mode, source, depth, channels):
    monkeypatch.setattr(ranges, "_CHUNK_ELEMENTS", 40)  # a row or two per chunk
    monkeypatch.setattr(ranges, "_SPAN_ELEMENTS", 100)  # rescale's span read in bands
    pixels = results(channels)
    alpha = RNG.uniform(-10, 300, pixels.shape[:2]).astype(np.float32)
    samples = ranges.output_samples(pixels, alpha, source, depth, mode)
    expected = whole_image_reference(pixels, alpha, source, depth, mode)
    np.testing.assert_array_equal(samples.whole(), expected)
    # any band of rows is the same rows of the whole
    np.testing.assert_array_equal(samples.rows(5, 17), expected[5:17])


def test_rescale_reads_its_span_band_by_band_with_infinities_in_one_band(monkeypatch):
    monkeypatch.setattr(ranges, "_SPAN_ELEMENTS", 31)  # one row per band
    pixels = np.tile(np.arange(31, dtype=np.float32), (8, 1))[:, :, None]
    pixels[3] = np.inf  # a band with nothing finite at all
    pixels[5, 0] = np.nan
    mapped = ranges.output_samples(pixels, None, 8, 8, "rescale").whole()
    np.testing.assert_array_equal(mapped, whole_image_reference(pixels, None, 8, 8, "rescale"))
    assert mapped[0, 0, 0] == 0 and mapped[0, -1, 0] == 255


# ---------------------------------------------------------------------------- PNG writer


@pytest.mark.parametrize("level", [0, 1, 2, 3])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("depth", [8, 16])
def test_png_bands_read_back_exactly(tmp_path, monkeypatch, level, channels, depth):
    monkeypatch.setattr(png, "_BAND_BYTES", 150)  # a few rows a band, many IDAT chunks
    top = 255 if depth == 8 else 65535
    values = RNG.integers(0, top + 1, (23, 19, channels)).astype(np.float32)
    colour = values[:, :, : 3 if channels >= 3 else 1]
    alpha = values[:, :, -1] if channels in (2, 4) else None
    path = tmp_path / "bands.png"
    write_image(path, Image(colour, alpha=alpha, depth=depth), compress_level=level)
    assert np.array_equal(read_image(path).pixels, colour)
    if depth == 8:  # Pillow keeps 8 bits of 16-bit colour; read_image is checked above
        decoded = pillow_array(path.read_bytes())
        np.testing.assert_array_equal(decoded.reshape(values.shape), values.astype(np.uint8))


@pytest.mark.skipif(shutil.which("vips") is None, reason="libvips is not installed")
@pytest.mark.parametrize("depth", [8, 16])
def test_libvips_reads_the_banded_png(tmp_path, monkeypatch, depth):
    monkeypatch.setattr(png, "_BAND_BYTES", 300)
    top = 255 if depth == 8 else 65535
    values = RNG.integers(0, top + 1, (17, 23, 3)).astype(np.float32)
    path = tmp_path / "out.png"
    write_image(path, Image(values, depth=depth))
    raw = tmp_path / "out.v"
    subprocess.run(["vips", "copy", str(path), str(raw)], check=True)
    dtype = np.uint8 if depth == 8 else np.uint16
    # a .v file is a header of 64 bytes, then the pixels as they are held in memory
    pixels = np.frombuffer(raw.read_bytes()[64 : 64 + values.size * dtype().itemsize], dtype)
    np.testing.assert_array_equal(pixels.reshape(values.shape), values.astype(dtype))


def test_png_filtered_rows_inflate_to_up_differences(tmp_path, monkeypatch):
    monkeypatch.setattr(png, "_BAND_BYTES", 50)
    values = RNG.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    path = tmp_path / "up.png"
    write_image(path, Image(values.astype(np.float32), depth=8), compress_level=1)
    data = path.read_bytes()
    idat, offset = b"", 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        if data[offset + 4 : offset + 8] == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(9, 1 + 7 * 3)
    assert set(raw[:, 0]) == {2}  # Up on every row
    rows = values.reshape(9, -1)
    np.testing.assert_array_equal(raw[0, 1:], rows[0])
    np.testing.assert_array_equal(raw[1:, 1:], rows[1:] - rows[:-1])  # mod 256


@pytest.mark.parametrize("sizes", [(0, 5), (1, 1), (7, 0), (100_000, 70_000), (3, 65521 * 2 + 3)])
def test_adler32_of_joined_bands(sizes):
    first, second = (RNG.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes)
    joined = png.adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
    assert joined == zlib.adler32(first + second)

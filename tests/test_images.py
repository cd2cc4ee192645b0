"""Image input/output: formats, depths, alpha, palettes, orientation, range mapping, errors.

References are independent of convtool's own code: Pillow (and tifffile) read what we
write and write what we read, 16-bit colour PNGs are built byte by byte below, and the
range mappings are worked out by hand.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import re
import stat
import struct
import subprocess
import sys
import time
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageOps

from convtool.errors import ImageReadError, ImageWriteError, ResourceLimitError, UsageError
from convtool.images import (
    GRAY_WEIGHTS,
    Image,
    atomic,
    codecs,
    format_for,
    is_image_path,
    map_range,
    png,
    read_image,
    remove_stale_temp_files,
    same_file,
    stale_temp_files,
    write_image,
)
from convtool.images import png as png_module

RNG = np.random.default_rng(7)
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def random_u8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def random_u16(*shape: int) -> np.ndarray:
    return RNG.integers(0, 65536, shape, dtype=np.uint16)


def pillow_array(path: Path | bytes) -> np.ndarray:
    """How Pillow itself reads a file (the reference for 8-bit and 16-bit grey files)."""
    with PILImage.open(io.BytesIO(path) if isinstance(path, bytes) else path) as im:
        return np.asarray(im)


def png16_bytes(samples: np.ndarray) -> bytes:
    """A minimal 16-bit PNG encoder (filter 0 on every row), independent of convtool's."""
    height, width, channels = samples.shape
    rows = samples.astype(">u2").reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------------------------
# Reading and writing the common cases exactly
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(9, 13), (9, 13, 3)], ids=["grey", "rgb"])
def test_8bit_png_round_trip_is_exact(tmp_path, shape):
    values = random_u8(*shape)
    PILImage.fromarray(values).save(tmp_path / "in.png")

    image = read_image(tmp_path / "in.png")
    assert image.depth == 8 and image.format == "PNG" and image.alpha is None
    assert image.pixels.dtype == np.float32 and image.pixels.shape == (9, 13, image.channels)
    assert image.channels == (3 if len(shape) == 3 else 1)
    np.testing.assert_array_equal(image.pixels.reshape(shape), values)

    write_image(tmp_path / "out.png", image)
    np.testing.assert_array_equal(pillow_array(tmp_path / "out.png"), values)


def test_16bit_grey_png_round_trip_is_exact(tmp_path):
    values = random_u16(11, 7)
    PILImage.fromarray(values).save(tmp_path / "in.png")  # Pillow writes I;16 PNG

    image = read_image(tmp_path / "in.png")
    assert image.depth == 16 and image.max_value == 65535
    np.testing.assert_array_equal(image.pixels[:, :, 0], values)

    write_image(tmp_path / "out.png", image)
    np.testing.assert_array_equal(pillow_array(tmp_path / "out.png"), values)


@pytest.mark.parametrize("channels", [2, 3, 4], ids=["grey+alpha", "rgb", "rgba"])
def test_16bit_colour_png_is_read_and_written_exactly(tmp_path, channels):
    """Pillow keeps only 8 bits of 16-bit colour; convtool keeps all 16, both ways."""
    values = random_u16(6, 10, channels)
    (tmp_path / "in.png").write_bytes(png16_bytes(values))

    image = read_image(tmp_path / "in.png")
    colour = 1 if channels == 2 else 3
    assert image.depth == 16
    np.testing.assert_array_equal(image.pixels, values[:, :, :colour])
    np.testing.assert_array_equal(image.alpha, values[:, :, colour] if channels % 2 == 0 else None)

    write_image(tmp_path / "out.png", image)
    again = read_image(tmp_path / "out.png")
    np.testing.assert_array_equal(again.pixels, image.pixels)
    np.testing.assert_array_equal(again.alpha, image.alpha)
    # Pillow's own (8-bit) reading of our file sees the high bytes, so the file is a real PNG.
    np.testing.assert_array_equal(
        pillow_array(tmp_path / "out.png")[:, :, :colour], values[:, :, :colour] >> 8
    )


def test_16bit_colour_png_agrees_with_opencv(tmp_path):
    cv2 = pytest.importorskip("cv2")
    values = random_u16(20, 30, 3)
    write_image(tmp_path / "out.png", Image(values.astype(np.float32), depth=16))
    decoded = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded[:, :, ::-1], values)


def test_rgba_alpha_is_split_off_and_written_back(tmp_path):
    values = random_u8(8, 5, 4)
    PILImage.fromarray(values).save(tmp_path / "in.png")

    image = read_image(tmp_path / "in.png")
    np.testing.assert_array_equal(image.pixels, values[:, :, :3])
    np.testing.assert_array_equal(image.alpha, values[:, :, 3])

    for name in ("out.png", "out.webp", "out.tif"):
        write_image(tmp_path / name, image)
        np.testing.assert_array_equal(pillow_array(tmp_path / name), values)


def test_formats_without_alpha_get_the_colour_composited_over_white(tmp_path):
    image = Image(random_u8(4, 4, 3).astype(np.float32), random_u8(4, 4), depth=8)
    notes = write_image(tmp_path / "out.bmp", image)
    with PILImage.open(tmp_path / "out.bmp") as written:
        assert written.mode == "RGB"
    cover = image.alpha[:, :, None] / 255.0
    expected = np.rint(image.pixels * cover + 255.0 * (1 - cover))
    np.testing.assert_array_equal(pillow_array(tmp_path / "out.bmp"), expected)
    assert notes == [
        "BMP has no alpha channel: composited over white (--background COLOR picks another)"
    ]


def test_palette_image_becomes_rgb(tmp_path):
    palette = random_u8(256, 3)
    indices = RNG.integers(0, 6, (7, 9), dtype=np.uint8)
    picture = PILImage.fromarray(indices).convert("P")
    picture.putpalette(palette.tobytes())
    picture.save(tmp_path / "p.png")

    image = read_image(tmp_path / "p.png")
    assert image.depth == 8 and image.alpha is None
    np.testing.assert_array_equal(image.pixels, palette[indices])


@pytest.mark.parametrize("name", ["p.png", "p.gif"])
def test_palette_transparency_becomes_alpha(tmp_path, name):
    palette = random_u8(256, 3)
    indices = RNG.integers(0, 6, (7, 9), dtype=np.uint8)
    picture = PILImage.fromarray(indices).convert("P")
    picture.putpalette(palette.tobytes())
    picture.save(tmp_path / name, transparency=2)

    image = read_image(tmp_path / name)
    np.testing.assert_array_equal(image.alpha, np.where(indices == 2, 0, 255))
    visible = indices != 2
    np.testing.assert_array_equal(image.pixels[visible], palette[indices][visible])


def test_one_bit_image_reads_as_0_and_255(tmp_path):
    bits = RNG.integers(0, 2, (5, 16)).astype(bool)
    PILImage.fromarray(bits).save(tmp_path / "bits.png")
    image = read_image(tmp_path / "bits.png")
    assert image.depth == 8
    np.testing.assert_array_equal(image.pixels[:, :, 0], np.where(bits, 255, 0))


def test_cmyk_jpeg_is_converted_to_rgb_as_pillow_does(tmp_path):
    PILImage.fromarray(random_u8(8, 8, 3)).convert("CMYK").save(tmp_path / "c.jpg")
    with PILImage.open(tmp_path / "c.jpg") as im:
        expected = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(read_image(tmp_path / "c.jpg").pixels, expected)


def test_gif_reads_the_first_frame(tmp_path):
    frames = [PILImage.fromarray(np.full((4, 4), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    np.testing.assert_array_equal(read_image(tmp_path / "anim.gif").pixels, 10)


@pytest.mark.parametrize("name", ["out.bmp", "out.webp", "out.gif", "out.ppm", "out.tif"])
def test_8bit_grey_round_trips_through_lossless_formats(tmp_path, name):
    values = random_u8(6, 9)
    write_image(tmp_path / name, Image(values.astype(np.float32), depth=8))
    assert read_image(tmp_path / name).depth == 8
    np.testing.assert_array_equal(read_image(tmp_path / name).pixels[:, :, 0], values)


def test_16bit_tiff_and_pnm_round_trip_in_colour(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    image = Image(random_u16(5, 6, 3).astype(np.float32), random_u16(5, 6), depth=16)
    write_image(tmp_path / "out.tif", image)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif")[:, :, :3], image.pixels)
    again = read_image(tmp_path / "out.tif")
    np.testing.assert_array_equal(again.pixels, image.pixels)
    np.testing.assert_array_equal(again.alpha, image.alpha)

    write_image(tmp_path / "out.ppm", Image(image.pixels, depth=16))  # binary P6, maxval 65535
    header = b"P6\n6 5\n65535\n"
    assert (tmp_path / "out.ppm").read_bytes() == header + image.pixels.astype(">u2").tobytes()
    np.testing.assert_array_equal(read_image(tmp_path / "out.ppm").pixels, image.pixels)


@pytest.mark.parametrize("compression", [None, "zlib"])  # Pillow's raw and libtiff decoders
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_16bit_colour_tiff_is_read_exactly(tmp_path, compression, byteorder):
    tifffile = pytest.importorskip("tifffile")
    values = random_u16(9, 4, 4)
    tifffile.imwrite(
        tmp_path / "in.tif",
        values,
        photometric="rgb",
        extrasamples=["unassalpha"],
        compression=compression,
        byteorder=byteorder,
        rowsperstrip=2,  # several strips, so several decoder tiles
    )
    image = read_image(tmp_path / "in.tif")
    assert image.depth == 16
    np.testing.assert_array_equal(image.pixels, values[:, :, :3])
    np.testing.assert_array_equal(image.alpha, values[:, :, 3])


def test_tiffs_pillow_cannot_open_are_read_with_tifffile(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    grey_alpha = random_u16(3, 5, 2)
    tifffile.imwrite(
        tmp_path / "la16.tif", grey_alpha, photometric="minisblack", extrasamples=["unassalpha"]
    )
    image = read_image(tmp_path / "la16.tif")
    assert image.depth == 16
    np.testing.assert_array_equal(image.pixels[:, :, 0], grey_alpha[:, :, 0])
    np.testing.assert_array_equal(image.alpha, grey_alpha[:, :, 1])

    doubles = RNG.normal(size=(3, 5))
    tifffile.imwrite(tmp_path / "f64.tif", doubles, compression="zlib")
    image = read_image(tmp_path / "f64.tif", precision="double")
    np.testing.assert_array_equal(image.pixels[:, :, 0], doubles)


def test_32bit_and_signed_tiff_keep_their_values(tmp_path):
    """Pillow reads uint32 TIFF as signed int32; convtool reads it through tifffile, exactly."""
    tifffile = pytest.importorskip("tifffile")
    big = np.array([[0, 1, 2**31 + 5, 2**32 - 1]], np.uint32)
    tifffile.imwrite(tmp_path / "u32.tif", big)
    image = read_image(tmp_path / "u32.tif", precision="double")
    assert image.depth == 32
    np.testing.assert_array_equal(image.pixels[:, :, 0], big)
    write_image(tmp_path / "out.tif", image)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), big)

    signed = np.array([[-32768, -1, 0, 32767]], np.int16)
    tifffile.imwrite(tmp_path / "i16.tif", signed)
    np.testing.assert_array_equal(read_image(tmp_path / "i16.tif").pixels[:, :, 0], signed)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
def test_signed_tiff_and_npy_keep_their_sign_on_the_scale_of_their_size(tmp_path, dtype):
    """Pillow reads signed 8-bit TIFF as unsigned (-27 becomes 229): not convtool."""
    tifffile = pytest.importorskip("tifffile")
    info = np.iinfo(dtype)
    values = np.array([[-27, info.min, info.max, 0]], dtype)
    tifffile.imwrite(tmp_path / "signed.tif", values)
    np.save(tmp_path / "signed.npy", values)
    for name in ("signed.tif", "signed.npy"):
        image = read_image(tmp_path / name, precision="double")
        np.testing.assert_array_equal(image.pixels[:, :, 0], values)
        assert image.depth == {1: 8, 2: 16, 4: 32}[np.dtype(dtype).itemsize]


def test_tiff_layouts_are_refused_from_the_header_before_any_decoding(tmp_path, monkeypatch):
    """A 200-plane TIFF of a few MB would decode to 1.6 GB: it is refused unread."""
    tifffile = pytest.importorskip("tifffile")

    def decoded(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", decoded)
    monkeypatch.setattr(PILImage.Image, "load", decoded)
    zeros = np.zeros((200, 30, 40))
    tifffile.imwrite(
        tmp_path / "planes.tif", zeros, planarconfig="separate", photometric="minisblack"
    )
    volume = zeros.astype(np.uint8)
    tifffile.imwrite(
        tmp_path / "volume.tif", volume, volumetric=True, tile=(16, 16), photometric="minisblack"
    )
    six = np.zeros((30, 40, 6), np.uint8)  # Pillow would open this one, as RGB
    tifffile.imwrite(tmp_path / "six.tif", six, photometric="rgb", extrasamples=[0, 0, 0])
    tifffile.imwrite(tmp_path / "complex.tif", np.ones((30, 40), np.complex64))
    tifffile.imwrite(tmp_path / "twelve.tif", np.ones((30, 40), np.uint16), bitspersample=12)
    expected = {
        "planes.tif": "TIFF with 200 samples per pixel is not supported",
        "volume.tif": "TIFF volume of 200 planes (ImageDepth) is not supported",
        "six.tif": "TIFF with 6 samples per pixel is not supported",
        "complex.tif": "TIFF samples are complex numbers",
        "twelve.tif": "TIFF with 12-bit unsigned integer samples is not supported",
    }
    for name, message in expected.items():
        with pytest.raises(ImageReadError, match=re.escape(message)):
            read_image(tmp_path / name)
    with pytest.raises(ResourceLimitError, match=r"40×30×200 planes = 240,000 pixels"):
        read_image(tmp_path / "volume.tif", max_pixels=100_000)


def test_tiff_sample_formats_and_counts_allowed():
    layout = codecs.TiffLayout
    layout(8, 8, samples=5, photometric=5).check("cmyk-alpha.tif", None)  # CMYK + alpha
    layout(8, 8, samples=4, bits=16, sample_format=2).check("rgba-signed.tif", None)
    layout(8, 8, bits=16, sample_format=3).check("half.tif", None)  # float16
    with pytest.raises(ImageReadError, match="sample format 4 .undefined."):
        layout(8, 8, sample_format=4).check("void.tif", None)
    with pytest.raises(ImageReadError, match="24-bit signed integer samples"):
        layout(8, 8, bits=24, sample_format=2).check("s24.tif", None)
    with pytest.raises(ResourceLimitError, match=r"8×8×2 planes = 128 pixels"):
        layout(8, 8, samples=5, photometric=5).check("cmyk-alpha.tif", 100)


def test_jpeg_is_written_at_high_quality(tmp_path):
    smooth = np.add.outer(np.arange(32), np.arange(32)).astype(np.float32) * 4
    write_image(tmp_path / "out.jpg", Image(smooth, depth=8))
    assert np.abs(pillow_array(tmp_path / "out.jpg").astype(float) - smooth).max() <= 3


# --------------------------------------------------------------------------------------------
# Float data: .npy and float TIFF keep raw values
# --------------------------------------------------------------------------------------------


def test_npy_float_round_trip_keeps_negative_values(tmp_path):
    values = (RNG.normal(size=(5, 7, 3)) * 1000).astype(np.float32)
    np.save(tmp_path / "in.npy", values)
    image = read_image(tmp_path / "in.npy")
    assert image.depth == "float" and image.format == "NPY" and image.max_value is None
    np.testing.assert_array_equal(image.pixels, values)

    write_image(tmp_path / "out.npy", image)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), values)


def test_npy_double_precision_is_exact(tmp_path):
    values = RNG.normal(size=(4, 6))
    np.save(tmp_path / "in.npy", values)
    image = read_image(tmp_path / "in.npy", precision="double")
    assert image.pixels.dtype == np.float64
    write_image(tmp_path / "out.npy", image)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), values)  # grey stays 2-D


@pytest.mark.parametrize(
    ("dtype", "channels", "depth", "has_alpha"),
    [
        (np.uint8, 1, 8, False),
        (np.uint16, 2, 16, True),
        (np.int32, 3, 32, False),
        (np.float64, 4, "float", True),
    ],
)
def test_npy_channels_and_dtypes(tmp_path, dtype, channels, depth, has_alpha):
    values = RNG.integers(0, 200, (3, 4, channels)).astype(dtype)
    np.save(tmp_path / "in.npy", values)
    image = read_image(tmp_path / "in.npy")
    assert image.depth == depth and (image.alpha is not None) == has_alpha
    colour = channels - 1 if has_alpha else channels
    np.testing.assert_array_equal(image.pixels, values[:, :, :colour])


def test_npy_bool_reads_as_0_and_255(tmp_path):
    np.save(tmp_path / "mask.npy", np.eye(3, dtype=bool))
    np.testing.assert_array_equal(
        read_image(tmp_path / "mask.npy").pixels[:, :, 0], np.eye(3) * 255
    )


def test_npy_with_alpha_is_written_as_an_extra_channel(tmp_path):
    image = Image(np.full((2, 3, 3), -1.5), np.full((2, 3), 0.25))
    write_image(tmp_path / "out.npy", image)
    written = np.load(tmp_path / "out.npy")
    assert written.shape == (2, 3, 4)
    np.testing.assert_array_equal(written[:, :, 3], 0.25)


@pytest.mark.parametrize("channels", [1, 3])
def test_float_tiff_keeps_raw_values(tmp_path, channels):
    tifffile = pytest.importorskip("tifffile")
    values = (RNG.normal(size=(6, 5, channels)) * 300).astype(np.float32)
    image = Image(values, values[:, :, 0] - 7, depth=8)
    write_image(tmp_path / "out.tif", image, depth="float")

    stored = tifffile.imread(tmp_path / "out.tif")
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored[..., :channels].reshape(values.shape), values)
    again = read_image(tmp_path / "out.tif")
    assert again.depth == "float"
    np.testing.assert_array_equal(again.pixels, values)
    # alpha is opacity: 8-bit 0..255 becomes float 0..1 (the colour stays raw)
    np.testing.assert_allclose(again.alpha, image.alpha / 255, rtol=1e-6)


def test_float_output_maps_only_when_asked(tmp_path):
    image = Image(np.array([[-10.0, 100.0, 300.0]]), depth=8)
    write_image(tmp_path / "raw.npy", image)
    write_image(tmp_path / "clipped.npy", image, range_mode="clip")
    np.testing.assert_array_equal(np.load(tmp_path / "raw.npy"), [[-10, 100, 300]])
    np.testing.assert_array_equal(np.load(tmp_path / "clipped.npy"), [[0, 100, 255]])


# --------------------------------------------------------------------------------------------
# stdin / stdout
# --------------------------------------------------------------------------------------------


def png_bytes(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(values).save(buffer, "PNG")
    return buffer.getvalue()


def test_read_from_stdin_tells_the_format_from_the_bytes(monkeypatch):
    values = random_u8(4, 5, 3)
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(png_bytes(values))))
    image = read_image("-")
    assert image.source == "-" and image.format == "PNG"
    np.testing.assert_array_equal(image.pixels, values)

    buffer = io.BytesIO()
    np.save(buffer, values[:, :, 0].astype(np.float32) - 100)
    image = read_image("-", stdin=io.BytesIO(buffer.getvalue()))
    assert image.format == "NPY"
    np.testing.assert_array_equal(image.pixels[:, :, 0], values[:, :, 0] - 100.0)


def test_write_to_stdout_defaults_to_png():
    values = random_u8(3, 4)
    out = io.BytesIO()
    write_image("-", Image(values.astype(np.float32), depth=8), stdout=out)
    assert out.getvalue().startswith(b"\x89PNG")
    np.testing.assert_array_equal(pillow_array(out.getvalue()), values)

    out = io.BytesIO()
    write_image("-", Image(np.full((2, 2), -3.0)), format="npy", stdout=out)
    np.testing.assert_array_equal(np.load(io.BytesIO(out.getvalue())), np.full((2, 2), -3.0))


def test_tiff_to_stdout():
    tifffile = pytest.importorskip("tifffile")
    out = io.BytesIO()
    values = np.array([[-1.5, 2.25]], np.float32)
    write_image("-", Image(values), format="tif", stdout=out)
    np.testing.assert_array_equal(tifffile.imread(io.BytesIO(out.getvalue())), values)


def test_read_from_a_named_pipe(tmp_path):
    """A pipe can be read once only; it is read whole, as stdin is."""
    values = random_u8(5, 6)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    writer = subprocess.Popen(
        [sys.executable, "-c", f"open({str(pipe)!r}, 'wb').write({png_bytes(values)!r})"]
    )
    try:
        np.testing.assert_array_equal(read_image(pipe).pixels[:, :, 0], values)
    finally:
        writer.wait(timeout=30)


def test_filter_reads_a_named_pipe_whole_as_from_a_file(tmp_path):
    # `convtool filter <(cat in.png) ...`: deciding whether to stream must not eat the
    # pipe's first bytes (a pipe is read once, whole, by the decoder).
    values = random_u8(9, 11)
    source = tmp_path / "in.png"
    source.write_bytes(png_bytes(values))
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    writer = subprocess.Popen(
        [sys.executable, "-c", f"open({str(pipe)!r}, 'wb').write({source.read_bytes()!r})"]
    )
    try:
        for name, src in (("from-pipe.png", pipe), ("from-file.png", source)):
            done = subprocess.run(
                [sys.executable, "-m", "convtool", "filter", str(src), "-k", "box:3",
                 "-o", str(tmp_path / name)],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
    finally:
        writer.wait(timeout=30)
    assert (tmp_path / "from-pipe.png").read_bytes() == (tmp_path / "from-file.png").read_bytes()


def test_write_to_sys_stdout_buffer(monkeypatch):
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", types.SimpleNamespace(buffer=out))
    write_image("-", Image(np.zeros((2, 2)), depth=8), format="bmp")
    assert out.getvalue().startswith(b"BM")


# --------------------------------------------------------------------------------------------
# EXIF orientation, grey conversion
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does(tmp_path, orientation):
    values = random_u8(4, 7, 4)  # not square, so every orientation is distinct
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    PILImage.fromarray(values).save(tmp_path / "o.png", exif=exif)
    with PILImage.open(tmp_path / "o.png") as im:
        expected = np.asarray(ImageOps.exif_transpose(im))

    image = read_image(tmp_path / "o.png")
    np.testing.assert_array_equal(image.pixels, expected[:, :, :3])
    np.testing.assert_array_equal(image.alpha, expected[:, :, 3])


def test_exif_orientation_of_a_jpeg(tmp_path):
    exif = PILImage.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    PILImage.fromarray(random_u8(8, 16, 3)).save(tmp_path / "o.jpg", exif=exif)
    with PILImage.open(tmp_path / "o.jpg") as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    image = read_image(tmp_path / "o.jpg")
    assert image.pixels.shape == (16, 8, 3)
    np.testing.assert_array_equal(image.pixels, expected)


def test_gray_uses_bt601_weights_in_floating_point(tmp_path):
    PILImage.fromarray(np.array([[[10, 20, 30], [255, 0, 1]]], np.uint8)).save(tmp_path / "c.png")
    image = read_image(tmp_path / "c.png", gray=True, precision="double")
    assert GRAY_WEIGHTS == (0.299, 0.587, 0.114)
    # 0.299*10 + 0.587*20 + 0.114*30 = 18.15 (Pillow's "L" would round it to 18)
    np.testing.assert_allclose(image.pixels[:, :, 0], [[18.15, 0.299 * 255 + 0.114]], rtol=1e-15)


def test_gray_keeps_alpha_and_leaves_grey_alone(tmp_path):
    PILImage.fromarray(random_u8(3, 3, 4)).save(tmp_path / "c.png")
    assert read_image(tmp_path / "c.png", gray=True).alpha is not None
    PILImage.fromarray(random_u8(3, 3)).save(tmp_path / "g.png")
    np.testing.assert_array_equal(
        read_image(tmp_path / "g.png", gray=True).pixels, read_image(tmp_path / "g.png").pixels
    )


# --------------------------------------------------------------------------------------------
# Range modes and depth changes, by hand-worked numbers
# --------------------------------------------------------------------------------------------

VALUES = np.array([-20.0, 0.0, 100.5, 101.5, 254.6, 300.0])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # round half to even: 100.5 → 100, 101.5 → 102
        ("clip", [0, 0, 100, 102, 255, 255]),
        ("abs", [20, 0, 100, 102, 255, 255]),
        # + 128: 108, 128, 228.5 → 228, 229.5 → 230, 382.6 → 255, 428 → 255
        ("offset", [108, 128, 228, 230, 255, 255]),
        # (x + 20) × 255 / 320: 0, 15.94 → 16, 96.02 → 96, 96.82 → 97, 218.83 → 219, 255
        ("rescale", [0, 16, 96, 97, 219, 255]),
    ],
)
def test_range_modes_8bit(tmp_path, mode, expected):
    write_image(tmp_path / "out.png", Image(VALUES[None, :], depth=8), range_mode=mode)
    np.testing.assert_array_equal(pillow_array(tmp_path / "out.png")[0], expected)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("clip", [0, 0, 40000, 65535]),  # 40000.5 → 40000 (half to even)
        ("abs", [1000, 0, 40000, 65535]),
        ("offset", [31768, 32768, 65535, 65535]),  # + 32768
        # (x + 1000) × 65535 / 71000: 0, 923.03 → 923, 37844.62 → 37845, 65535
        ("rescale", [0, 923, 37845, 65535]),
    ],
)
def test_range_modes_16bit(tmp_path, mode, expected):
    values = np.array([[-1000.0, 0.0, 40000.5, 70000.0]])
    write_image(tmp_path / "out.png", Image(values, depth=16), range_mode=mode)
    np.testing.assert_array_equal(pillow_array(tmp_path / "out.png")[0], expected)


def test_rescale_spans_all_channels_and_a_constant_image_maps_to_0():
    rgb = np.array([[[0.0, 10.0, 20.0]]])
    np.testing.assert_allclose(map_range(rgb, "rescale", 255), [[[0, 127.5, 255]]])
    np.testing.assert_array_equal(map_range(np.full((2, 2), 7.0), "rescale", 255), 0)


def test_nan_becomes_0_and_infinities_clip():
    mapped = map_range(np.array([np.nan, np.inf, -np.inf, 3.0]), "clip", 255)
    np.testing.assert_array_equal(mapped, [0, 255, 0, 3])
    np.testing.assert_array_equal(
        map_range(np.array([np.nan, np.inf, 1.0, 3.0]), "rescale", 255), [0, 255, 0, 255]
    )


def test_alpha_is_clipped_never_rescaled(tmp_path):
    image = Image(np.array([[0.0, 50.0]]), np.array([[-5.0, 300.0]]), depth=8)
    write_image(tmp_path / "out.png", image, range_mode="rescale")
    np.testing.assert_array_equal(pillow_array(tmp_path / "out.png"), [[[0, 0], [255, 255]]])


def test_depth_changes_between_8_and_16_bits_rescale(tmp_path):
    sixteen = Image(np.array([[0.0, 257.0, 32768.0, 65535.0]]), depth=16)
    write_image(tmp_path / "to8.bmp", sixteen)  # BMP holds 8 bits only: ÷ 257
    np.testing.assert_array_equal(pillow_array(tmp_path / "to8.bmp")[0], [0, 1, 128, 255])

    eight = Image(np.array([[0.0, 1.0, 255.0]]), depth=8)
    write_image(tmp_path / "to16.png", eight, depth=16)  # × 257
    np.testing.assert_array_equal(pillow_array(tmp_path / "to16.png")[0], [0, 257, 65535])


def test_float_image_defaults_to_8_bits_as_is(tmp_path):
    write_image(tmp_path / "out.png", Image(np.array([[-1.0, 0.4, 77.0, 999.0]])))
    with PILImage.open(tmp_path / "out.png") as written:
        assert written.mode == "L"
        np.testing.assert_array_equal(np.asarray(written)[0], [0, 0, 77, 255])


def test_depth_string_from_the_cli_is_accepted(tmp_path):
    write_image(tmp_path / "out.png", Image(np.array([[1.0]]), depth=8), depth="16")
    assert pillow_array(tmp_path / "out.png")[0, 0] == 257


# --------------------------------------------------------------------------------------------
# Errors: one line, naming the file
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="no such file") as caught:
        read_image(tmp_path / "nope.png")
    assert caught.value.path == str(tmp_path / "nope.png")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(tmp_path / "empty.png")


def test_empty_stdin():
    with pytest.raises(ImageReadError, match="no data on standard input"):
        read_image("-", stdin=io.BytesIO(b""))


def test_text_is_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("hello, I am not a picture\n")
    with pytest.raises(ImageReadError, match="not an image"):
        read_image(tmp_path / "notes.png")


def test_truncated_png(tmp_path):
    data = png_bytes(random_u8(64, 64, 3))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_image(tmp_path / "cut.png")


def test_truncated_npy(tmp_path):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((50, 50)))
    (tmp_path / "cut.npy").write_bytes(buffer.getvalue()[:-100])
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_image(tmp_path / "cut.npy")


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)


def test_unsupported_npy_shape_and_dtype(tmp_path):
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4, 5)))
    with pytest.raises(ImageReadError, match="expected"):
        read_image(tmp_path / "cube.npy")
    np.save(tmp_path / "complex.npy", np.zeros((2, 3), complex))
    with pytest.raises(ImageReadError, match="complex numbers; convtool reads real-valued"):
        read_image(tmp_path / "complex.npy")
    np.save(tmp_path / "record.npy", np.zeros((2, 3), [("a", "u1"), ("b", "f4")]))
    with pytest.raises(ImageReadError, match="not a number type"):
        read_image(tmp_path / "record.npy")
    np.save(tmp_path / "none.npy", np.zeros((0, 3)))
    with pytest.raises(ImageReadError, match="no pixels"):
        read_image(tmp_path / "none.npy")


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size and has no pixel data: only a header check can see it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_too_many_pixels_is_refused_from_the_header(tmp_path):
    (tmp_path / "huge.png").write_bytes(huge_png_header(100_000, 100_000))
    with pytest.raises(ResourceLimitError, match="--max-pixels") as caught:
        read_image(tmp_path / "huge.png")
    assert "100000×100000" in str(caught.value) and caught.value.path == str(tmp_path / "huge.png")


def test_max_pixels_can_be_lowered_and_lifted(tmp_path):
    PILImage.fromarray(random_u8(10, 10)).save(tmp_path / "small.png")
    with pytest.raises(ResourceLimitError):
        read_image(tmp_path / "small.png", max_pixels=99)
    assert read_image(tmp_path / "small.png", max_pixels=100).pixels.shape == (10, 10, 1)
    assert read_image(tmp_path / "small.png", max_pixels=0).pixels.shape == (10, 10, 1)
    assert read_image(tmp_path / "small.png", max_pixels=None).pixels.shape == (10, 10, 1)


def test_too_many_pixels_in_an_npy_header(tmp_path):
    with open(tmp_path / "huge.npy", "wb") as f:
        header = {"descr": "<f4", "fortran_order": False, "shape": (100_000, 100_000)}
        np.lib.format.write_array_header_1_0(f, header)
    with pytest.raises(ResourceLimitError, match="--max-pixels"):
        read_image(tmp_path / "huge.npy")


def test_bad_read_options():
    with pytest.raises(UsageError, match="precision"):
        read_image("x.png", precision="half")


@pytest.mark.parametrize("name", ["out.xyz", "out"])
def test_unknown_output_extension_is_a_usage_error(tmp_path, name):
    with pytest.raises(UsageError, match="png") as caught:
        write_image(tmp_path / name, Image(np.zeros((2, 2))))
    assert caught.value.exit_code == 2
    assert not list(tmp_path.iterdir())


def test_depth_the_format_cannot_hold(tmp_path):
    with pytest.raises(UsageError, match="JPEG cannot hold depth 16"):
        write_image(tmp_path / "out.jpg", Image(np.zeros((2, 2))), depth=16)
    with pytest.raises(UsageError, match="PNG cannot hold depth 'float'"):
        write_image(tmp_path / "out.png", Image(np.zeros((2, 2))), depth="float")


def test_bad_write_options(tmp_path):
    with pytest.raises(UsageError, match="range mode"):
        write_image(tmp_path / "o.png", Image(np.zeros((2, 2))), range_mode="wrap")
    with pytest.raises(UsageError, match="compress level"):
        write_image(tmp_path / "o.png", Image(np.zeros((2, 2))), compress_level=10)


def test_missing_output_folder(tmp_path):
    with pytest.raises(ImageWriteError, match="folder does not exist"):
        write_image(tmp_path / "no" / "out.png", Image(np.zeros((2, 2))))


def test_output_folder_that_is_a_file(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ImageWriteError, match="not a folder"):
        write_image(tmp_path / "file" / "out.png", Image(np.zeros((2, 2))))


def test_output_onto_a_directory(tmp_path):
    (tmp_path / "out.png").mkdir()
    with pytest.raises(ImageWriteError, match="is a directory"):
        write_image(tmp_path / "out.png", Image(np.zeros((2, 2))))


@pytest.mark.skipif(IS_ROOT, reason="root can write into read-only folders")
def test_unwritable_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(ImageWriteError, match="permission denied"):
            write_image(folder / "out.png", Image(np.zeros((2, 2))))
    finally:
        folder.chmod(stat.S_IRWXU)


def test_permission_denied_when_creating_the_temp_file(tmp_path, monkeypatch):
    """The same message as test_unwritable_folder, simulated so that it runs as root too."""

    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:  # the temporary file
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "open", refuse)
    with pytest.raises(ImageWriteError, match="cannot write: permission denied"):
        write_image(tmp_path / "out.png", Image(np.zeros((2, 2))))


def test_image_validates_its_arrays():
    with pytest.raises(UsageError, match="shape"):
        Image(np.zeros((2, 2, 2, 2)))
    with pytest.raises(UsageError, match="shape"):
        Image(np.zeros((2, 2, 0)))
    with pytest.raises(UsageError, match="alpha"):
        Image(np.zeros((2, 2)), np.zeros((3, 3)))
    with pytest.raises(UsageError, match="depth"):
        Image(np.zeros((2, 2)), depth=12)


# --------------------------------------------------------------------------------------------
# Atomic writes, same-file checks, stale temporary files
# --------------------------------------------------------------------------------------------


def test_disk_full_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old contents")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(ImageWriteError, match="disk full") as caught:
        write_image(target, Image(np.zeros((4, 4))))
    assert caught.value.path == str(target)
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_encoder_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    def broken(*args):
        raise ValueError("encoder exploded")

    monkeypatch.setitem(codecs.ENCODERS, "png", broken)
    with pytest.raises(ImageWriteError, match="cannot encode as PNG: encoder exploded"):
        write_image(tmp_path / "out.png", Image(np.zeros((4, 4))))
    assert list(tmp_path.iterdir()) == []


def test_replacing_a_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    target.chmod(0o640)
    write_image(target, Image(np.zeros((4, 4))))
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_same_file(tmp_path):
    first = tmp_path / "a.png"
    first.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(first)
    assert same_file(first, tmp_path / "." / "a.png")
    assert same_file(first, tmp_path / "link.png")
    assert not same_file(first, tmp_path / "b.png")  # an output that does not exist yet
    assert not same_file("-", "-")


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@contextlib.contextmanager
def locked_here(path: Path):
    """Hold *path*'s lock from this process, as convtool does while it writes a temp file."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


LOCK_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


@contextlib.contextmanager
def locked_elsewhere(path: Path):
    """Hold *path*'s lock from another process (a writer in another container or host)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        yield
    finally:
        holder.kill()
        holder.wait()


# Larger than any pid Linux hands out (pid_max is at most 2**22): a writer whose pid is not
# visible here, as in another pid namespace or on another host.
FOREIGN_PID = 999_999_999


def test_stale_temp_files_are_those_whose_lock_can_be_taken(tmp_path):
    writing_elsewhere = tmp_path / f".a.png.convtool-{FOREIGN_PID}-0a1b2c3d.tmp"
    writing_here = tmp_path / f".b.png.convtool-{os.getpid()}-0a1b2c3d.tmp"
    abandoned = tmp_path / f".c.png.convtool-{os.getpid()}-0a1b2c3d.tmp"  # pid alive: no matter
    dead = tmp_path / f".d.png.convtool-{dead_pid()}-0a1b2c3d.tmp"
    unrelated = tmp_path / ".c.png.tmp"
    for path in (writing_elsewhere, writing_here, abandoned, dead, unrelated):
        path.write_bytes(b"partial")

    with locked_elsewhere(writing_elsewhere), locked_here(writing_here):
        assert stale_temp_files(tmp_path) == [abandoned, dead]
        assert remove_stale_temp_files(tmp_path) == [abandoned, dead]
        assert sorted(tmp_path.iterdir()) == sorted([writing_elsewhere, writing_here, unrelated])
    assert remove_stale_temp_files(tmp_path) == [writing_elsewhere, writing_here]  # now gone


def test_removing_stale_temp_files_below_a_folder_reaches_its_subfolders(tmp_path):
    """What a batch run does to its output tree: the same rule, in every folder below."""
    (tmp_path / "sub").mkdir()
    top = tmp_path / f".a.png.convtool-{dead_pid()}-0a1b2c3d.tmp"
    below = tmp_path / "sub" / f".b.png.convtool-{dead_pid()}-0a1b2c3d.tmp"
    top.write_bytes(b"partial")
    below.write_bytes(b"partial")

    assert remove_stale_temp_files(tmp_path) == [top]
    assert below.exists()
    assert remove_stale_temp_files(tmp_path, recursive=True) == [below]
    assert not below.exists()


def test_a_temp_file_is_locked_while_it_is_written(tmp_path):
    seen = []

    def write(fileobj):
        fileobj.write(b"half")
        seen.extend(stale_temp_files(tmp_path))  # what a cleaner in another run would see
        seen.append(len([p for p in tmp_path.iterdir() if ".convtool-" in p.name]))

    atomic.atomic_write(tmp_path / "out.bin", write)
    assert seen == [1]  # one temporary file, and it is not stale
    assert (tmp_path / "out.bin").read_bytes() == b"half"


def test_a_removed_temp_file_is_reported_as_such(tmp_path):
    def write(fileobj):
        fileobj.write(b"half")
        for path in tmp_path.glob(".out.bin.convtool-*"):
            path.unlink()  # what a careless cleaner would do

    with pytest.raises(ImageWriteError, match="temporary file was removed by another process"):
        atomic.atomic_write(tmp_path / "out.bin", write)
    assert list(tmp_path.iterdir()) == []


def test_a_single_write_removes_its_own_stale_temp_files_only(tmp_path):
    own = tmp_path / f".out.png.convtool-{FOREIGN_PID}-0a1b2c3d.tmp"
    others = tmp_path / f".other.png.convtool-{FOREIGN_PID}-0a1b2c3d.tmp"
    live = tmp_path / f".out.png.convtool-{FOREIGN_PID}-12345678.tmp"
    for path in (own, others, live):
        path.write_bytes(b"partial")
    with locked_elsewhere(live):
        write_image(tmp_path / "out.png", Image(np.zeros((2, 2))))
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["out.png", others.name, live.name]
        )


def test_temp_names_follow_the_pattern(tmp_path):
    temp = atomic.temp_path_for(tmp_path / "result.png")
    assert temp.parent == tmp_path
    assert temp.name.startswith(f".result.png.convtool-{os.getpid()}-")
    assert temp.name.endswith(".tmp")


# --------------------------------------------------------------------------------------------
# Names and formats
# --------------------------------------------------------------------------------------------


def test_format_for_extensions_and_names():
    assert format_for("a/b.JPG") == "jpeg"
    assert format_for("x.tiff") == "tiff"
    assert format_for("x.pgm") == "pnm"
    assert format_for("-") == "png"
    assert format_for("-", "tif") == "tiff"
    assert format_for("whatever.png", "npy") == "npy"
    with pytest.raises(UsageError, match="unknown output format 'exr'"):
        format_for("-", "exr")


def test_is_image_path():
    assert is_image_path("photo.JPEG") and is_image_path(Path("a/b.npy"))
    assert not is_image_path("notes.txt") and not is_image_path("README")


# --------------------------------------------------------------------------------------------
# The shipped samples
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "channels", "depth", "has_alpha"),
    [
        ("camera.png", 1, 8, False),
        ("chelsea.png", 3, 8, False),
        ("coffee.png", 3, 8, False),
        ("astronaut.png", 3, 8, False),
        ("rocket.jpg", 3, 8, False),
        ("step-edge.png", 1, 8, False),
        ("checkerboard.png", 1, 8, False),
        ("impulse.png", 1, 8, False),
        ("gradient.png", 1, 8, False),
        ("gradient16.png", 1, 16, False),
        ("rgba-hidden.png", 3, 8, True),
    ],
)
def test_samples_read(name, channels, depth, has_alpha):
    image = read_image(SAMPLES / name)
    assert image.channels == channels and image.depth == depth
    assert (image.alpha is not None) == has_alpha
    assert (SAMPLES / name).stat().st_size <= 200_000


def test_synthetic_samples_are_what_make_patterns_makes(tmp_path):
    sys.path.insert(0, str(SAMPLES))
    try:
        import make_patterns
    finally:
        sys.path.remove(str(SAMPLES))
    make_patterns.write_patterns(tmp_path)
    for name in make_patterns.PATTERNS:
        np.testing.assert_array_equal(pillow_array(tmp_path / name), pillow_array(SAMPLES / name))


def test_hidden_colour_under_transparency_is_kept():
    image = read_image(SAMPLES / "rgba-hidden.png")
    np.testing.assert_array_equal(image.alpha[:, 32:], 0)
    np.testing.assert_array_equal(image.pixels[0, 40], [255, 0, 255])


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("level", range(10))
@pytest.mark.parametrize("depth", [8, 16])
def test_png_every_level_decodes_to_the_same_pixels(tmp_path, channels, level, depth):
    # Noise and smooth ramps, so the per-row filters of levels 2+ pick all five kinds.
    rng = np.random.default_rng(channels)
    top = 255 if depth == 8 else 65535
    ramps = np.cumsum(rng.integers(-3, 4, (13, 17, channels)), axis=1) % (top + 1)
    noise = rng.integers(0, top + 1, (13, 17, channels))
    values = np.concatenate([ramps, noise]).astype(np.float32)
    alpha = values[..., -1] if channels in (2, 4) else None
    colour = values[..., : 3 if channels >= 3 else 1]
    path = tmp_path / f"x{level}.png"
    write_image(path, Image(colour, alpha=alpha, depth=depth), compress_level=level)
    image = read_image(path)
    np.testing.assert_array_equal(image.pixels, colour)
    np.testing.assert_array_equal(image.alpha, alpha)
    if depth == 8:  # and the reference decoder agrees
        decoded = np.asarray(PILImage.open(path))
        np.testing.assert_array_equal(decoded.reshape(values.shape), values.astype(np.uint8))


def png_filter_types(data: bytes) -> set[int]:
    """The filter type bytes of a PNG's rows."""
    idat, offset = b"", 8
    (width, height, bits, colour_type) = struct.unpack(">IIBB", data[16:26])
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        if data[offset + 4 : offset + 8] == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[colour_type]
    raw = np.frombuffer(zlib.decompress(idat), np.uint8)
    return set(raw.reshape(height, 1 + width * channels * bits // 8)[:, 0].tolist())


def written_png(image, level: int) -> bytes:
    out = io.BytesIO()
    write_image("-", image, format="png", compress_level=level, stdout=out)
    return out.getvalue()


def test_png_levels_1_2_3_each_do_more():
    photo = read_image(SAMPLES / "astronaut.png")
    drawing = read_image(SAMPLES / "checkerboard.png")
    assert png_filter_types(written_png(photo, 1)) == {2}  # Up on every row
    # ... but an edge map (mostly zeros, sparse detail) is left unfiltered at level 1
    edges = Image(np.abs(np.diff(photo.pixels, axis=1, prepend=0)) * (photo.pixels > 200), depth=8)
    assert png_filter_types(written_png(edges, 1)) == {0}
    with pytest.MonkeyPatch.context() as patch:  # what Up on every row would have written
        patch.setattr(png_module, "_up_or_none_filtered", png_module._up_filtered)
        up_everywhere = written_png(edges, 1)
    assert png_filter_types(up_everywhere) == {2}
    assert len(written_png(edges, 1)) < len(up_everywhere)
    assert len(png_filter_types(written_png(photo, 2))) > 1  # each row its own filter
    sizes = [len(written_png(photo, level)) for level in range(10)]
    assert sizes[3] < sizes[2] < sizes[1]  # on a photograph each level is smaller
    for image in (photo, drawing):
        sizes = [len(written_png(image, level)) for level in range(10)]
        assert sizes[3] < sizes[2]
        assert all(size <= sizes[2] for size in sizes[3:])  # never larger than level 2
    # Level 1's ISA-L matches strings (as do levels 3+), level 2 only run lengths: on a
    # drawing 1 may be smaller than 2; from 2 up string matching pays
    sizes = [len(written_png(drawing, level)) for level in (2, 3, 9)]
    assert sizes == sorted(set(sizes), reverse=True)


def readme_png_sizes() -> dict[str, list[int]]:
    readme = (SAMPLES.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### PNG compression", 1)[1].split("\n### ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0].startswith("`") and cells[0].endswith(".png`") and len(cells) == 11:
            table[cells[0].strip("`")] = [int(c.replace(",", "")) for c in cells[1:]]
    return table


def test_readme_png_sizes_are_what_the_writer_writes():
    table = readme_png_sizes()
    assert set(table) == {path.name for path in SAMPLES.glob("*.png")}
    for name, stated in table.items():
        image = read_image(SAMPLES / name)
        measured = [len(written_png(image, level)) for level in range(10)]
        # exact with this project's zlib; another zlib build may differ by a few bytes
        assert measured == pytest.approx(stated, rel=0.01, abs=8), name


@pytest.mark.parametrize("level", [0, 1, 2, 3, 9])
def test_png_bands_deflated_in_parallel_form_one_valid_stream(tmp_path, monkeypatch, level):
    # Tiny bands force many pieces (and several rounds of the thread pool); the joined
    # stream must inflate to exactly the filtered rows, and Pillow must read the pixels.
    monkeypatch.setattr(png, "_BAND_BYTES", 100)
    values = np.random.default_rng(9).integers(0, 256, (37, 23, 3)).astype(np.float32)
    path = tmp_path / "bands.png"
    write_image(path, Image(values, depth=8), compress_level=level)
    data = path.read_bytes()
    idat, offset = b"", 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        if kind == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    raw = zlib.decompress(idat)  # checks the zlib header and the Adler-32 too
    assert len(raw) == 37 * (1 + 23 * 3)
    np.testing.assert_array_equal(np.asarray(PILImage.open(path)), values.astype(np.uint8))


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux's /proc")
def test_a_zombie_writer_counts_as_gone(tmp_path):
    # A child that exited but was not reaped stays in the process table as a zombie; its
    # temporary file is stale (nothing will finish it), so the next run may remove it.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{child.pid}/stat", "rb") as stat:
            if stat.read().rpartition(b")")[2].split()[0] == b"Z":
                break
        time.sleep(0.01)
    stale = tmp_path / f".out.png.convtool-{child.pid}-abc123.tmp"
    stale.write_bytes(b"partial")
    try:
        assert stale in atomic.stale_temp_files(tmp_path)
    finally:
        child.wait()


@pytest.mark.parametrize("cpus", [1, 2, 3, 8])
@pytest.mark.parametrize(
    "height, row_bytes", [(2160, 3840 * 3), (4000, 6000), (512, 1536), (20000, 60000)]
)
def test_png_bands_share_the_rows_evenly_within_the_memory_bound(cpus, height, row_bytes):
    rows = png_module._band_rows(height, row_bytes, cpus)
    bands = -(-height // rows)
    sizes = [min(rows, height - start) for start in range(0, height, rows)]
    assert rows * row_bytes <= max(png_module._BAND_BYTES, row_bytes)  # memory stays bounded
    # bands of one size (the last may be short by the rounding): bands capped at 8 MiB cut
    # a 4K RGB image into 8+8+8+1 MB, and one of two threads deflated 16 MB, the other 9
    assert bands == 1 or max(sizes) - min(sizes) <= bands

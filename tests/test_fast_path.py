"""The fast path from file to file: channel planes, banded range mapping, the PNG writer.

Each shortcut is checked against the plain computation it replaces: mapping by bands
against :func:`map_range` over the whole image, the banded PNG writer against Pillow's
and libvips' reading of it, the Adler-32 of joined bands against zlib's own.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageFile as PILImageFile

from convtool import images
from convtool.errors import ImageReadError
from convtool.images import Image, jpeg, map_range, png, ranges, read_image, write_image
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
    samples = ranges.Samples(pixels, alpha, source, depth, mode)
    expected = whole_image_reference(pixels, alpha, source, depth, mode)
    np.testing.assert_array_equal(samples.whole(), expected)
    # any band of rows is the same rows of the whole
    np.testing.assert_array_equal(samples.rows(5, 17), expected[5:17])
    # and the whole arrays, apart
    colour, apart = ranges.output_samples(pixels, alpha, source, depth, mode)
    np.testing.assert_array_equal(colour, expected[:, :, :-1])
    np.testing.assert_array_equal(apart, expected[:, :, -1])


def test_rescale_reads_its_span_band_by_band_with_infinities_in_one_band(monkeypatch):
    monkeypatch.setattr(ranges, "_SPAN_ELEMENTS", 31)  # one row per band
    pixels = np.tile(np.arange(31, dtype=np.float32), (8, 1))[:, :, None]
    pixels[3] = np.inf  # a band with nothing finite at all
    pixels[5, 0] = np.nan
    mapped = ranges.Samples(pixels, None, 8, 8, "rescale").whole()
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


# ------------------------------------------------------------------------------ decoders


def pillow_only(monkeypatch) -> None:
    """Make read_image decode everything with Pillow, as before the faster decoders."""
    monkeypatch.setattr(png, "decode", lambda *args: None)
    monkeypatch.setattr(jpeg, "decode", lambda *args: None)


def no_pillow_decoding(monkeypatch) -> None:
    """Make Pillow's pixel decoding fail: only a faster decoder can read the file."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("Pillow decoded the pixels")

    monkeypatch.setattr(PILImageFile.ImageFile, "load", refuse)


def png_variants(folder) -> dict[str, object]:
    """PNGs of every colour type and depth the faster decoders take, written by Pillow."""
    rgb = RNG.integers(0, 256, (19, 27, 3), dtype=np.uint8)
    alpha = RNG.integers(0, 256, (19, 27), dtype=np.uint8)
    wide = RNG.integers(0, 65536, (19, 27), dtype=np.uint16)
    exif = PILImage.Exif()
    exif[0x0112] = 6
    images = {
        "grey.png": (PILImage.fromarray(rgb[:, :, 0]), {}),
        "bits.png": (PILImage.fromarray(rgb[:, :, 0] > 128), {}),
        "rgb.png": (PILImage.fromarray(rgb), {}),
        "rgba.png": (PILImage.fromarray(np.dstack([rgb, alpha])), {}),
        "la.png": (PILImage.fromarray(np.dstack([rgb[:, :, 0], alpha])), {}),
        "palette.png": (PILImage.fromarray(rgb).convert("P"), {}),
        "palette-trns.png": (PILImage.fromarray(rgb).convert("P"), {"transparency": 3}),
        "rgb-trns.png": (PILImage.fromarray(rgb), {"transparency": (1, 2, 3)}),
        "grey16.png": (PILImage.fromarray(wide), {}),
        "turned.png": (PILImage.fromarray(rgb), {"exif": exif}),
    }
    for name, (image, options) in images.items():
        image.save(folder / name, **options)
    # 16-bit colour (Pillow cannot write it): convtool's own writer
    for name, channels in (("rgb16.png", 3), ("rgba16.png", 4)):
        values = RNG.integers(0, 65536, (19, 27, channels)).astype(np.float32)
        alpha16 = values[:, :, 3] if channels == 4 else None
        write_image(folder / name, Image(values[:, :, :3], alpha=alpha16, depth=16))
    return images


def jpeg_variants(folder) -> list[str]:
    rgb = RNG.integers(0, 256, (21, 33, 3), dtype=np.uint8)
    exif = PILImage.Exif()
    exif[0x0112] = 8
    saves = {
        "420.jpg": {"subsampling": 2},
        "444.jpg": {"subsampling": 0, "quality": 95},
        "progressive.jpg": {"progressive": True},
        "turned.jpg": {"exif": exif},
    }
    for name, options in saves.items():
        PILImage.fromarray(rgb).save(folder / name, **options)
    PILImage.fromarray(rgb[:, :, 0]).save(folder / "grey.jpg")
    return [*saves, "grey.jpg"]


def as_read(path, monkeypatch, faster: bool):
    with monkeypatch.context() as patch:
        if faster:
            no_pillow_decoding(patch)
        else:
            pillow_only(patch)
        image = read_image(path)
    return image


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_faster_decoders_read_what_pillow_reads(tmp_path, monkeypatch, kind):
    names = png_variants(tmp_path) if kind == "png" else jpeg_variants(tmp_path)
    names = [*names, "rgb16.png", "rgba16.png"] if kind == "png" else names
    for name in names:
        fast = as_read(tmp_path / name, monkeypatch, faster=True)
        plain = as_read(tmp_path / name, monkeypatch, faster=False)
        assert fast.pixels.shape == plain.pixels.shape, name
        np.testing.assert_array_equal(fast.pixels, plain.pixels, err_msg=name)
        assert (fast.alpha is None) == (plain.alpha is None), name
        if plain.alpha is not None:
            np.testing.assert_array_equal(fast.alpha, plain.alpha, err_msg=name)
        assert (fast.depth, fast.format) == (plain.depth, plain.format), name


def test_orientation_is_applied_by_the_faster_decoders(tmp_path, monkeypatch):
    png_variants(tmp_path)
    turned = as_read(tmp_path / "turned.png", monkeypatch, faster=True)
    plain = read_image(tmp_path / "rgb.png")
    np.testing.assert_array_equal(turned.pixels, np.rot90(plain.pixels, -1))  # tag 6


def test_pillow_decodes_what_the_faster_decoders_leave(tmp_path, monkeypatch):
    rgb = RNG.integers(0, 256, (9, 8, 3), dtype=np.uint8)
    PILImage.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    left = ["cmyk.jpg", "rgb.png"]
    if shutil.which("vips"):  # grey+alpha, interlaced: libpng would warn on stderr
        PILImage.fromarray(np.dstack([rgb[:, :, 0], rgb[:, :, 1]])).save(tmp_path / "la.png")
        subprocess.run(
            ["vips", "copy", str(tmp_path / "la.png"), f"{tmp_path / 'interlaced.png'}[interlace]"],
            check=True,
        )
        left.append("interlaced.png")
    # XMP may hold an orientation (Pillow reads it)
    PILImage.fromarray(rgb).save(tmp_path / "rgb.png", pnginfo=_xmp_text())
    for name in left:
        with monkeypatch.context() as patch:
            no_pillow_decoding(patch)
            with pytest.raises(ImageReadError, match="Pillow decoded the pixels"):
                read_image(tmp_path / name)
        read_image(tmp_path / name)  # and Pillow does read it


def _xmp_text():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta tiff:Orientation="3"/>')
    return info


@pytest.mark.parametrize("cut", [0.5, 0.9])
@pytest.mark.parametrize("name", ["rgb.png", "420.jpg"])
def test_damaged_files_are_reported_as_pillow_reports_them(tmp_path, name, cut):
    png_variants(tmp_path)
    jpeg_variants(tmp_path)
    data = (tmp_path / name).read_bytes()
    damaged = tmp_path / f"cut-{name}"
    damaged.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_image(damaged)


def test_libpng_warnings_stay_off_stderr(tmp_path):
    # A grey+alpha PNG (decoded by libpng) with a broken iCCP chunk, which libpng warns
    # about from C; the pixels still decode, and stderr must stay empty.
    pixels = RNG.integers(0, 256, (5, 6, 2), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, "PNG")
    data = buffer.getvalue()
    body = b"junk\0\0" + zlib.compress(b"not a profile")
    iccp = len(body).to_bytes(4, "big") + b"iCCP" + body
    iccp += (zlib.crc32(b"iCCP" + body) & 0xFFFFFFFF).to_bytes(4, "big")
    path = tmp_path / "bad-iccp.png"
    path.write_bytes(data[:33] + iccp + data[33:])
    code = (
        "import sys; from convtool.images import read_image; "
        f"image = read_image({str(path)!r}); print(image.alpha.shape)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "(5, 6)"
    assert done.stderr == ""


# ------------------------------------------------------------------------------- batches


def test_batch_workers_keep_freed_memory_and_write_the_same_files(tmp_path):
    # keep_freed_memory only changes where malloc finds memory: a batch run after it
    # (workers call it too) writes the files a plain run writes.
    from convtool import batch
    from convtool.batch import heap

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(3):
        pixels = RNG.integers(0, 256, (40, 30, 3), dtype=np.uint8)
        PILImage.fromarray(pixels).save(folder / f"{index}.png")
    plain = subprocess.run(
        [sys.executable, "-m", "convtool", "filter", str(folder), "-o", str(tmp_path / "a"),
         "-k", "binomial:3", "-j", "2", "-q"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    batch.keep_freed_memory()
    batch.keep_freed_memory()  # once per process: a second call does nothing
    assert heap._done
    for index in range(3):
        image = read_image(folder / f"{index}.png")
        out, _ = Chain(parse_steps(["binomial:3"])).apply(image.pixels)
        write_image(tmp_path / f"{index}.png", Image(out, depth=8))
        np.testing.assert_array_equal(
            pillow_array((tmp_path / f"{index}.png").read_bytes()),
            pillow_array((tmp_path / "a" / f"{index}.png").read_bytes()),
        )


def test_without_the_faster_libraries_the_same_files_are_read_and_written(tmp_path, monkeypatch):
    # imagecodecs, simplejpeg and isal are dependencies, but convtool must not need them:
    # without them Pillow decodes and zlib deflates, to the same pixels.
    png_variants(tmp_path)
    jpeg_variants(tmp_path)
    names = ["rgb.png", "rgba16.png", "grey16.png", "420.jpg"]
    fast = {name: read_image(tmp_path / name) for name in names}
    smooth = Image(np.repeat(np.add.outer(np.arange(48.0), np.arange(64.0))[:, :, None], 3, 2))
    write_image(tmp_path / "fast.png", smooth)
    monkeypatch.setattr(png, "_imagecodecs", lambda: None)
    monkeypatch.setattr(png, "_isal", lambda: None)
    monkeypatch.setattr(jpeg, "_simplejpeg", lambda: None)
    for name in names:
        np.testing.assert_array_equal(read_image(tmp_path / name).pixels, fast[name].pixels)
    write_image(tmp_path / "plain.png", smooth)
    assert (tmp_path / "plain.png").read_bytes() != (tmp_path / "fast.png").read_bytes()  # zlib
    np.testing.assert_array_equal(
        pillow_array((tmp_path / "plain.png").read_bytes()),
        pillow_array((tmp_path / "fast.png").read_bytes()),
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_npy_written_band_by_band_is_what_np_save_writes(tmp_path, monkeypatch, channels):
    from convtool.images import encoders

    monkeypatch.setattr(encoders, "_NPY_BAND_BYTES", 100)  # a row or so per band
    pixels = results(channels)
    path = tmp_path / "out.npy"
    write_image(path, Image(pixels, depth="float"))
    buffer = io.BytesIO()
    np.save(buffer, pixels[:, :, 0] if channels == 1 else pixels, allow_pickle=False)
    assert path.read_bytes() == buffer.getvalue()


# ------------------------------------------------------------------------ integer route


def _one_job(tmp_path, name: str, spec: str, **write):
    from convtool import batch

    chain = Chain(parse_steps([spec]))
    settings = batch.Settings(
        chain=chain, read=batch.ReadOptions(), write=batch.WriteOptions(**write)
    )
    dest = tmp_path / f"out-{spec.split(':')[0]}-{name}"
    batch.process(batch.Job(str(tmp_path / name), str(dest)), settings)
    return dest.read_bytes(), settings


@pytest.mark.parametrize("spec", ["binomial:5", "sobel-x", "laplacian"])
@pytest.mark.parametrize("name", ["rgb.png", "rgba.png", "grey.png", "turned.png", "420.jpg"])
def test_8bit_files_through_the_integer_kernels_are_the_float_paths_bytes(
    tmp_path, monkeypatch, spec, name
):
    from convtool.batch import worker

    png_variants(tmp_path)
    jpeg_variants(tmp_path)
    fast, settings = _one_job(tmp_path, name, spec)
    assert worker.integer_route(settings, "png")
    with monkeypatch.context() as patch:  # the integer route must have been taken
        patch.setattr(Chain, "apply_to", lambda *a, **k: pytest.fail("float path taken"))
        assert _one_job(tmp_path, name, spec)[0] == fast
    monkeypatch.setattr(worker, "uint8_route", lambda settings, fmt: None)
    plain, _ = _one_job(tmp_path, name, spec)
    assert plain == fast


@pytest.mark.parametrize(
    "spec",
    ["gaussian:sigma=1.5", "box:3", "gaussian:sigma=5,size=31", "unsharp:sigma=2,amount=1.5"],
)
@pytest.mark.parametrize("name", ["rgb.png", "rgba.png", "grey.png", "turned.png", "420.jpg"])
def test_8bit_files_with_float_kernels_skip_the_float_image_to_the_same_bytes(
    tmp_path, monkeypatch, spec, name
):
    # Gaussians and ninths are not small integers: the samples are filtered in float32 as
    # the float path does, rounded band by band, with no float image and no mapping pass.
    from convtool.batch import worker

    png_variants(tmp_path)
    jpeg_variants(tmp_path)
    fast, settings = _one_job(tmp_path, name, spec)
    assert worker.uint8_route(settings, "png") == "float32"
    with monkeypatch.context() as patch:
        patch.setattr(Chain, "apply_to", lambda *a, **k: pytest.fail("float path taken"))
        assert _one_job(tmp_path, name, spec)[0] == fast
    monkeypatch.setattr(worker, "uint8_route", lambda settings, fmt: None)
    plain, _ = _one_job(tmp_path, name, spec)
    assert plain == fast


@pytest.mark.parametrize(
    ("spec", "write"),
    [
        ("gaussian:sigma=1", {}),  # not small integers over a power of two
        ("box:3", {}),  # ninths: float32 rounds them
        ("binomial:3", {"range_mode": "abs"}),
        ("binomial:3", {"depth": 16}),
        ("binomial:3", {"format": "npy"}),
    ],
)
def test_the_integer_route_is_not_taken_where_it_would_change_bytes(spec, write):
    from convtool import batch
    from convtool.batch import worker

    chain = Chain(parse_steps([spec]))
    settings = batch.Settings(
        chain=chain, read=batch.ReadOptions(), write=batch.WriteOptions(**write)
    )
    assert not worker.integer_route(settings, write.get("format", "png"))


def test_float_image_is_what_a_plain_read_gives(tmp_path):
    png_variants(tmp_path)
    for name in ("rgba.png", "turned.png", "grey.png"):
        kept = read_image(tmp_path / name, keep_8bit=True)
        assert kept.pixels.dtype == np.uint8
        plain = read_image(tmp_path / name)
        converted = images.float_image(kept)
        np.testing.assert_array_equal(converted.pixels, plain.pixels)
        assert converted.pixels.dtype == plain.pixels.dtype
        if plain.alpha is not None:
            np.testing.assert_array_equal(converted.alpha, plain.alpha)
    assert read_image(tmp_path / "grey16.png", keep_8bit=True).pixels.dtype == np.float32

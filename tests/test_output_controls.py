"""Output controls (quality, subsampling, progressive, TIFF compression), alpha composited
where a format has none, and the CLI's habits: completion, heat maps, a progress bar.

JPEG options are checked in the file's own markers (SOF0/SOF2 and the sampling factors
of its components), TIFF compression in the file's Compression tag as tifffile reads it.
"""

from __future__ import annotations

import io
import struct
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from convtool.cli import app, options, terminal
from convtool.errors import UsageError
from convtool.images import Image as ConvImage
from convtool.images import encoders, read_image, write_image
from convtool.images.frames import FRAME_CHOICES
from convtool.pipeline import Chain, parse_steps

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def photo_like(height: int = 64, width: int = 80) -> np.ndarray:
    """Smooth colour gradients with a little noise: a JPEG's usual diet."""
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 3, y * 3, (x + y) * 1.5], axis=2)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def jpeg_frame(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """The start-of-frame marker (0xC0 baseline, 0xC2 progressive) and each component's
    (horizontal, vertical) sampling factors."""
    position = 2
    while position < len(data):
        marker, length = (
            data[position + 1],
            struct.unpack(">H", data[position + 2 : position + 4])[0],
        )
        if marker in (0xC0, 0xC1, 0xC2):
            count = data[position + 9]
            factors = [data[position + 11 + 3 * i] for i in range(count)]
            return marker, [(f >> 4, f & 15) for f in factors]
        position += 2 + length
    raise AssertionError("no start-of-frame marker")


@pytest.fixture
def photo_png(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(photo_like()).save(path)
    return path


# ------------------------------------------------------------------------------- JPEG


def test_quality_changes_the_size_monotonically(tmp_path, photo_png):
    sizes = []
    for quality in (10, 40, 70, 95):
        out = tmp_path / f"q{quality}.jpg"
        assert (
            invoke("filter", photo_png, "-k", "identity", "--quality", quality, "-o", out).exit_code
            == 0
        )
        sizes.append(out.stat().st_size)
    assert sizes == sorted(sizes) and len(set(sizes)) == 4


def test_default_quality_is_92(tmp_path, photo_png):
    out = tmp_path / "default.jpg"
    assert invoke("filter", photo_png, "-k", "identity", "-o", out).exit_code == 0
    reference = io.BytesIO()
    Image.fromarray(photo_like()).save(reference, "JPEG", quality=92, subsampling="4:4:4")
    assert out.read_bytes() == reference.getvalue()


@pytest.mark.parametrize(
    ("subsampling", "luma"), [("4:4:4", (1, 1)), ("4:2:2", (2, 1)), ("4:2:0", (2, 2))]
)
def test_subsampling_is_in_the_jpeg_markers(tmp_path, photo_png, subsampling, luma):
    out = tmp_path / "s.jpg"
    args = ("filter", photo_png, "-k", "identity", "--subsampling", subsampling, "-o", out)
    assert invoke(*args).exit_code == 0
    marker, factors = jpeg_frame(out.read_bytes())
    assert marker == 0xC0 and factors == [luma, (1, 1), (1, 1)]


def test_progressive_is_in_the_jpeg_markers(tmp_path, photo_png):
    out = tmp_path / "p.jpg"
    assert invoke("filter", photo_png, "-k", "identity", "--progressive", "-o", out).exit_code == 0
    assert jpeg_frame(out.read_bytes())[0] == 0xC2


# ------------------------------------------------------------------------------- WebP


def test_a_webp_quality_switches_to_lossy(tmp_path, photo_png):
    lossless, lossy = tmp_path / "exact.webp", tmp_path / "lossy.webp"
    assert invoke("filter", photo_png, "-k", "identity", "-o", lossless).exit_code == 0
    assert (
        invoke("filter", photo_png, "-k", "identity", "--quality", 50, "-o", lossy).exit_code == 0
    )
    np.testing.assert_array_equal(np.asarray(Image.open(lossless)), photo_like())
    assert not np.array_equal(np.asarray(Image.open(lossy)), photo_like())
    assert lossy.stat().st_size < lossless.stat().st_size


# ------------------------------------------------------------------------------- alpha


def half_transparent(tmp_path):
    colour = np.zeros((4, 6, 3), np.uint8)
    colour[..., 0] = 200  # red, hidden or shown by alpha
    alpha = np.full((4, 6), 128, np.uint8)
    alpha[:, :2] = 0
    alpha[:, 4:] = 255
    path = tmp_path / "half.png"
    Image.fromarray(np.dstack([colour, alpha])).save(path)
    return path, colour.astype(float), alpha.astype(float) / 255


@pytest.mark.parametrize(
    ("given", "background"),
    [
        (None, (255, 255, 255)),
        ("black", (0, 0, 0)),
        ("#00ff00", (0, 255, 0)),
        ("0,0,255", (0, 0, 255)),
    ],
)
def test_alpha_into_jpeg_is_composited_over_the_background(tmp_path, given, background):
    src, colour, cover = half_transparent(tmp_path)
    out = tmp_path / "out.bmp"  # lossless, so the composite can be checked exactly
    extra = ["--background", given] if given else []
    result = invoke("filter", src, "-k", "identity", *extra, "-o", out)
    assert result.exit_code == 0
    expected = np.rint(colour * cover[..., None] + np.array(background) * (1 - cover[..., None]))
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    warned = "composited over white (--background COLOR picks another)" in result.stderr
    assert warned == (given is None)
    jpeg = tmp_path / "out.jpg"
    assert invoke("filter", src, "-k", "identity", *extra, "-o", jpeg).exit_code == 0
    seen = np.asarray(Image.open(jpeg)).astype(float)
    assert np.abs(seen - expected).max() <= 8  # JPEG at quality 92, 4:4:4, sharp edges


def test_a_bad_background_is_a_usage_error(tmp_path):
    src, _, _ = half_transparent(tmp_path)
    result = invoke(
        "filter", src, "-k", "identity", "--background", "ultraviolet", "-o", tmp_path / "o.jpg"
    )
    assert result.exit_code == 2 and "--background" in result.stderr


# ------------------------------------------------------------------------------- TIFF


TIFF_CODES = {"none": 1, "deflate": 8, "lzw": 5, "zstd": 50000, "jpeg": 7, "packbits": 32773}


@pytest.mark.parametrize("compression", list(TIFF_CODES))
@pytest.mark.parametrize("codecs", ["tifffile", "pillow"])
def test_tiff_compression_is_the_one_asked_for(
    tmp_path, photo_png, monkeypatch, compression, codecs
):
    tifffile = pytest.importorskip("tifffile")
    if codecs == "tifffile":
        pytest.importorskip("imagecodecs")
    else:  # as without imagecodecs: Pillow's libtiff writes the codecs tifffile lacks
        monkeypatch.setattr(encoders, "_has_imagecodecs", lambda: False)
    out = tmp_path / "out.tif"
    args = ("filter", photo_png, "-k", "identity", "--compression", compression, "-o", out)
    assert invoke(*args).exit_code == 0
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].compression == TIFF_CODES[compression]
    written = read_image(out).pixels
    if compression == "jpeg":
        assert np.abs(written - photo_like()).mean() < 8  # lossy, on a noisy picture
    else:
        np.testing.assert_array_equal(written, photo_like())


def test_tiff_jpeg_compression_takes_the_quality(tmp_path, photo_png):
    sizes = []
    for quality in (20, 90):
        out = tmp_path / f"q{quality}.tif"
        args = ("--compression", "jpeg", "--quality", quality, "-o", out)
        assert invoke("filter", photo_png, "-k", "identity", *args).exit_code == 0
        sizes.append(out.stat().st_size)
    assert sizes[0] < sizes[1]


def test_16bit_colour_without_imagecodecs_names_it(tmp_path, monkeypatch):
    monkeypatch.setattr(encoders, "_has_imagecodecs", lambda: False)
    image = ConvImage(np.zeros((4, 4, 3)), depth=16)
    with pytest.raises(Exception, match="needs the 'imagecodecs' package"):
        write_image(tmp_path / "x.tif", image, compression="lzw")


def test_bigtiff_past_four_gigabytes(tmp_path, monkeypatch):
    monkeypatch.setattr(encoders, "BIGTIFF_BYTES", 100)  # a small stand-in for 4 GB
    write_image(tmp_path / "big.tif", ConvImage(np.zeros((8, 8, 3)), depth=8))
    write_image(tmp_path / "small.tif", ConvImage(np.zeros((4, 4)), depth=8))
    assert (tmp_path / "big.tif").read_bytes()[:4] == b"II+\x00"  # BigTIFF's magic
    assert (tmp_path / "small.tif").read_bytes()[:4] == b"II*\x00"
    np.testing.assert_array_equal(read_image(tmp_path / "big.tif").pixels, 0)


# ------------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["--quality", "50", "-o", "x.png"],
            "--quality applies to JPEG, WebP and TIFF output, not PNG",
        ),
        (
            ["--quality", "50", "-o", "x.tif"],
            "--quality applies to TIFF output only with --compression jpeg",
        ),
        (
            ["--subsampling", "4:2:0", "-o", "x.webp"],
            "--subsampling applies to JPEG output, not WebP",
        ),
        (["--progressive", "-o", "x.png"], "--progressive applies to JPEG output, not PNG"),
        (["--compression", "lzw", "-o", "x.jpg"], "--compression applies to TIFF output, not JPEG"),
        (["--quality", "0", "-o", "x.jpg"], "--quality"),
        (["--frames", "some", "-o", "x.png"], "--frames"),
    ],
)
def test_output_controls_for_another_format_are_usage_errors(tmp_path, photo_png, args, needle):
    args = [tmp_path / a if a.startswith("x.") else a for a in args]
    result = invoke("filter", photo_png, "-k", "identity", *args)
    assert result.exit_code == 2 and needle in result.stderr
    assert not any(p.name.startswith("x.") for p in tmp_path.iterdir())


def test_a_batch_applies_controls_to_the_formats_they_concern(tmp_path, photo_png):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo_like()).save(folder / "a.jpg")
    Image.fromarray(photo_like()).save(folder / "b.png")
    result = invoke(
        "filter", folder, "-k", "identity", "--quality", 30, "-o", tmp_path / "out", "-j", 1
    )
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "b.png").exists() and (tmp_path / "out" / "a.jpg").exists()


def test_write_image_refuses_a_control_for_another_format(tmp_path):
    with pytest.raises(UsageError, match="--subsampling applies to JPEG"):
        write_image(tmp_path / "x.png", ConvImage(np.zeros((2, 2))), subsampling="4:2:0")


def test_the_cli_choices_are_the_librarys():
    assert tuple(c.value for c in options.Frames) == FRAME_CHOICES
    assert tuple(c.value for c in options.Subsampling) == encoders.SUBSAMPLINGS
    assert tuple(c.value for c in options.Compression) == encoders.COMPRESSIONS


# ------------------------------------------------------------------------------- habits


def test_kernel_and_padding_names_complete():
    assert {"gaussian", "grad:sobel", "maxpool:2"} <= set(options.complete_kernel(""))
    assert options.complete_kernel("sob") == ["sobel-diag1", "sobel-diag2", "sobel-x", "sobel-y"]
    assert options.complete_padding("re") == ["reflect", "reflect-101", "reflect101", "replicate"]


def test_completion_is_wired_to_the_options():
    import typer.main

    command = typer.main.get_command(app).commands["filter"]
    params = {p.name: p for p in command.params}
    for name, function in (
        ("kernel", options.complete_kernel),
        ("padding", options.complete_padding),
    ):
        completions = params[name].shell_complete(None, "gau" if name == "kernel" else "wr")
        assert [c.value for c in completions] == function("gau" if name == "kernel" else "wr")


def test_kernels_show_writes_a_heat_map(tmp_path):
    out = tmp_path / "heat.png"
    result = invoke("kernels", "show", "sobel-x", "--image", out)
    assert result.exit_code == 0 and "sobel-x" in result.stdout
    picture = np.asarray(Image.open(out)).astype(int)
    red = (picture[..., 0] > 150) & (picture[..., 2] < 60)
    blue = (picture[..., 2] > 150) & (picture[..., 0] < 60)
    columns = np.nonzero(red.any(axis=0))[0], np.nonzero(blue.any(axis=0))[0]
    # sobel-x = [[1 0 -1] [2 0 -2] [1 0 -1]]: positive weights on the left, negative right
    assert columns[0].size and columns[1].size and columns[0].max() < columns[1].min()


def test_the_chain_reports_progress_up_to_its_total():
    calls = []
    chain = Chain(steps=parse_steps(["box:3", "gaussian:sigma=1"]), iterations=3)
    picture = np.zeros((512, 512, 3), np.float32)  # several bands of rows a step
    chain.apply(picture, progress=lambda done, total: calls.append((done, total)))
    totals = {total for _, total in calls}
    done = [d for d, _ in calls]
    assert totals == {6} and done == sorted(done) and done[-1] == 6
    assert any(d != int(d) for d in done)  # fractions as the engine's bands finish


def test_the_image_bar_is_drawn_only_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with terminal.image_progress(quiet=False) as progress:
        assert progress is None  # pytest's stderr is not a terminal
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    monkeypatch.setattr(terminal, "IMAGE_BAR_AFTER", 0.0)
    with terminal.image_progress(quiet=True) as progress:
        assert progress is None
    with terminal.image_progress(quiet=False) as progress:
        for step in range(1, 5):
            progress(step, 4)
    assert "filtering" in screen.getvalue()

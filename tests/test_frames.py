"""Every frame of an animation and every page of a TIFF is filtered and kept.

The reference for each frame is the chain applied to that frame alone, as Pillow reads
it (composited, as a viewer shows it); outputs are read back by Pillow frame by frame.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from convtool.cli import app
from convtool.errors import ResourceLimitError, UsageError
from convtool.images import Frame, Timing, read_image, write_image
from convtool.images import Image as ConvImage
from convtool.pipeline import Chain, memory, parse_steps

runner = CliRunner()
HEIGHT, WIDTH = 18, 22
DURATIONS = [100, 200, 300]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def grey_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8) for _ in DURATIONS]


def colour_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(12)
    return [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in DURATIONS]


def pillow_frames(path, mode: str = "RGB") -> tuple[list[np.ndarray], list, dict]:
    """Frames as Pillow shows them (in *mode*), each frame's duration, the first's info."""
    pictures, durations = [], []
    with Image.open(path) as im:
        info = dict(im.info)
        for index in range(getattr(im, "n_frames", 1)):
            im.seek(index)
            im.load()
            pictures.append(np.asarray(im.convert(mode)))
            durations.append(im.info.get("duration"))
    return pictures, durations, info


def filtered_alone(picture: np.ndarray, spec: str) -> np.ndarray:
    """The chain applied to one frame on its own, rounded as an 8-bit file holds it."""
    pixels = picture.astype(np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    out, _ = Chain(steps=parse_steps([spec])).apply(pixels)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out[:, :, 0] if picture.ndim == 2 else out


@pytest.fixture
def gif(tmp_path):
    path = tmp_path / "anim.gif"
    first, *rest = (Image.fromarray(f) for f in grey_frames())
    first.save(
        path, save_all=True, append_images=rest, duration=DURATIONS, loop=0, disposal=[1, 2, 1]
    )
    return path


@pytest.fixture
def webp(tmp_path):
    path = tmp_path / "anim.webp"
    first, *rest = (Image.fromarray(f) for f in colour_frames())
    first.save(path, save_all=True, append_images=rest, duration=DURATIONS, loop=3, lossless=True)
    return path


@pytest.fixture
def pages(tmp_path):
    path = tmp_path / "pages.tif"
    first, *rest = (Image.fromarray(f) for f in colour_frames())
    first.save(path, save_all=True, append_images=rest)
    return path


@pytest.mark.parametrize("suffix", [".gif", ".apng", ".webp", ".tif"])
def test_every_gif_frame_is_filtered_like_the_frame_alone(tmp_path, gif, suffix):
    out = tmp_path / f"out{suffix}"
    result = invoke("filter", gif, "-k", "box:3", "-o", out)
    assert result.exit_code == 0, result.stderr
    # grey frames (GIF reads back as RGB, WebP has no grey: R = G = B, so "L" is exact)
    frames_in, _, _ = pillow_frames(gif, "L")
    frames_out, durations, info = pillow_frames(out, "L")
    assert len(frames_out) == len(DURATIONS)
    for picture, written in zip(frames_in, frames_out, strict=True):
        np.testing.assert_array_equal(written, filtered_alone(picture, "box:3"))
    if suffix == ".tif":  # pages, without timing: said so
        assert "TIFF cannot hold the input's frame timing (durations, loop)" in result.stderr
    else:
        assert durations == DURATIONS and info.get("loop") == 0
        assert result.stderr == ""


def test_gif_disposal_and_loop_are_kept(tmp_path, gif):
    out = tmp_path / "out.gif"
    assert invoke("filter", gif, "-k", "box:3", "-o", out).exit_code == 0
    disposals = []
    with Image.open(out) as im:
        for index in range(im.n_frames):
            im.seek(index)
            disposals.append(im.disposal_method)
        assert im.info["loop"] == 0
    assert disposals == [1, 2, 1]


def test_animated_webp_frames_durations_and_loop(tmp_path, webp):
    out = tmp_path / "out.webp"
    assert invoke("filter", webp, "-k", "gaussian:sigma=1", "-o", out).exit_code == 0
    frames_in, _, _ = pillow_frames(webp)
    frames_out, durations, info = pillow_frames(out)
    assert durations == DURATIONS and info["loop"] == 3
    for picture, written in zip(frames_in, frames_out, strict=True):
        np.testing.assert_array_equal(written, filtered_alone(picture, "gaussian:sigma=1"))


def test_multi_page_tiff_keeps_every_page(tmp_path, pages):
    out = tmp_path / "out.tif"
    assert invoke("filter", pages, "-k", "sobel-x", "--range", "abs", "-o", out).exit_code == 0
    frames_in, _, _ = pillow_frames(pages)
    frames_out, _, _ = pillow_frames(out)
    assert len(frames_out) == 3
    for picture, written in zip(frames_in, frames_out, strict=True):
        pixels = picture.astype(np.float32)
        expected, _ = Chain(steps=parse_steps(["sobel-x"])).apply(pixels)
        np.testing.assert_array_equal(written, np.clip(np.rint(np.abs(expected)), 0, 255))


def test_frames_first_writes_the_first_frame_only(tmp_path, gif):
    out = tmp_path / "first.png"
    assert invoke("filter", gif, "-k", "box:3", "--frames", "first", "-o", out).exit_code == 0
    frames_in, _, _ = pillow_frames(gif, "L")
    frames_out, _, _ = pillow_frames(out, "L")
    assert len(frames_out) == 1
    np.testing.assert_array_equal(frames_out[0], filtered_alone(frames_in[0], "box:3"))


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp", ".ppm", ".npy"])
def test_several_frames_into_a_single_frame_format_is_a_usage_error(tmp_path, gif, suffix):
    out = tmp_path / f"out{suffix}"
    result = invoke("filter", gif, "-k", "box:3", "-o", out)
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "anim.gif" in line and "3 frames" in line and "--frames first" in line
    assert len(line.splitlines()) == 1 and not out.exists()


def test_apng_is_chosen_by_format_for_a_png_name(tmp_path, gif):
    out = tmp_path / "anim.png"
    assert invoke("filter", gif, "-k", "box:3", "--format", "apng", "-o", out).exit_code == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.n_frames == 3


def test_frames_are_read_alike():
    """A grey frame among colour ones becomes RGB; a frame without alpha gets opaque alpha."""
    buffer = __import__("io").BytesIO()
    grey = Image.fromarray(np.full((4, 4), 50, np.uint8))
    rgba = Image.fromarray(np.full((4, 4, 4), 200, np.uint8))
    grey.save(buffer, "PNG", save_all=True, append_images=[rgba], duration=[10, 20])
    image = read_image("-", stdin=__import__("io").BytesIO(buffer.getvalue()))
    assert image.frame_count == 2 and image.channels == 3
    np.testing.assert_array_equal(image.alpha, 255)
    np.testing.assert_array_equal(image.frames[0].alpha, 200)
    assert image.timing.durations == (10.0, 20.0)


def test_gif_transparency_is_kept_as_a_transparent_index(tmp_path):
    values = np.random.default_rng(3).integers(0, 256, (6, 8, 3)).astype(np.float32)
    alpha = np.zeros((6, 8), np.float32)
    alpha[:, 4:] = 255
    notes = write_image(tmp_path / "t.gif", ConvImage(values, alpha, depth=8))
    assert notes == []
    with Image.open(tmp_path / "t.gif") as im:
        shown = np.asarray(im.convert("RGBA"))
    np.testing.assert_array_equal(shown[:, :, 3], alpha)


def test_rescale_spans_all_frames(tmp_path):
    dark, bright = np.full((4, 4), 10.0), np.full((4, 4), 20.0)
    image = ConvImage(dark, depth=8, frames=[Frame(bright)], timing=Timing((50, 50), ("none",) * 2))
    write_image(tmp_path / "r.apng", image, range_mode="rescale")
    frames, _, _ = pillow_frames(tmp_path / "r.apng", "L")
    assert [int(f.max()) for f in frames] == [0, 255]  # one mapping: no flicker


def test_frames_of_another_size_cannot_share_a_gif_canvas(tmp_path):
    image = ConvImage(np.zeros((4, 4)), depth=8, frames=[Frame(np.zeros((5, 4)))])
    with pytest.raises(UsageError, match="frames differ in size"):
        write_image(tmp_path / "x.gif", image)
    write_image(tmp_path / "x.tif", image)  # TIFF pages may differ
    assert [p.shape for p in pillow_frames(tmp_path / "x.tif", "L")[0]] == [(4, 4), (5, 4)]


def test_memory_estimate_counts_every_frame(gif):
    chain = Chain(steps=parse_steps(["box:3"]))
    every = read_image(gif)
    first = read_image(gif, frames="first")
    assert memory.check_memory(chain, every, available=None) > memory.check_memory(
        chain, first, available=None
    )
    need = memory.check_memory(chain, first, available=1 << 40)
    with pytest.raises(ResourceLimitError, match="3 frames.*--frames first"):
        memory.check_memory(chain, every, available=need + memory.HEADROOM + 1)


def test_max_pixels_counts_every_frame(gif):
    limit = HEIGHT * WIDTH * 2  # two frames' worth
    read_image(gif, frames="first", max_pixels=limit)
    with pytest.raises(ResourceLimitError, match="3 frames of 22×18.*--frames first"):
        read_image(gif, max_pixels=limit)


@pytest.mark.skipif(shutil.which("vipsheader") is None, reason="libvips is not installed")
def test_libvips_sees_every_page_and_frame(tmp_path, gif):
    for suffix in (".gif", ".tif", ".webp"):
        out = tmp_path / f"out{suffix}"
        assert invoke("filter", gif, "-k", "box:3", "-o", out).exit_code == 0
        done = subprocess.run(
            ["vipsheader", "-f", "n-pages", str(out)], capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == "3", suffix


def test_pages_pillow_cannot_open_are_all_read_but_previews(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "float.tif"  # float colour: read by tifffile
    with tifffile.TiffWriter(path) as tif:
        for value in (1.5, 2.5):
            tif.write(np.full((3, 4, 3), value, np.float32), photometric="rgb")
        tif.write(np.zeros((2, 2, 3), np.float32), photometric="rgb", subfiletype=1)  # preview
    image = read_image(path)
    assert image.frame_count == 2 and image.depth == "float"
    np.testing.assert_array_equal(image.frames[0].pixels, 2.5)


def test_a_phones_mpo_jpeg_is_one_picture(tmp_path):
    """MPO keeps a second JPEG (a preview or depth map): not a frame of the photo."""
    path = tmp_path / "phone.jpg"
    first, second = (Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 255))
    first.save(path, "MPO", save_all=True, append_images=[second])
    assert read_image(path).frame_count == 1
    assert invoke("filter", path, "-k", "box:3", "-o", tmp_path / "out.jpg").exit_code == 0


def test_progress_counts_every_frame(tmp_path, gif):
    from convtool import batch

    calls = []
    settings = batch.Settings(chain=Chain(steps=parse_steps(["box:3", "box:5"])))
    job = batch.Job(str(gif), str(tmp_path / "out.gif"))
    batch.process(job, settings, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (6, 6)  # 3 frames × 2 steps

"""What a new user trips over, each made plain: refused with one line, or said on stderr.

Through Typer's CliRunner, and through real processes on a pseudo-terminal where the point
is what happens on a terminal (``-o -``, ``filter -``, the batch progress bar).
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from convtool.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
ENV = os.environ | {"PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "100"}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("convtool: error: ")
    return lines[0]


def save_png(path: Path, shape=(12, 14), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(values).save(path)
    return path


@pytest.fixture
def photos(tmp_path) -> Path:
    save_png(tmp_path / "photos" / "a.png", seed=1)
    save_png(tmp_path / "photos" / "b.png", seed=2)
    return tmp_path / "photos"


def on_terminal(args, *, stdin_tty=False, stdout_tty=False, stderr_tty=False, cwd=None):
    """Run convtool with the chosen streams on one pseudo-terminal; (code, terminal, pipes).

    ``terminal`` is everything written to the pseudo-terminal; ``pipes`` is what went to
    the streams that are pipes, stderr's (or stdout's, when stderr is the terminal).
    """
    controller, device = pty.openpty()
    piped = subprocess.PIPE
    process = subprocess.Popen(
        [sys.executable, "-m", "convtool", *map(str, args)],
        stdin=device if stdin_tty else subprocess.DEVNULL,
        stdout=device if stdout_tty else piped,
        stderr=device if stderr_tty else piped,
        env=ENV,
        cwd=cwd,
    )
    os.close(device)
    screen = bytearray()
    deadline = time.monotonic() + 120  # a guard against hanging, not a timing assert
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    else:
        process.kill()
        pytest.fail("convtool did not finish: it waits on the terminal")
    out, err = process.communicate(timeout=120)
    os.close(controller)
    return process.returncode, bytes(screen).decode(errors="replace"), (err or out or b"").decode()


# ------------------------------------------------------------ outputs named like files


def test_a_folder_into_a_name_with_an_image_extension_is_refused(photos, tmp_path):
    result = invoke("filter", photos, "-o", tmp_path / "x.png", "-k", "box:3")
    assert result.exit_code == 2
    line = error_line(result)
    assert "names a file" in line and "a folder input needs an output folder" in line
    assert not (tmp_path / "x.png").exists()


def test_two_files_into_one_file_name_are_refused(photos, tmp_path):
    result = invoke(
        "filter", photos / "a.png", photos / "b.png", "-o", tmp_path / "single.png", "-k", "box"
    )
    assert result.exit_code == 2
    assert "several inputs need an output folder" in error_line(result)
    assert not (tmp_path / "single.png").exists()


def test_one_file_never_goes_into_a_folder_named_like_a_file(photos, tmp_path):
    (tmp_path / "x.png").mkdir()
    result = invoke("filter", photos / "a.png", "-o", tmp_path / "x.png", "-k", "box:3")
    assert result.exit_code == 2
    assert "-o names a folder" in error_line(result)
    assert list((tmp_path / "x.png").iterdir()) == []


def test_a_trailing_slash_makes_any_name_a_folder(photos, tmp_path):
    result = invoke("filter", photos, "-o", f"{tmp_path / 'x.png'}{os.sep}", "-k", "box:3")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "x.png").iterdir()) == ["a.png", "b.png"]


@pytest.mark.parametrize(("name", "fmt"), [("x.png", "jpg"), ("x.tif", "png"), ("x.pbm", "png")])
def test_a_format_contradicting_the_extension_is_refused(photos, tmp_path, name, fmt):
    result = invoke("filter", photos / "a.png", "-o", tmp_path / name, "-f", fmt, "-k", "box")
    assert result.exit_code == 2
    line = error_line(result)
    assert name in line and f"--format {fmt}" in line
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(("name", "fmt", "magic"), [("x.jpeg", "jpg", b"\xff\xd8"),
                                                    ("x.tiff", "tif", b"II"),
                                                    ("x.dat", "png", b"\x89PNG")])  # fmt: skip
def test_formats_that_agree_with_the_name_are_written(photos, tmp_path, name, fmt, magic):
    result = invoke("filter", photos / "a.png", "-o", tmp_path / name, "-f", fmt, "-k", "box")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / name).read_bytes().startswith(magic)


# ------------------------------------------------------------------------- terminals


def test_image_bytes_are_not_written_to_a_terminal(photos):
    code, screen, stderr = on_terminal(
        ["filter", photos / "a.png", "-k", "box:3", "-o", "-"], stdout_tty=True
    )
    assert code == 2
    assert "PNG" not in screen and screen == ""
    assert "refusing to write image data to a terminal" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_reading_an_image_from_a_terminal_is_refused_not_awaited(tmp_path):
    code, _, stderr = on_terminal(
        ["filter", "-", "-k", "box:3", "-o", tmp_path / "out.png"], stdin_tty=True
    )
    assert code == 2
    assert "refusing to read an image from a terminal" in stderr
    assert not (tmp_path / "out.png").exists()


def test_match_and_compare_refuse_terminals_too(photos):
    a = photos / "a.png"
    code, _, stderr = on_terminal(["compare", a, a, "-o", "-"], stdout_tty=True)
    assert (code, "terminal" in stderr) == (2, True)
    code, _, stderr = on_terminal(["match", "-", a, "--json"], stdin_tty=True)
    assert (code, "terminal" in stderr) == (2, True)


def test_a_batch_failure_is_listed_once_on_a_terminal(photos, tmp_path):
    (photos / "broken.png").write_bytes(b"not a png at all")
    code, screen, _ = on_terminal(
        ["filter", photos, "-o", tmp_path / "out", "-k", "box:3", "-j", "1"], stderr_tty=True
    )
    assert code == 1
    assert screen.count("broken.png") == 1, screen
    assert "2 done, 0 skipped, 1 failed" in screen


# ----------------------------------------------------------------- said, not silent


def test_dask_with_one_input_says_it_filters_here(photos, tmp_path):
    out = tmp_path / "one.png"
    result = invoke("filter", photos / "a.png", "-o", out, "-k", "box:3", "--dask", "tcp://x:1")
    assert result.exit_code == 0, result.stderr
    assert "--dask" in result.stderr and "filtered here" in result.stderr
    assert out.exists()


def test_an_empty_folder_is_an_error_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("filter", tmp_path / "empty", "-o", tmp_path / "out", "-k", "box:3")
    assert result.exit_code == 1
    line = error_line(result)
    assert f"no images found in {tmp_path / 'empty'}" in line and ".png" in line
    assert not (tmp_path / "out").exists()


def test_a_folder_of_other_files_says_what_was_skipped(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("hello")
    (tmp_path / "docs" / "sub").mkdir()
    result = invoke("filter", tmp_path / "docs", "-o", tmp_path / "out", "-k", "box:3")
    assert result.exit_code == 1
    line = error_line(result)
    assert "1 not an image file name" in line and "add -r" in line


def test_a_resumed_batch_with_everything_done_is_not_an_error(photos, tmp_path):
    args = ["filter", photos, "-o", tmp_path / "out", "-k", "box:3", "--skip-existing"]
    assert invoke(*args).exit_code == 0
    again = invoke(*args)
    assert again.exit_code == 0, again.stderr
    assert "0 done, 2 skipped" in again.stderr


def test_an_empty_input_name_is_named(tmp_path):
    result = invoke("filter", "", "-o", tmp_path / "out.png", "-k", "box:3")
    assert result.exit_code == 2
    assert "an input is an empty name ('')" in error_line(result)


@pytest.mark.parametrize(("spec", "wanted"), [("minpool:2", "did you mean maxpool"),
                                              ("gradd:sobel", "did you mean grad"),
                                              ("zzzz", "steps: grad:OP, maxpool:N, avgpool:N")])  # fmt: skip
def test_an_unknown_name_is_matched_against_kernels_and_steps(photos, tmp_path, spec, wanted):
    for args in (["filter", photos / "a.png", "-o", tmp_path / "o.png", "-k", spec],
                 ["kernels", "show", spec]):  # fmt: skip
        result = invoke(*args)
        assert result.exit_code == 2
        assert wanted in error_line(result)


def test_the_collision_hint_never_offers_suffix(tmp_path):
    for folder in ("x", "y"):
        save_png(tmp_path / folder / "a.png")
    result = invoke("filter", tmp_path / "x", tmp_path / "y", "-o", tmp_path / "out", "-k", "box")
    assert result.exit_code == 2
    line = error_line(result)
    assert "--suffix" not in line and "different -o folders" in line


def test_the_collision_hint_for_two_extensions_is_to_leave_out_format(tmp_path):
    save_png(tmp_path / "in" / "a.png")
    Image.open(tmp_path / "in" / "a.png").convert("RGB").save(tmp_path / "in" / "a.jpg")
    result = invoke("filter", tmp_path / "in", "-o", tmp_path / "out", "-k", "box", "-f", "png")
    assert result.exit_code == 2
    line = error_line(result)
    assert "--suffix" not in line and "leave out --format" in line


# --------------------------------------------------------------------------- --debug


@pytest.mark.parametrize(
    "args",
    [
        ["kernels", "--debug", "show", "gauss"],
        ["kernels", "show", "gauss", "--debug"],
        ["--debug", "kernels", "show", "gauss"],
        ["--debug", "filter", "nope.png", "-k", "box", "-o", "o.png"],
    ],
)
def test_debug_shows_the_traceback_wherever_it_is_given(tmp_path, args):
    run = subprocess.run(
        [sys.executable, "-m", "convtool", *args], capture_output=True, text=True, env=ENV,
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert run.returncode != 0
    assert "Traceback (most recent call last)" in run.stderr


def test_without_debug_the_same_error_is_one_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "convtool", "kernels", "show", "gauss"],
        capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "convtool: error: unknown kernel or step 'gauss'; did you mean gaussian?"
    ]


def test_quiet_prints_only_the_failures(photos, tmp_path):
    (photos / "broken.png").write_bytes(b"not a png at all")
    result = invoke("filter", photos, "-o", tmp_path / "out", "-k", "box:3", "-q", "-j", "1")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.png" in lines[0], lines


# ------------------------------------------------------------------------ float alpha


def test_float_alpha_is_opacity_from_0_to_1(tmp_path):
    rgba = np.zeros((4, 5, 4), np.float32)
    rgba[..., :3] = 100.0
    rgba[..., 3] = [[0.0, 0.25, 0.5, 0.75, 1.0]] * 4
    np.save(tmp_path / "in.npy", rgba)
    result = invoke("filter", tmp_path / "in.npy", "-k", "identity", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.stderr
    written = np.asarray(Image.open(tmp_path / "out.png"))
    expected = np.rint(rgba[..., 3] * 255)  # 0.5 → 127.5 → 128 (half to even)
    np.testing.assert_array_equal(written[..., 3], expected)
    np.testing.assert_array_equal(written[..., :3], 100)


def test_8_bit_alpha_goes_to_float_and_back_unchanged(tmp_path):
    rgba = np.random.default_rng(5).integers(0, 256, (6, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "in.png")
    steps = [("in.png", "mid.npy"), ("mid.npy", "back.png")]
    for src, dest in steps:
        result = invoke("filter", tmp_path / src, "-k", "identity", "-o", tmp_path / dest)
        assert result.exit_code == 0, result.stderr
    middle = np.load(tmp_path / "mid.npy")
    np.testing.assert_allclose(middle[..., 3], rgba[..., 3] / 255, rtol=1e-6)
    np.testing.assert_array_equal(middle[..., :3], rgba[..., :3])  # colour stays raw
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "back.png")), rgba)


# --------------------------------------------------------------------------- sharpen


@pytest.mark.parametrize("amount", [1.5, 2.0, 3.0])
def test_sharpen_sums_to_amount_minus_one_and_kernels_says_so(amount):
    from convtool import get_kernel

    assert get_kernel(f"sharpen:amount={amount}").weights.sum() == pytest.approx(amount - 1)
    listing = invoke("kernels").stdout
    row = next(line for line in listing.splitlines() if line.startswith("sharpen "))
    assert "sum amount-1" in row and "unsharp" in row
    shown = invoke("kernels", "show", f"sharpen:amount={amount}")
    assert shown.exit_code == 0
    from fractions import Fraction

    assert f"sum: {Fraction(amount - 1).limit_denominator()}" in shown.stdout


def test_unsharp_keeps_the_brightness_of_a_flat_area(tmp_path):
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((20, 20), 90, np.uint8)).save(flat)
    for spec, level in (("unsharp:sigma=2,amount=1.5", 90), ("sharpen:amount=1.5", 45)):
        result = invoke("filter", flat, "-k", spec, "-o", tmp_path / "out.png")
        assert result.exit_code == 0, result.stderr
        assert np.all(np.asarray(Image.open(tmp_path / "out.png")) == level), spec


# --------------------------------------------------------------------------- metadata


def test_strip_copies_no_metadata_to_outputs(tmp_path):
    """With --strip; without it, what each format holds is kept (tests/test_metadata.py)."""
    from PIL import PngImagePlugin

    src = tmp_path / "tagged.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret")
    exif = Image.Exif()
    exif[0x010F] = "SomeCamera"  # Make
    values = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(values).save(src, pnginfo=info, exif=exif, dpi=(300, 300))
    with Image.open(src) as im:
        assert im.info.get("Comment") == "secret" and im.getexif()  # the input has them
    for name in ("out.png", "out.tif", "out.webp", "out.jpg"):
        result = invoke("filter", src, "-k", "identity", "--strip", "-o", tmp_path / name)
        assert result.exit_code == 0, result.stderr
        with Image.open(tmp_path / name) as im:
            assert "Comment" not in im.info and 0x010F not in im.getexif(), name
            assert "icc_profile" not in im.info, name
            assert 300 not in (*im.info.get("dpi", ()), *im.info.get("resolution", ())), name

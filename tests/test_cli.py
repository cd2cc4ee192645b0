"""The command line, through Typer's CliRunner and through real subprocess pipes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from convtool.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def invoke(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


@pytest.fixture
def grey_png(tmp_path):
    values = np.random.default_rng(1).integers(0, 256, (20, 24), dtype=np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(values).save(path)
    return path, values.astype(float)


@pytest.fixture
def rgb_png(tmp_path):
    values = np.random.default_rng(2).integers(0, 256, (16, 18, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(values).save(path)
    return path, values.astype(float)


def read_png(path):
    return np.asarray(Image.open(path))


def one_error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


# ---------------------------------------------------------------------- filtering


def test_filter_box_matches_scipy_and_rounds(tmp_path, grey_png):
    src, values = grey_png
    out = tmp_path / "out.png"
    result = invoke("filter", src, "-k", "box:3", "-o", out)
    assert result.exit_code == 0, result.stderr
    expected = np.clip(
        np.rint(ndimage.convolve(values, np.full((3, 3), 1 / 9), mode="mirror")), 0, 255
    )
    np.testing.assert_array_equal(read_png(out), expected.astype(np.uint8))


def test_filter_inline_matrix_iterations_and_padding(tmp_path, grey_png):
    src, values = grey_png
    out = tmp_path / "out.npy"
    result = invoke(
        "filter",
        src,
        "-k",
        "[1 2 1; 2 4 2; 1 2 1]/16",
        "-n",
        3,
        "--padding",
        "edge",
        "--precision",
        "double",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.stderr
    kernel = np.outer([1, 2, 1], [1, 2, 1]) / 16
    expected = values
    for _ in range(3):
        expected = ndimage.convolve(expected, kernel, mode="nearest")
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-12)


def test_sobel_x_is_positive_where_intensity_rises_to_the_right(tmp_path):
    step = np.zeros((8, 8), np.uint8)
    step[:, 4:] = 200
    src, out = tmp_path / "step.png", tmp_path / "gx.npy"
    Image.fromarray(step).save(src)
    assert invoke("filter", src, "-k", "sobel-x", "-o", out).exit_code == 0
    gx = np.load(out)
    assert gx[:, 3:5].min() > 0 and np.all(gx[:, :2] == 0)


def test_chain_of_named_kernels_on_rgb(tmp_path, rgb_png):
    src, values = rgb_png
    out = tmp_path / "out.npy"
    result = invoke(
        "filter",
        src,
        "-k",
        "gaussian:sigma=2",
        "-k",
        "sharpen:amount=1.5",
        "--precision",
        "double",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.stderr
    assert np.load(out).shape == values.shape


def test_stdout_carries_only_image_bytes(grey_png):
    src, _ = grey_png
    result = invoke("filter", src, "-k", "box:5", "-o", "-")
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes.startswith(b"\x89PNG")
    Image.open(io.BytesIO(result.stdout_bytes)).load()


def test_stdin_to_stdout_npy(grey_png):
    src, values = grey_png
    result = invoke(
        "filter", "-", "-k", "identity", "-o", "-", "--format", "npy", input=src.read_bytes()
    )
    assert result.exit_code == 0, result.stderr
    np.testing.assert_array_equal(np.load(io.BytesIO(result.stdout_bytes)), values)


def test_range_offset_and_depth_float(tmp_path, grey_png):
    src, values = grey_png
    out = tmp_path / "gx.png"
    assert invoke("filter", src, "-k", "roberts-x", "--range", "offset", "-o", out).exit_code == 0
    signed = ndimage.convolve(values, [[1, -1]], mode="mirror")
    np.testing.assert_array_equal(read_png(out), np.clip(np.rint(signed + 128), 0, 255))


# ---------------------------------------------------------------------- kernels


def test_kernels_lists_every_named_kernel():
    result = invoke("kernels")
    assert result.exit_code == 0
    for name in [
        "identity",
        "box",
        "gaussian",
        "binomial",
        "roberts-x",
        "sobel-x",
        "sobel-diag1",
        "prewitt-y",
        "scharr-x",
        "laplacian",
        "sharpen",
        "edge",
        "outline",
        "emboss",
        "grad:OP",
        "maxpool:N",
    ]:
        assert name in result.stdout


def test_kernels_show_composed_binomial_is_binomial_5():
    composed = invoke("kernels", "show", "binomial:3", "-n", "2")
    direct = invoke("kernels", "show", "binomial:5")
    assert composed.exit_code == direct.exit_code == 0
    body = composed.stdout.splitlines()[1:]
    assert body == direct.stdout.splitlines()[1:]
    assert "1 4 6 4 1" in " ".join(composed.stdout.split())
    assert "/ 256" in composed.stdout
    assert "separable: yes" in composed.stdout


def test_kernels_show_sharpen_default():
    result = invoke("kernels", "show", "sharpen")
    assert result.exit_code == 0
    rows = [line.split() for line in result.stdout.splitlines()[1:4]]
    assert rows == [["0", "-1", "0"], ["-1", "5", "-1"], ["0", "-1", "0"]]
    assert "sum: 1" in result.stdout


def test_kernels_show_gradient_shows_both_kernels():
    result = invoke("kernels", "show", "grad:scharr")
    assert result.exit_code == 0
    assert result.stdout.count("separable") == 2


def test_version_and_help():
    assert invoke("--version").stdout.startswith("convtool ")
    for command in (["--help"], ["filter", "-h"], ["kernels", "--help"], ["kernels", "show", "-h"]):
        result = invoke(*command)
        assert result.exit_code == 0
        assert "Examples" in result.stdout or "Usage" in result.stdout


# ----------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-k", "sobel-z"], "sobel-x"),
        (["-k", "gaussian:sigma=-1"], "sigma"),
        (["-k", "[1 2; 3]"], "row"),
        (["-k", "box", "--padding", "mirorr"], "mirror"),
        (["-k", "box", "--stride", "0"], "--stride"),
        (["-k", "box", "-n", "0"], "--iterations"),
        (["-k", "box", "--range", "wrong"], "--range"),
        (["-k", "box", "--no-such-option"], "--no-such-option"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, grey_png, args, needle):
    src, _ = grey_png
    result = invoke("filter", src, "-o", tmp_path / "o.png", *args)
    assert result.exit_code == 2, result.stderr
    line = one_error_line(result)
    assert needle in line
    assert not (tmp_path / "o.png").exists()


def test_missing_input_exits_1_naming_the_file(tmp_path):
    result = invoke("filter", tmp_path / "nope.png", "-k", "box", "-o", tmp_path / "o.png")
    assert result.exit_code == 1
    assert "nope.png" in one_error_line(result)


def test_corrupt_input_exits_1(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    result = invoke("filter", bad, "-k", "box", "-o", tmp_path / "o.png")
    assert result.exit_code == 1
    assert "bad.png" in one_error_line(result)
    assert list(tmp_path.iterdir()) == [bad]


def test_output_equal_to_input_is_refused_and_input_kept(grey_png):
    src, _ = grey_png
    before = src.read_bytes()
    result = invoke("filter", src, "-k", "box", "-o", src)
    assert result.exit_code == 2
    assert "input" in one_error_line(result)
    assert src.read_bytes() == before


def test_unwritable_output_folder_exits_1(tmp_path, grey_png):
    src, _ = grey_png
    result = invoke("filter", src, "-k", "box", "-o", tmp_path / "missing" / "o.png")
    assert result.exit_code == 1
    one_error_line(result)


def test_debug_shows_the_traceback(tmp_path):
    result = invoke(
        "filter", tmp_path / "nope.png", "-k", "box", "-o", tmp_path / "o.png", "--debug"
    )
    assert result.exit_code != 0
    assert result.exception is not None


# ----------------------------------------------------------------- real processes


def convtool_cmd(*args):
    return [sys.executable, "-m", "convtool", *map(str, args)]


def test_shell_pipeline_npy_equals_one_process_chain(tmp_path, rgb_png):
    src, _ = rgb_png
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    first = subprocess.run(
        convtool_cmd("filter", src, "-k", "box:5", "-o", "-", "--format", "npy"),
        capture_output=True,
        check=True,
        env=env,
    )
    second = subprocess.run(
        convtool_cmd("filter", "-", "-k", "grad:sobel", "-o", tmp_path / "piped.npy"),
        input=first.stdout,
        capture_output=True,
        check=True,
        env=env,
    )
    assert second.stderr == b""
    subprocess.run(
        convtool_cmd("filter", src, "-k", "box:5", "-k", "grad:sobel", "-o", tmp_path / "one.npy"),
        check=True,
        env=env,
    )
    np.testing.assert_array_equal(np.load(tmp_path / "piped.npy"), np.load(tmp_path / "one.npy"))


def test_png_pipe_through_a_real_shell(tmp_path, grey_png):
    src, _ = grey_png
    out = tmp_path / "out.png"
    python = sys.executable
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    cmd = (
        f'"{python}" -m convtool filter "{src}" -k box:5 -o - | '
        f'"{python}" -m convtool filter - -k grad:sobel -o "{out}"'
    )
    done = subprocess.run(cmd, shell=True, capture_output=True, env=env)
    assert done.returncode == 0, done.stderr
    assert read_png(out).shape == (20, 24)


def test_version_does_not_import_numpy():
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    code = (
        "import sys; sys.argv = ['convtool', '--version']\n"
        "from convtool.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print('numpy' in sys.modules, 'scipy' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.split()[-2:] == ["False", "False"]


def test_direct_filter_does_not_import_scipy(tmp_path, grey_png):
    src, _ = grey_png
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    code = (
        "import sys\nfrom convtool.cli import app\n"
        f"sys.argv = ['convtool', 'filter', {str(src)!r}, '-k', 'sobel-x', '-o', "
        f"{str(tmp_path / 'o.png')!r}]\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print('scipy' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.split()[-1] == "False", done.stderr


# ------------------------------------------------------------------------ match


@pytest.fixture
def scene_and_template(tmp_path):
    scene = np.asarray(Image.open(ROOT / "samples" / "camera.png").convert("L"))
    y, x, h, w = 100, 140, 24, 32
    scene_path, template_path = tmp_path / "scene.png", tmp_path / "tpl.png"
    Image.fromarray(scene).save(scene_path)
    Image.fromarray(scene[y : y + h, x : x + w]).save(template_path)
    return scene_path, template_path, (x, y, w, h), scene.shape


def test_match_json_finds_the_cut_position(scene_and_template):
    import json

    scene, template, (x, y, w, h), _ = scene_and_template
    result = invoke("match", scene, template, "--json", "-m", "3")
    assert result.exit_code == 0, result.stderr
    hits = json.loads(result.stdout)
    assert hits[0]["x"] == x and hits[0]["y"] == y
    assert (hits[0]["width"], hits[0]["height"]) == (w, h)
    assert hits[0]["score"] > 0.999
    assert len(hits) <= 3


@pytest.mark.parametrize(("geometry", "same"), [("valid", False), ("same", True)])
def test_match_score_map_geometry(tmp_path, scene_and_template, geometry, same):
    scene, template, (x, y, w, h), (sh, sw) = scene_and_template
    out = tmp_path / "scores.npy"
    result = invoke("match", scene, template, "-o", out, "--geometry", geometry)
    assert result.exit_code == 0, result.stderr
    scores = np.load(out)
    assert scores.shape == ((sh, sw) if same else (sh - h + 1, sw - w + 1))
    peak = np.unravel_index(np.argmax(scores), scores.shape)
    assert peak == ((y + h // 2, x + w // 2) if same else (y, x))


def test_match_overlay_draws_a_red_box(tmp_path, scene_and_template):
    scene, template, (x, y, w, h), _ = scene_and_template
    out = tmp_path / "hits.png"
    assert invoke("match", scene, template, "--overlay", out, "-m", "1").exit_code == 0
    drawn = np.asarray(Image.open(out).convert("RGB"))
    assert drawn[y, x + w // 2].tolist() == [255, 0, 0]
    assert drawn[y + h - 1, x].tolist() == [255, 0, 0]


def test_match_without_an_output_is_a_usage_error(scene_and_template):
    scene, template, *_ = scene_and_template
    result = invoke("match", scene, template)
    assert result.exit_code == 2
    assert "nothing to do" in one_error_line(result)


@pytest.mark.parametrize("asked", [["-o", "scores.npy"], ["--overlay", "hits.png"], ["--json"]])
def test_match_summary_reports_the_hits_whatever_is_written(
    monkeypatch, tmp_path, scene_and_template, asked
):
    scene, template, (x, y, _, _), _ = scene_and_template
    monkeypatch.chdir(tmp_path)
    result = invoke("match", scene, template, "-m", "1", *asked)
    assert result.exit_code == 0, result.stderr
    assert f"1 match >= 0.80 (best 1.000 at x={x}, y={y})" in result.stderr


@pytest.mark.parametrize("threshold", ["2", "-1.5"])
def test_match_threshold_beyond_the_score_range_is_a_usage_error(scene_and_template, threshold):
    scene, template, *_ = scene_and_template
    result = invoke("match", scene, template, "--json", "-t", threshold)
    assert result.exit_code == 2
    assert "not in the range -1.0<=x<=1.0" in one_error_line(result)


def test_match_request_checks_its_threshold_before_reading(tmp_path):
    from convtool.errors import UsageError
    from convtool.match.request import MatchRequest, run

    with pytest.raises(UsageError, match="from -1 to 1"):
        run(MatchRequest(str(tmp_path / "absent.png"), "absent.png", as_json=True, threshold=2))


def test_match_template_larger_than_scene(scene_and_template):
    scene, template, *_ = scene_and_template
    result = invoke("match", template, scene, "--json")
    assert result.exit_code == 2
    one_error_line(result)


# ---------------------------------------------------------------------- compare


def test_compare_makes_a_labelled_sheet_of_common_height(tmp_path, grey_png, rgb_png):
    from convtool.images.sheet import GAP, scaled_width

    out = tmp_path / "sheet.png"
    result = invoke(
        "compare", grey_png[0], rgb_png[0], "-l", "grey", "-l", "rgb", "--height", 40, "-o", out
    )
    assert result.exit_code == 0, result.stderr
    sheet = np.asarray(Image.open(out))
    widths = [scaled_width((20, 24), 40), scaled_width((16, 18), 40)]
    assert sheet.shape[1] == sum(widths) + 3 * GAP
    assert sheet.shape[0] > 40 + 2 * GAP  # room for the labels under the tiles
    label_band = sheet[40 + GAP :, :, :]
    assert (label_band < 128).any()  # the labels are drawn in dark ink


def test_compare_label_count_must_match(tmp_path, grey_png, rgb_png):
    result = invoke("compare", grey_png[0], rgb_png[0], "-l", "one", "-o", tmp_path / "s.png")
    assert result.exit_code == 2
    assert "--label" in one_error_line(result)


# ------------------------------------------------------------------------ batch


def test_folder_batch_goes_on_past_a_bad_file(tmp_path, grey_png, rgb_png):
    folder = tmp_path / "in"
    folder.mkdir()
    for src, _ in (grey_png, rgb_png):
        (folder / src.name).write_bytes(src.read_bytes())
    (folder / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    result = invoke("filter", folder, "-o", out, "-k", "box:3", "-j", 1)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "2 done" in result.stderr and "1 failed" in result.stderr
    assert "broken.png" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["grey.png", "rgb.png"]


def test_batch_collision_is_a_usage_error_before_any_work(tmp_path, grey_png):
    src, _ = grey_png
    (tmp_path / "grey.jpg").write_bytes(src.read_bytes())
    out = tmp_path / "out"
    result = invoke("filter", src, tmp_path / "grey.jpg", "-o", out, "-k", "box", "--format", "png")
    assert result.exit_code == 2
    assert "grey" in one_error_line(result)
    assert not out.exists() or not any(out.iterdir())


def test_dask_without_distributed_says_how_to_install(tmp_path, grey_png, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    src, _ = grey_png
    result = invoke(
        "filter",
        src,
        src.with_name("x.png"),
        "-o",
        tmp_path / "out",
        "-k",
        "box",
        "--dask",
        "tcp://127.0.0.1:1",
    )
    assert result.exit_code == 2
    assert "pip install 'convtool[dask]'" in one_error_line(result)


# ------------------------------------------------------------------- alpha, pictures


def test_weighted_alpha_keeps_the_hidden_colour_of_a_real_rgba_file(tmp_path):
    # samples/rgba-hidden.png: opaque (40, 120, 200) beside fully transparent magenta.
    src = ROOT / "samples" / "rgba-hidden.png"
    before = np.asarray(Image.open(src))
    opaque = before[..., 3] == 255
    carried, weighted = tmp_path / "carry.png", tmp_path / "weighted.png"
    assert invoke("filter", src, "-k", "box:5", "-o", carried).exit_code == 0
    assert (
        invoke("filter", src, "-k", "box:5", "--alpha", "weighted", "-o", weighted).exit_code == 0
    )
    leak = np.asarray(Image.open(carried))[opaque][:, :3]
    kept = np.asarray(Image.open(weighted))[opaque][:, :3]
    assert (leak[:, 0] > 40).any()  # without weighting the hidden magenta bleeds in
    assert (kept == [40, 120, 200]).all()
    np.testing.assert_array_equal(np.asarray(Image.open(weighted))[..., 3], before[..., 3])


def test_kernels_show_heat_map_colours_signs():
    from io import StringIO

    from rich.console import Console

    from convtool.cli.terminal import print_heat_maps
    from convtool.pipeline import report as kernelview

    buffer = StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="truecolor", width=80)
    print_heat_maps(kernelview.report("sobel-x"), console=console)
    text = buffer.getvalue()
    assert "\x1b[" in text  # coloured cells
    assert "rgb" not in text  # styles are rendered, not printed
    assert "48;2;" in text  # truecolor backgrounds: positive red, negative blue
    assert "sum: 0" in text


def test_no_color_gives_plain_numbers(monkeypatch):
    from convtool.cli import terminal

    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert terminal.rich_stdout() is False


@pytest.mark.slow
def test_the_wheel_ships_every_subpackage_the_kernel_files_and_the_compiled_kernels(tmp_path):
    """A non-editable install gets what a wheel holds: build one and read its file list."""
    import zipfile

    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {done.stderr.strip().splitlines()[-1:]}")
    (wheel,) = tmp_path.glob("convtool-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("engine", "kernels", "pipeline", "images", "batch", "match", "cli"):
        assert f"convtool/{package}/__init__.py" in names
    assert "convtool/_kernels/sobel-x.txt" in names and "convtool/_kernels/edge.txt" in names
    assert "convtool/py.typed" in names
    if os.environ.get("CI"):  # CI has a compiler: the wheel must carry the kernels
        assert any(n.startswith("convtool/engine/_native") and n.endswith(".so") for n in names)


def test_bare_convtool_prints_the_help_not_an_error():
    result = invoke()
    assert "Usage" in result.stderr + result.stdout
    assert "error:" not in result.stderr

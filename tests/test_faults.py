"""Faults from outside: a full disk, a read-only or vanishing output folder, signals.

The promise under each: a clear one-line error (or the batch's report), no partial output
and no temporary file (``.<name>.convtool-<pid>-<random>.tmp``) left behind, earlier outputs
intact, and a state a second run can finish. A full disk and a read-only folder need a file
system of their own when running as root (a small tmpfs: ``tests/bad_inputs/mounts.py``);
without root the full-disk tests skip. Signals are sent to real ``convtool`` processes,
started through a small driver that marks when filtering (or writing) begins, so "mid-image"
and "mid-write" are known moments, not guesses.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bad_inputs.mounts import IS_ROOT, read_only_folder, small_disk
from PIL import Image
from typer.testing import CliRunner

from convtool import batch
from convtool.cli import app
from convtool.pipeline import Chain, parse_steps

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")


def noise_png(path: Path, side: int, seed: int = 0, channels: int = 3) -> Path:
    """Noise barely compresses: a PNG of ``side``² RGB pixels takes about 3·side² bytes."""
    shape = (side, side, channels) if channels > 1 else (side, side)
    values = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(values).save(path, compress_level=0)
    return path


def temp_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*") if ".convtool-" in p.name)


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def decodes(path: Path) -> bool:
    with Image.open(path) as image:
        image.load()  # raises on a truncated file
    return True


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------ full disk


@pytest.fixture
def disk(tmp_path):
    """A 256 KB tmpfs (root only): outputs larger than that cannot be written."""
    folder = tmp_path / "disk"
    with small_disk(folder, "256k") as mounted:
        if not mounted:
            pytest.skip("a full disk needs root to mount a small tmpfs")
        yield folder


def test_full_disk_one_file_clear_error_and_earlier_outputs_intact(tmp_path, disk):
    small = noise_png(tmp_path / "small.png", 32)
    big = noise_png(tmp_path / "big.png", 400)  # ~480 KB as an output
    assert invoke("filter", small, "-k", "box:3", "-o", disk / "earlier.png").exit_code == 0
    (disk / "big.png").write_bytes(b"the old big.png")  # replaced only if the write succeeds
    before = {p.name: p.read_bytes() for p in disk.iterdir()}
    inputs = {p: p.read_bytes() for p in (small, big)}

    result = invoke("filter", big, "-k", "box:3", "-o", disk / "big.png", "--compress-level", "0")

    assert result.exit_code == 1
    assert lines_of(result.stderr) == [
        f"convtool: error: {disk / 'big.png'}: cannot write: no space left on the device "
        "(disk full)"
    ]
    assert {p.name: p.read_bytes() for p in disk.iterdir()} == before  # no partial, no temp
    assert decodes(disk / "earlier.png")
    assert {p: p.read_bytes() for p in inputs} == inputs


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_full_disk_stops_a_batch_and_reports_it(tmp_path, disk, jobs):
    source = tmp_path / "in"
    source.mkdir()
    # ~97 KB each: two fit in 256 KB. With -j 2 up to four jobs are under way when the
    # disk fills, and they finish; the other six must not start.
    for i in range(12):
        noise_png(source / f"img{i:02d}.png", 180, seed=i)
    out = disk / "out"

    result = invoke("filter", source, "-o", out, "-k", "box:3", "-j", jobs, "--compress-level", "0")

    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert "no space left on the device (disk full)" in result.stderr
    assert "not run" in result.stderr  # it stopped: no point going on
    written = sorted(out.glob("*.png"))
    assert 1 <= len(written) <= 3
    assert all(decodes(p) for p in written)  # earlier outputs intact
    assert temp_files(disk) == []


# ------------------------------------------------------------------ read-only output folder


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        noise_png(folder / f"img{i}.png", 24, seed=i)
    return folder


def test_a_batch_into_a_read_only_place_is_one_clear_error(tmp_path, images):
    with read_only_folder(tmp_path / "locked") as reason:
        result = invoke("filter", images, "-o", tmp_path / "locked" / "out", "-k", "box:3")
        assert result.exit_code == 1
        assert lines_of(result.stderr) == [
            f"convtool: error: {tmp_path / 'locked' / 'out'}: cannot create the output folder: "
            f"{reason}"
        ]
        assert list((tmp_path / "locked").iterdir()) == []


def test_a_batch_into_a_read_only_output_folder_fails_each_file_cleanly(tmp_path, images):
    with read_only_folder(tmp_path / "locked") as reason:
        result = invoke("filter", images, "-o", tmp_path / "locked", "-k", "box:3", "-j", "1")
        assert result.exit_code == 1
        assert "Traceback" not in result.stderr
        assert reason in result.stderr
        assert list((tmp_path / "locked").iterdir()) == []


def test_a_read_only_file_system_stops_a_batch_as_a_full_disk_does(tmp_path, images):
    if not IS_ROOT:
        pytest.skip("chmod gives 'permission denied', which may differ per subfolder")
    with read_only_folder(tmp_path / "locked"):
        result = invoke("filter", images, "-o", tmp_path / "locked", "-k", "box:3", "-j", "1")
        assert "1 failed" in result.stderr and "not run" in result.stderr


# --------------------------------------------------------------- output folder deleted


def test_output_folder_deleted_mid_batch(tmp_path, images):
    """Deleting the output folder between files: it is made again and the batch goes on."""
    out = tmp_path / "out"
    plan = batch.plan([str(images)], str(out))
    settings = batch.Settings(chain=Chain(steps=parse_steps(["box:3"])))
    results = []
    for result in batch.run(plan.jobs, settings, workers=1):
        results.append(result)
        if len(results) == 1:
            shutil.rmtree(out)
    assert [r.status for r in results] == ["done"] * 3
    assert len(list(out.glob("*.png"))) == 2  # the first went with the folder
    assert all(decodes(p) for p in out.glob("*.png"))
    assert temp_files(tmp_path) == []


def test_output_folder_deleted_while_a_pool_writes(tmp_path):
    """The same with two worker processes and the folder removed at any moment: every file
    is done or failed with a one-line reason, no temporary file survives, and whatever
    output is there is complete."""
    source = tmp_path / "in"
    source.mkdir()
    for i in range(12):
        noise_png(source / f"img{i:02d}.png", 160, seed=i)
    out = tmp_path / "out"
    process = start(["filter", source, "-o", out, "-k", "gaussian:sigma=3", "-j", "2"])
    wait_for(lambda: out.is_dir() and any(out.glob("*.png")), process)
    shutil.rmtree(out, ignore_errors=True)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode in (0, 1)
    assert "Traceback" not in stderr
    for line in lines_of(stderr):
        assert line.startswith(("convtool: ", "done ", "failed ", "  failed: ")), line
    assert temp_files(tmp_path) == []
    assert all(decodes(p) for p in out.glob("*.png"))


# ---------------------------------------------------------------------------------- signals

DRIVER = """
import io, os, secrets, sys, time
from convtool import cli
from convtool.images import atomic, codecs
from convtool import pipeline

marker = os.environ["CONVTOOL_TEST_MARKER"]
filter_once = pipeline.Chain.apply_to
if os.environ.get("CONVTOOL_TEST_FOREIGN_PID"):
    # a writer in another pid namespace or host: its pid means nothing here
    atomic.temp_name_for = lambda name: f".{name}.convtool-999999999-{secrets.token_hex(4)}.tmp"


filter_uint8 = pipeline.Chain.apply_uint8


def apply_to(self, image):
    open(marker + ".filtering", "w").close()
    return filter_once(self, image)


def apply_uint8(self, *args, **kwargs):  # the 8-bit route: no float image
    open(marker + ".filtering", "w").close()
    return filter_uint8(self, *args, **kwargs)


pipeline.Chain.apply_to = apply_to
pipeline.Chain.apply_uint8 = apply_uint8
if os.environ.get("CONVTOOL_TEST_SLOW_WRITE"):
    encode_png = codecs.ENCODERS["png"]

    def slow_png(f, *args):
        buffer = io.BytesIO()
        encode_png(buffer, *args)
        data = buffer.getvalue()
        for start in range(0, len(data), 8192):
            f.write(data[start : start + 8192])
            f.flush()
            if start == 0:
                open(marker + ".writing", "w").close()
                if os.environ.get("CONVTOOL_TEST_HOLD"):  # until the test says go on
                    deadline = time.monotonic() + 60
                    while not os.path.exists(marker + ".go") and time.monotonic() < deadline:
                        time.sleep(0.01)
            time.sleep(0.02)

    codecs.ENCODERS["png"] = slow_png
sys.argv[0] = "convtool"
cli.main()
"""


@pytest.fixture
def driver(tmp_path) -> Path:
    path = tmp_path / "driver.py"
    path.write_text(DRIVER)
    return path


def start(
    args,
    *,
    driver: Path | None = None,
    marker: Path | None = None,
    slow_write=False,
    hold=False,
    foreign_pid=False,
):
    """Start ``convtool ARGS`` (through the driver if given) in a session of its own.

    ``slow_write``: PNGs are written in slow 8 KB chunks, ``MARKER.writing`` marking the
    first; ``hold``: after that chunk the write waits for ``MARKER.go``; ``foreign_pid``:
    temporary files carry a pid that is not running here (another container or host).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["CONVTOOL_TEST_MARKER"] = str(marker or "")
    for flag, name in ((slow_write, "SLOW_WRITE"), (hold, "HOLD"), (foreign_pid, "FOREIGN_PID")):
        if flag:
            env[f"CONVTOOL_TEST_{name}"] = "1"
    program = [str(driver)] if driver else ["-m", "convtool"]
    return subprocess.Popen(
        [sys.executable, *program, *map(str, args)],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_for(condition, process: subprocess.Popen, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def stop(process: subprocess.Popen, signum: int, group: bool = False) -> str:
    """Send ``signum`` (to the process group: a closed terminal's SIGHUP), wait for the
    process to end (at most :data:`PROMPT` seconds, else the test fails); return its stderr."""
    if group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=PROMPT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {PROMPT} s after signal {signum}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return stderr


@pytest.fixture(scope="module")
def large_image(tmp_path_factory) -> Path:
    """An image whose filtering (log:sigma=40, 321×321 taps, direct) takes seconds."""
    return noise_png(tmp_path_factory.mktemp("large") / "large.png", 2000, channels=1)


# The deadline from a signal to the end of the process: the event waited on is the exit;
# the deadline is generous (a loaded 2-core machine) yet far below the work left when the
# signal comes (the large image's filtering takes minutes; the slow write, 60 slow chunks).
PROMPT = 20.0


def _mid_image(signum, tmp_path, large_image, driver):
    marker = tmp_path / "marker"
    out = tmp_path / "out.png"
    before = large_image.read_bytes()
    process = start(
        ["filter", large_image, "-k", "log:sigma=40", "--method", "direct", "-o", out],
        driver=driver,
        marker=marker,
    )
    wait_for(Path(f"{marker}.filtering").exists, process)  # the filtering has begun
    stderr = stop(process, signum)
    assert [line.split(";")[0] for line in lines_of(stderr)] == ["convtool: error: interrupted"]
    assert not out.exists() and temp_files(tmp_path) == []
    assert large_image.read_bytes() == before
    return process.returncode


def test_ctrl_c_mid_image_stops_promptly(tmp_path, large_image, driver):
    code = _mid_image(signal.SIGINT, tmp_path, large_image, driver)
    assert code == 130


def test_sigterm_mid_image_stops_promptly(tmp_path, large_image, driver):
    code = _mid_image(signal.SIGTERM, tmp_path, large_image, driver)
    assert code == 143


def _mid_write(signum, tmp_path, driver):
    marker = tmp_path / "marker"
    source = noise_png(tmp_path / "in.png", 400)  # ~480 KB: 60 slow chunks of 8 KB
    out = tmp_path / "out.png"
    out.write_bytes(b"the previous result")
    process = start(
        ["filter", source, "-k", "box:3", "-o", out, "--compress-level", "0"],
        driver=driver,
        marker=marker,
        slow_write=True,
    )
    wait_for(Path(f"{marker}.writing").exists, process)
    assert temp_files(tmp_path)  # the write is under way, into a temporary file
    stderr = stop(process, signum)
    assert [line.split(";")[0] for line in lines_of(stderr)] == ["convtool: error: interrupted"]
    assert out.read_bytes() == b"the previous result"  # never half an image
    assert temp_files(tmp_path) == []
    return process.returncode


def test_ctrl_c_mid_write_keeps_the_old_file_and_no_temporary_file(tmp_path, driver):
    assert _mid_write(signal.SIGINT, tmp_path, driver) == 130


# Every signal whose default would end the process, and that a program may catch.
CATCHABLE = ["SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGXCPU"]


@pytest.mark.parametrize("name", CATCHABLE)
def test_a_terminating_signal_mid_write_keeps_the_old_file_and_no_temporary_file(
    tmp_path, driver, name
):
    signum = getattr(signal, name)
    assert _mid_write(signum, tmp_path, driver) == 128 + signum


def test_compare_cleans_up_its_temporary_file_on_sighup(tmp_path, driver):
    marker = tmp_path / "marker"
    pictures = [noise_png(tmp_path / f"{i}.png", 300, seed=i) for i in range(2)]
    out = tmp_path / "sheet.png"
    process = start(
        ["compare", *pictures, "-o", out], driver=driver, marker=marker, slow_write=True
    )
    wait_for(Path(f"{marker}.writing").exists, process)
    assert temp_files(tmp_path)
    stderr = stop(process, signal.SIGHUP)
    assert [line.split(";")[0] for line in lines_of(stderr)] == ["convtool: error: interrupted"]
    assert process.returncode == 128 + signal.SIGHUP
    assert not out.exists() and temp_files(tmp_path) == []


def test_a_single_file_run_removes_the_temporary_file_a_killed_run_left(tmp_path, driver):
    marker = tmp_path / "marker"
    source = noise_png(tmp_path / "in.png", 200)
    out = tmp_path / "out.png"
    args = ["filter", source, "-k", "box:3", "-o", out, "--compress-level", "0"]
    process = start(args, driver=driver, marker=marker, slow_write=True)
    wait_for(Path(f"{marker}.writing").exists, process)
    stop(process, signal.SIGKILL)  # cannot be caught: its temporary file stays
    assert len(temp_files(tmp_path)) == 1
    again = start(args)
    assert again.wait(timeout=60) == 0
    assert temp_files(tmp_path) == [] and decodes(out)


# --------------------------------------------------- temporary files of other runs (locks)


def test_a_run_elsewhere_keeps_its_temporary_file_while_another_run_cleans(tmp_path, driver):
    """A writer whose pid is not visible here (another container or host) holds its temp
    file's lock; a batch into the same folder, cleaning stale files at its start and end,
    leaves it alone, and the first run finishes its write."""
    marker = tmp_path / "marker"
    out = tmp_path / "out"
    out.mkdir()
    source = noise_png(tmp_path / "big.png", 200)
    writer = start(
        ["filter", source, "-k", "box:3", "-o", out / "big.png", "--compress-level", "0"],
        driver=driver,
        marker=marker,
        slow_write=True,
        hold=True,
        foreign_pid=True,
    )
    wait_for(Path(f"{marker}.writing").exists, writer)
    [temp] = temp_files(out)
    assert ".convtool-999999999-" in temp.name
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        noise_png(inputs / f"small{i}.png", 16, seed=i)
    cleaner = start(["filter", inputs, "-o", out, "-k", "box:3", "-j", "1", "-q"])
    assert cleaner.wait(timeout=60) == 0, cleaner.communicate()
    assert temp.exists()  # not stale: its lock is held
    Path(f"{marker}.go").touch()
    _, stderr = writer.communicate(timeout=60)
    assert writer.returncode == 0, stderr
    assert decodes(out / "big.png") and temp_files(out) == []


def test_a_temporary_file_removed_by_someone_else_is_reported_honestly(tmp_path, driver):
    marker = tmp_path / "marker"
    source = noise_png(tmp_path / "in.png", 200)
    out = tmp_path / "out.png"
    writer = start(
        ["filter", source, "-k", "box:3", "-o", out, "--compress-level", "0"],
        driver=driver,
        marker=marker,
        slow_write=True,
        hold=True,
    )
    wait_for(Path(f"{marker}.writing").exists, writer)
    for temp in temp_files(tmp_path):
        temp.unlink()  # a careless cleaner, or one that cannot see our lock
    Path(f"{marker}.go").touch()
    _, stderr = writer.communicate(timeout=60)
    assert writer.returncode == 1
    assert lines_of(stderr) == [
        f"convtool: error: {out}: cannot write: its temporary file was removed by another "
        "process while it was written (another program cleaning this folder?); run again"
    ]
    assert not out.exists()


# ------------------------------------------------------- a folder swapped for a symlink


def test_a_folder_flipped_to_a_symbolic_link_never_lets_a_write_out(tmp_path):
    """While a batch writes into out/sub, a thread keeps replacing out/sub by a symbolic
    link to ../outside and back. Every write goes through folder descriptors opened with
    O_NOFOLLOW: nothing, not even a temporary file, ever lands in outside/."""
    import threading

    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    for i in range(300):
        noise_png(source / "sub" / f"img{i:03d}.png", 24, seed=i)
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    process = start(["filter", source, "-o", out, "-r", "-j", "2", "-k", "box:3"])
    wait_for(lambda: (out / "sub").is_dir() and any((out / "sub").iterdir()), process)
    seen_outside: list[str] = []
    flips = 0
    stop_flipping = threading.Event()

    def flip() -> None:
        nonlocal flips
        sub, attempt = out / "sub", 0
        while not stop_flipping.is_set():
            attempt += 1
            saved = out / f".sub-{attempt}"  # a worker may make out/sub again meanwhile
            with contextlib.suppress(OSError):
                os.rename(sub, saved)
                os.symlink("../outside", sub)
                flips += 1
                time.sleep(0.0005)
                seen_outside.extend(os.listdir(outside))  # even a passing temporary file
                os.unlink(sub)
                os.rename(saved, sub)
            time.sleep(0.0005)

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        stop_flipping.set()
        flipper.join()
    assert flips > 0
    assert seen_outside == [] and list(outside.iterdir()) == []
    assert process.returncode in (0, 1) and "Traceback" not in stderr
    reasons = (  # the link met, or the folder in hand replaced by the flip back
        "refusing to write outside the output folder: its folder 'sub' is a symbolic link",
        "cannot write: its folder was removed (or replaced) while it was written",
    )
    for line in lines_of(stderr):
        if line.startswith("  failed: "):
            assert line.endswith(reasons), line
    written = [p for p in out.rglob("*.png") if not p.is_symlink()]
    assert all(decodes(p) for p in written)


# ---------------------------------------------------------------------- endless streams


def test_dev_zero_on_stdin_is_refused_at_once(tmp_path):
    with open("/dev/zero", "rb") as zeros:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "convtool",
                "filter",
                "-",
                "-k",
                "box",
                "-o",
                tmp_path / "o.png",
            ],
            stdin=zeros,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            timeout=60,
        )
    assert result.returncode == 1
    assert lines_of(result.stderr) == [
        "convtool: error: -: not an image, or a format convtool cannot read (all zero bytes); "
        "it reads PNG, JPEG, TIFF, BMP, WebP, GIF, PNM (PBM/PGM/PPM) and .npy"
    ]


def test_an_endless_stream_after_an_image_signature_stops_at_the_limit(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "convtool", "filter", "-", "-k", "box", "-o", tmp_path / "o.png",
         "--max-pixels", "1000"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    sent = 0
    with contextlib.suppress(BrokenPipeError):
        process.stdin.write(b"\x89PNG\r\n\x1a\n")
        while sent < 1 << 30:  # a gigabyte would mean the limit did not hold
            process.stdin.write(bytes(1 << 20))
            sent += 1 << 20
    with contextlib.suppress(BrokenPipeError):
        process.stdin.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 1
    assert sent < 64 << 20
    assert "more than an image within --max-pixels (1,000) takes; raise --max-pixels" in stderr


@pytest.mark.parametrize(
    ("signum", "group"),
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGHUP, True)],
    ids=["ctrl-c", "sigterm", "sighup-to-the-group"],
)
def test_a_signal_mid_batch_stops_promptly_and_a_second_run_finishes(tmp_path, signum, group):
    source = tmp_path / "in"
    source.mkdir()
    for i in range(16):
        noise_png(source / f"img{i:02d}.png", 300, seed=i, channels=1)
    out = tmp_path / "out"
    args = [
        "filter",
        source,
        "-o",
        out,
        "-k",
        "gaussian:sigma=12",
        "--method",
        "direct",
        "-j",
        "2",
        "-q",
    ]
    process = start(args)
    wait_for(lambda: out.is_dir() and any(out.glob("*.png")), process)
    stderr = stop(process, signum, group=group)
    assert process.returncode == 128 + signum
    assert "Traceback" not in stderr
    assert "interrupted after" in stderr
    assert temp_files(out) == []
    finished = sorted(out.glob("*.png"))
    assert 0 < len(finished) < 16 and all(decodes(p) for p in finished)

    again = subprocess.run(
        [sys.executable, "-m", "convtool", *map(str, args), "--skip-existing"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert again.returncode == 0, again.stderr
    assert len(list(out.glob("*.png"))) == 16 and temp_files(out) == []

"""Standard output: all the bytes arrive, or the run fails — never exit 0 for a cut result.

Real processes with real pipes and devices: a reader that leaves early (``| head``: exit
141, as a shell reports for ``cat``, and nothing on stderr), a full device
(``>/dev/full``), a closed stdout (``>&-``), and a non-blocking pipe whose reader is slow
(the writer waits and continues: every byte arrives). Image bytes, listings, JSON, help
and ``--version`` all go through the same writer (:mod:`convtool.stdio`).
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convtool.errors import ClosedPipe, StdoutError
from convtool.images import Image as ConvImage
from convtool.images import write_image

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX pipes")
CONVTOOL = [sys.executable, "-m", "convtool"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


@pytest.fixture(scope="module")
def big_png(tmp_path_factory) -> Path:
    """Noise: its PNG on stdout (~1 MB) is far more than a pipe holds (64 KB)."""
    path = tmp_path_factory.mktemp("stdout") / "big.png"
    values = np.random.default_rng(1).integers(0, 256, (600, 600, 3), dtype=np.uint8)
    Image.fromarray(values).save(path, compress_level=0)
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, Path]:
    """A noisy scene and a patch of it: with --threshold -1, ~200 KB of matches (a pipe holds 64)."""
    folder = tmp_path_factory.mktemp("scene")
    values = np.random.default_rng(2).integers(0, 256, (400, 400), dtype=np.uint8)
    Image.fromarray(values).save(folder / "scene.png")
    Image.fromarray(values[10:15, 20:25]).save(folder / "patch.png")
    return folder / "scene.png", folder / "patch.png"


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def run(args, stdout, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CONVTOOL, *map(str, args)],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=120,
        **kwargs,
    )


def head(args, count: int) -> tuple[int, str, bytes]:
    """``convtool ARGS | head -c COUNT``: the exit code, stderr, and the bytes head got."""
    process = subprocess.Popen(
        [*CONVTOOL, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=ENV,
    )
    got = process.stdout.read(count)
    process.stdout.close()  # the reader leaves
    stderr = process.stderr.read().decode()
    return process.wait(timeout=120), stderr, got


# ------------------------------------------------------------------------- a reader leaves


def test_an_image_cut_off_by_head_is_not_success(big_png):
    code, stderr, got = head(
        ["filter", big_png, "-k", "box:3", "-o", "-", "--compress-level", "0"], 10
    )
    assert got.startswith(b"\x89PNG")
    assert code == 141  # 128 + SIGPIPE: what a shell reports for `cat big | head -c 10`
    assert stderr == ""  # quiet, as cat and gzip are


def test_a_long_listing_cut_off_by_head_exits_141_quietly():
    code, stderr, got = head(["kernels", "show", "gaussian:sigma=30"], 200)  # ~400 KB
    assert got.startswith(b"gaussian:sigma=30: 181x181")
    assert (code, stderr) == (141, "")


@pytest.mark.parametrize(
    "args",
    [["kernels"], ["kernels", "show", "sobel-x"], ["--help"], ["--version"]],
    ids=["kernels", "kernels-show", "help", "version"],
)
def test_short_listings_under_head_never_fail_loudly(args):
    # A short listing may be written whole before head leaves (exit 0) or not (141): either
    # way no message, no traceback, no "Exception ignored".
    code, stderr, got = head(args, 1)
    assert len(got) == 1
    assert code in (0, 141) and stderr == ""


def test_match_json_under_head(scene):
    code, stderr, got = head(["match", *scene, "--json", "-t", "-1", "-q"], 5)
    assert got.startswith(b"[")
    assert (code, stderr) == (141, "")


# ------------------------------------------------------------------------ a full device


FULL_CASES = {
    "image": ["filter", "{big}", "-k", "box:3", "-o", "-"],
    "kernels": ["kernels"],
    "kernels-show": ["kernels", "show", "sobel-x"],
    "match-json": ["match", "{scene}", "{patch}", "--json", "-q"],
    "version": ["--version"],
    "help": ["--help"],
    "filter-help": ["filter", "--help"],
}


def fill(args, big_png, scene) -> list[str]:
    values = {"{big}": str(big_png), "{scene}": str(scene[0]), "{patch}": str(scene[1])}
    return [values.get(a, a) for a in args]


@pytest.mark.parametrize("case", sorted(FULL_CASES))
def test_a_full_disk_on_stdout_is_one_line_and_exit_1(case, big_png, scene):
    with open("/dev/full", "wb") as full:
        result = run(fill(FULL_CASES[case], big_png, scene), full)
    assert result.returncode == 1
    assert lines_of(result.stderr) == [
        "convtool: error: cannot write to stdout: no space left on the device (disk full)"
    ]


@pytest.mark.parametrize("case", sorted(FULL_CASES))
def test_a_closed_stdout_is_one_line_and_exit_1(case, big_png, scene):
    args = " ".join(f"'{a}'" for a in [*CONVTOOL, *fill(FULL_CASES[case], big_png, scene)])
    result = subprocess.run(
        ["sh", "-c", f"exec {args} >&-"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=120,
    )
    assert result.returncode == 1
    assert lines_of(result.stderr) == [
        "convtool: error: cannot write to stdout: standard output is closed"
    ]


def test_with_stdout_closed_a_file_output_is_still_written_whole(tmp_path, big_png):
    out = tmp_path / "out.png"
    cmd = " ".join(f"'{a}'" for a in [*CONVTOOL, "filter", big_png, "-k", "box:3", "-o", out])
    result = subprocess.run(
        ["sh", "-c", f"exec {cmd} >&-"], capture_output=True, text=True, cwd=ROOT, env=ENV
    )
    assert (result.returncode, result.stderr) == (0, "")
    with Image.open(out) as image:
        image.load()
        assert image.size == (600, 600)


def test_a_failing_stderr_does_not_change_the_exit_code(tmp_path):
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [*CONVTOOL, "filter", tmp_path / "missing.png", "-k", "box", "-o", tmp_path / "o.png"],
            stderr=full,
            cwd=ROOT,
            env=ENV,
            timeout=120,
        )
    assert result.returncode == 1


# ------------------------------------------------------------ partial writes are continued


def test_a_non_blocking_pipe_with_a_slow_reader_gets_every_byte(tmp_path, big_png):
    """os.write takes only what the pipe holds; the writer waits and goes on, never drops."""
    expected_path = tmp_path / "expected.png"
    args = ["filter", big_png, "-k", "box:3", "--compress-level", "0"]
    assert run([*args, "-o", expected_path], subprocess.DEVNULL).returncode == 0
    read_end, write_end = os.pipe()
    flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)  # shared with the child
    process = subprocess.Popen(
        [*CONVTOOL, *map(str, args), "-o", "-"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=ENV,
    )
    os.close(write_end)
    received = bytearray()
    with os.fdopen(read_end, "rb", buffering=0) as reader:
        while chunk := reader.read(16384):
            received += chunk
            time.sleep(0.001)  # slower than the writer: the pipe fills again and again
    assert process.wait(timeout=120) == 0, process.stderr.read()
    assert bytes(received) == expected_path.read_bytes()


# -------------------------------------------------------------------- the library's writer


class Trickle(io.RawIOBase):
    """A raw stream that takes at most 7 bytes a call, as a raw write may."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        taken = bytes(data[:7])
        self.data += taken
        return len(taken)


class Failing(io.RawIOBase):
    def __init__(self, errnum: int) -> None:
        super().__init__()
        self.errnum = errnum

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(self.errnum, os.strerror(self.errnum))


def test_write_image_to_a_stream_that_takes_little_at_a_time_gets_everything(tmp_path):
    image = ConvImage(np.arange(48, dtype=np.float32).reshape(6, 8), depth=8)
    write_image(tmp_path / "file.png", image)
    trickle = Trickle()
    write_image("-", image, stdout=trickle)
    assert bytes(trickle.data) == (tmp_path / "file.png").read_bytes()


@pytest.mark.parametrize(
    ("errnum", "kind", "message"),
    [
        (errno.EPIPE, ClosedPipe, "the reader closed the pipe"),
        (errno.ENOSPC, StdoutError, "no space left on the device (disk full)"),
        (errno.EIO, StdoutError, "input/output error"),
    ],
)
def test_write_image_to_a_failing_stream_raises_one_line(errnum, kind, message):
    image = ConvImage(np.zeros((4, 4), np.float32), depth=8)
    with pytest.raises(kind) as caught:
        write_image("-", image, stdout=Failing(errnum))
    assert str(caught.value) == f"cannot write to stdout: {message}"
    assert caught.value.exit_code == (141 if kind is ClosedPipe else 1)

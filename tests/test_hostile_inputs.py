"""The hostile-input corpus: every command, run as an attacker or a careless script would.

Each case of the table builds its files in a fresh folder, runs one command of the CLI and
checks the promise of RELIABILITY.md ("Hostile inputs"):

- exactly one line on stderr (the C libraries' own output and log records included), no
  traceback, the documented exit code (2: a bad invocation, 1: a failure at run time);
- the line names what it must (the file, the option, what to try), is at most
  ``MAX_LINE`` characters, and holds no secret of the files the command read, no control
  character and no option the command does not have;
- every file is byte for byte as it was, and nothing new is left (no output, no temporary).

Cases that need a separate process (Dask, a process limit, a file name the shell would
mangle) are plain tests below the table.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import builders as b
from bad_inputs.chatter import stderr_chatter
from PIL import Image
from typer.testing import CliRunner

from convtool.cli import app
from convtool.errors import MAX_LINE

runner = CliRunner()
SECRET = "sk-live-7f3a9c1e5b"  # planted in files; must never be printed
PREFIX = "convtool: error: "
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], list]  # the folder → the arguments after `convtool`
    exit_code: int
    needles: tuple[str, ...] = ()  # all in the error line
    absent: tuple[str, ...] = (SECRET,)  # none in it
    env: dict = field(default_factory=dict)


def grey(folder: Path, name: str = "grey.png") -> Path:
    return b.grey_png(folder, name)


def wide(folder: Path, name: str, width: int) -> Path:
    """A 2-pixel-tall grey PNG ``width`` pixels wide (cheap to filter, too wide for some)."""
    pixels = np.random.default_rng(5).integers(0, 255, (2, width), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / name)
    return folder / name


def kernel_file(name: str, data: bytes | str) -> Callable[[Path], list]:
    """``filter grey.png -k FILE -o out.png`` with ``FILE`` holding ``data``."""

    def build(folder: Path) -> list:
        path = folder / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return ["filter", grey(folder), "-k", path, "-o", folder / "out.png"]

    return build


def filter_to(dest: Callable[[Path], Path | str], *options: str) -> Callable[[Path], list]:
    def build(folder: Path) -> list:
        source = grey(folder)
        return ["filter", source, "-k", "box:3", "-o", dest(folder), *options]

    return build


def link(folder: Path, name: str, *, hard: bool = False) -> Path:
    target = folder / "grey.png"
    if not target.exists():
        grey(folder)
    (os.link if hard else os.symlink)(target if hard else "grey.png", folder / name)
    return folder / name


def match_args(*options: str, template: str = "template.png") -> Callable[[Path], list]:
    def build(folder: Path) -> list:
        scene = grey(folder, "scene.png")
        with Image.open(scene) as im:
            im.crop((2, 3, 10, 9)).save(folder / "template.png")
        resolved = [str(folder / o[1:]) if o.startswith("@") else o for o in options]
        return ["match", scene, folder / template, *resolved]

    return build


def npy_with_header(header: str) -> bytes:
    """A .npy file whose header dict is ``header`` (padded as numpy pads it)."""
    raw = header.encode("latin1")
    raw += b" " * (63 - (10 + len(raw)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw)) + raw + b"\0" * 64


def nan_tiff(folder: Path, name: str = "nan.tif") -> Path:
    values = b.noise(b.HEIGHT, b.WIDTH, dtype=np.float32)
    values[4, 5] = np.nan
    return b.tiff_of(folder, name, values)


def compare_args(*options: str) -> Callable[[Path], list]:
    def build(folder: Path) -> list:
        first, second = grey(folder), grey(folder, "second.png")
        resolved = [str(folder / o[1:]) if o.startswith("@") else o for o in options]
        return ["compare", first, second, *resolved]

    return build


OVERWRITE_CASES = [
    Case("filter-o-dot-slash", filter_to(lambda f: f / "." / "grey.png"), 2, ("grey.png", "-o")),
    Case(
        "filter-o-dot-dot",
        filter_to(lambda f: f / "sub" / ".." / "grey.png"),
        2,
        ("grey.png", "-o"),
    ),
    Case("filter-o-symlink", filter_to(lambda f: link(f, "sym.png")), 2, ("sym.png", "-o")),
    Case(
        "filter-o-hard-link",
        filter_to(lambda f: link(f, "hard.png", hard=True)),
        2,
        ("hard.png", "-o"),
    ),
    Case(
        "filter-o-the-kernel-file",
        lambda f: [
            "filter",
            grey(f),
            "-k",
            (f / "k.txt").write_text("1 2 1\n") and f / "k.txt",
            "-o",
            f / "k.txt",
        ],
        2,
        ("k.txt", "kernel file", "-o"),
    ),
    Case(
        "filter-o-the-kernel-file-through-@",
        lambda f: [
            "filter",
            grey(f),
            "-k",
            f"@{(f / 'k.txt').write_text('1 2 1') and f / 'k.txt'}@scale=!",
            "-o",
            f / "." / "k.txt",
        ],
        2,
        ("k.txt", "kernel file"),
    ),
    Case("match-o-the-scene", match_args("-o", "@scene.png"), 2, ("scene.png", "-o")),
    Case("match-o-the-template", match_args("-o", "@./template.png"), 2, ("template.png", "-o")),
    Case(
        "match-overlay-the-scene", match_args("--overlay", "@scene.png"), 2, ("--overlay", "scene")
    ),
    Case(
        "match-o-and-overlay-one-file",
        match_args("-o", "@out.png", "--overlay", "@./out.png"),
        2,
        ("--overlay", "-o", "same file"),
    ),
    Case("compare-o-an-input", compare_args("-o", "@second.png"), 2, ("second.png", "-o")),
    Case(
        "compare-o-an-input-through-dot-dot",
        compare_args("-o", "@sub/../grey.png"),
        2,
        ("grey.png", "-o"),
    ),
]

LEAK_CASES = [
    Case(
        "kernel-file-of-key-value-lines",
        kernel_file("env.txt", f"API_KEY={SECRET}\nHOME=/root\n"),
        2,
        ("env.txt", "not a number"),
        (SECRET, "API_KEY"),
    ),
    Case(
        "kernel-file-with-a-secret-after-a-good-row",
        kernel_file("k.txt", f"1 2 1\n{SECRET} 1 1\n"),
        2,
        ("k.txt", "row 2, value 1"),
        (SECRET,),
    ),
    Case(
        "shadow-file-as-a-kernel",
        kernel_file("shadow", f"root:$6${SECRET}:19000:0:99999:7:::\n"),
        2,
        ("shadow", "line 1", "not a header"),
        (SECRET, "'root'", "$6$"),
    ),
    Case(
        "environ-as-a-kernel",
        kernel_file("environ", f"PATH=/usr/bin\0API_KEY={SECRET}\0".encode()),
        2,
        ("environ", "not a text kernel file"),
        (SECRET, "API_KEY", "PATH"),
    ),
    Case(
        "secret-header-value",
        kernel_file("k.txt", f"scale: {SECRET}\n1 2 1\n"),
        2,
        ("k.txt", "scale not understood"),
    ),
    Case(
        "secret-centre",
        kernel_file("k.txt", f"origin: {SECRET}\n1 2 1\n"),
        2,
        ("k.txt", "origin", "ROW,COL"),
    ),
    Case(
        "npy-kernel-with-a-secret-header",
        kernel_file(
            "k.npy",
            npy_with_header(
                f"{{'descr': '<f8', 'fortran_order': False, 'shape': (3,), '{SECRET}': 1}}"
            ),
        ),
        2,
        ("k.npy", "not a readable .npy"),
    ),
    Case(
        "npy-image-with-a-secret-header",
        lambda f: [
            "filter",
            (f / "leak.npy").write_bytes(npy_with_header(f"{{'API_KEY': '{SECRET}'}}"))
            and f / "leak.npy",
            "-k",
            "box:3",
            "-o",
            f / "out.png",
        ],
        1,
        ("leak.npy", ".npy"),
        (SECRET, "API_KEY"),
    ),
    Case(
        "a-token-of-twenty-million-characters",
        kernel_file("big.txt", "1" * 20_000_000 + "x\n"),
        2,
        ("big.txt", "20,000,001 characters"),
        ("1" * 200,),
    ),
    Case(
        "a-huge-inline-spec",
        lambda f: ["filter", grey(f), "-k", "1 " * 50_000 + "x", "-o", f / "out.png"],
        2,
        ("above the limit of 1025",),
        ("1 " * 100,),
    ),
]

BOUND_CASES = [
    Case(
        "one-line-kernel-file-over-the-byte-cap",
        kernel_file("wide.txt", "1 " * 33_000_000),
        2,
        ("wide.txt", "larger than 32 MB"),
    ),
    Case(
        "one-line-kernel-file-under-the-byte-cap",
        kernel_file("wide.txt", "1 " * 15_000_000),
        2,
        ("wide.txt", "more than 1025 values", "1025 taps per side"),
    ),
    Case(
        "a-million-rows",
        kernel_file("tall.txt", "1\n" * 1_000_000),
        2,
        ("tall.txt", "lines; not a kernel file"),
    ),
    Case(
        "a-million-rows-in-one-line",
        kernel_file("tall.txt", "1;" * 1_000_000),
        2,
        ("tall.txt", "more than 1025 rows"),
    ),
    # patterns that backtracked without end (a 20 MB run of digits never finished)
    Case(
        "a-scale-of-a-million-digits",
        kernel_file("k.txt", "scale: 1." + "1" * 1_000_000 + "x\n1 2 1\n"),
        2,
        ("k.txt", "scale not understood"),
    ),
    Case(
        "a-row-break-with-a-million-spaces",
        kernel_file("k.txt", "[1 2]" + " " * 1_000_000 + "x\n"),
        2,
        ("k.txt", "unbalanced brackets"),
    ),
    Case(
        "an-inline-scale-of-a-hundred-thousand-digits",
        lambda f: ["filter", grey(f), "-k", "[1 2]/" + "1" * 100_000 + "x", "-o", f / "out.png"],
        2,
        ("unbalanced brackets",),
        ("1" * 100,),
    ),
    Case(
        "a-side-of-five-thousand-digits",
        kernel_file("k.mat", "9" * 5000 + " 3\n1 2 3\n"),
        2,
        ("k.mat", "5000 digits", "1025"),
    ),
    Case(
        "a-box-of-five-thousand-digits",
        lambda f: ["filter", grey(f), "-k", "box:" + "9" * 5000, "-o", f / "out.png"],
        2,
        ("box", "1 to 1025"),
    ),
    Case(
        "kernel-file-is-a-fifo",
        lambda f: [
            "filter",
            grey(f),
            "-k",
            os.mkfifo(f / "fifo.txt") or f / "fifo.txt",
            "-o",
            f / "out.png",
        ],
        2,
        ("fifo.txt", "not a regular file"),
    ),
    Case(
        "compare-a-huge-height",
        compare_args("--height", "30000", "-o", "@sheet.png"),
        1,
        ("contact sheet", "memory", "--height", "CONVTOOL_MAX_MEMORY"),
        ("--precision", "--dilation", "--iterations"),
        env={"CONVTOOL_MAX_MEMORY": "2G"},
    ),
    Case(
        "match-above-the-memory-limit",
        match_args("--json"),
        1,
        ("scene.png", "matching", "memory", "--threads"),
        ("--precision", "--dilation", "--iterations"),
        env={"CONVTOOL_MAX_MEMORY": "1M"},
    ),
]

CLEAN_LINE_CASES = [
    Case(
        "stride-of-24-digits",
        filter_to(lambda f: f / "out.png", "--stride", "1" + "0" * 23),
        2,
        ("--stride", "at most 2,147,483,647"),
    ),
    Case(
        "dilation-of-24-digits",
        filter_to(lambda f: f / "out.png", "--dilation", "1" + "0" * 23),
        2,
        ("--dilation",),
    ),
    Case(
        "threads-of-24-digits",
        filter_to(lambda f: f / "out.png", "--threads", "1" + "0" * 23),
        2,
        ("--threads", "1024"),
    ),
    Case(
        "match-threads-of-24-digits",
        match_args("--json", "--threads", "1" + "0" * 23),
        2,
        ("threads", "1,024"),
    ),
    Case(
        "pool-stride-of-24-digits",
        lambda f: ["filter", grey(f), "-k", f"maxpool:2,stride=1{'0' * 23}", "-o", f / "out.png"],
        2,
        ("maxpool", "stride", "from 1 to"),
    ),
    Case(
        "output-name-over-255-bytes",
        filter_to(lambda f: f / ("a" * 300 + ".png")),
        2,
        ("304 bytes", "255", "-o"),
    ),
    Case(
        "match-overlay-name-over-255-bytes",
        match_args("--overlay", "@" + "é" * 200 + ".png"),
        2,
        ("404 bytes", "--overlay"),
    ),
    Case(
        "gif-wider-than-65535",
        lambda f: ["filter", wide(f, "wide.png", 70_000), "-k", "box:3", "-o", f / "w.gif"],
        2,
        ("w.gif", "70000×2", "GIF holds at most 65,535"),
    ),
    Case(
        "jpeg-wider-than-65500",
        lambda f: ["filter", wide(f, "wide.png", 65_600), "-k", "box:3", "-o", f / "w.jpg"],
        2,
        ("w.jpg", "JPEG holds at most 65,500"),
        (SECRET, "Maximum supported image dimension"),
    ),
    Case(
        "webp-wider-than-16383",
        lambda f: ["filter", wide(f, "wide.png", 17_000), "-k", "box:3", "-o", f / "w.webp"],
        2,
        ("w.webp", "16,383"),
    ),
    Case(
        "match-score-map-too-wide-for-gif",
        lambda f: [
            "match",
            wide(f, "wide.png", 70_000),
            wide(f, "t.png", 2),
            "-o",
            f / "scores.gif",
        ],
        2,
        ("scores.gif", "GIF"),
    ),
    Case(
        "compare-sheet-too-wide-for-jpeg",
        lambda f: ["compare", wide(f, "a.png", 20_000), "--height", "8", "-o", f / "sheet.jpg"],
        2,
        ("sheet.jpg", "JPEG"),
    ),
    Case(
        "match-scene-with-nan",
        lambda f: ["match", nan_tiff(f), grey(f, "t.png"), "--json"],
        1,
        ("nan.tif", "NaN", "replace them"),
    ),
    Case(
        "compare-image-with-nan",
        lambda f: ["compare", grey(f), nan_tiff(f), "-o", f / "sheet.png"],
        1,
        ("nan.tif", "NaN"),
    ),
]

ESCAPE = "\x1b[2J\x07"  # clear the screen, ring the bell

TERMINAL_CASES = [
    Case(
        "missing-input-with-control-characters",
        lambda f: ["filter", f / f"a{ESCAPE}.png", "-k", "box:3", "-o", f / "out.png"],
        1,
        ("a\\x1b[2J\\x07.png", "no such file"),
        ("\x1b", "\x07"),
    ),
    Case(
        "kernel-file-name-with-a-newline",
        kernel_file("bad\nname.txt", "1 x 1\n"),
        2,
        ("bad\\nname.txt", "'x' is not a number"),
        ("\n",),
    ),
    Case(
        "bidi-override-in-an-output-name",
        filter_to(lambda f: f / "x\u202egnp.exe"),
        2,
        ("\\u202e",),
        ("\u202e",),
    ),
]

CASES = OVERWRITE_CASES + LEAK_CASES + BOUND_CASES + CLEAN_LINE_CASES + TERMINAL_CASES


def test_the_corpus_covers_every_command_and_has_unique_ids():
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.id.split("-")[0] for c in OVERWRITE_CASES} == {"filter", "match", "compare"}


def snapshot(root: Path) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    for folder, folders, files in os.walk(root):
        for name in folders:
            found[os.path.relpath(os.path.join(folder, name), root)] = None
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path) or not os.path.isfile(path):
                found[os.path.relpath(path, root)] = None
            else:
                found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, monkeypatch):
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "sub").mkdir()
    args = [str(a) for a in case.build(tmp_path)]
    before = snapshot(tmp_path)
    with stderr_chatter() as chatter:  # warnings, log records, C libraries' own output
        result = runner.invoke(app, args)
    lines = [line for line in result.stderr.splitlines() if line.strip()] + chatter
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == case.exit_code, lines
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(PREFIX) and "Traceback" not in line
    assert len(line) <= len(PREFIX) + MAX_LINE
    assert line.isprintable()
    assert [n for n in case.needles if n not in line] == [], line
    assert [a for a in case.absent if a in line] == [], line
    assert snapshot(tmp_path) == before  # nothing written, nothing overwritten, no temp file


# ------------------------------------------------------------------ memory in proportion


def test_a_huge_stride_allocates_nothing_in_proportion_to_it():
    """--stride 3000000 on 512x512 asked for 2.9 GB (a Toeplitz block of absent outputs)."""
    import tracemalloc

    from convtool import engine
    from convtool.pipeline import memory

    x = np.random.default_rng(1).random((3, 512, 512), dtype=np.float32)
    for kernel in (np.full((3, 3), 1 / 9), np.arange(9.0).reshape(3, 3)):
        tracemalloc.start()
        out = engine.convolve(x, kernel, stride=3_000_000, threads=2)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert out.shape == (3, 1, 1)
        assert peak < 16 << 20
        estimate = memory.engine_peak_bytes(3, 512, 512, (3, 3), stride=3_000_000, threads=2)
        assert peak <= estimate + (256 << 10)


def test_a_huge_stride_gives_scipys_first_pixel():
    from scipy import ndimage

    from convtool import engine

    x = np.random.default_rng(2).random((40, 50))
    kernel = np.arange(1.0, 10.0).reshape(3, 3)
    expected = ndimage.convolve(x, kernel, mode="mirror")[::3_000_000, ::3_000_000]
    np.testing.assert_allclose(engine.convolve(x, kernel, stride=3_000_000), expected)


# ------------------------------------------------------------------ names on the terminal


def test_a_batch_prints_every_name_escaped_on_one_line_each(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    names = [f"a{ESCAPE}.png", "new\nline.png", "fine.png"]
    for name in names:
        grey(folder, name)
    (folder / "bad\x1bname.png").write_bytes(b"not a png")
    result = runner.invoke(app, ["filter", str(folder), "-o", str(tmp_path / "out"), "-k", "box"])
    lines = result.stderr.splitlines()
    assert result.exit_code == 1
    assert len(lines) == 4 + 1 + 1  # one line per file, the summary, its failed file
    assert all(line.isprintable() for line in lines)
    assert any("a\\x1b[2J\\x07.png" in line for line in lines)
    assert any("new\\nline.png" in line for line in lines)
    assert sum("bad\\x1bname.png" in line for line in lines) == 2
    assert sorted(os.listdir(tmp_path / "out")) == sorted(names)


def test_kernels_show_escapes_a_file_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / f"k{ESCAPE}.txt").write_text("1 2 1\n")
    result = runner.invoke(app, ["kernels", "show", f"k{ESCAPE}.txt"])
    assert result.exit_code == 0
    assert "k\\x1b[2J\\x07.txt" in result.stdout
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


def test_an_environment_read_as_a_kernel_shows_none_of_it(tmp_path):
    environ = Path("/proc/self/environ")
    if not environ.exists():
        pytest.skip("no /proc/self/environ on this system")
    env = {**os.environ, "CONVTOOL_TEST_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    grey(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "convtool", "filter", "grey.png", "-k", "@/proc/self/environ"]
        + ["-o", "out.png"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "not a text kernel file" in done.stderr
    assert SECRET not in done.stderr and "PYTHONPATH" not in done.stderr


# ------------------------------------------------------------------------------- Dask


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def run_cli(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convtool", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize(
    ("address", "code", "needle"),
    [
        ("", 2, "--dask is empty"),
        ("foo://bar", 2, "unknown scheme 'foo'"),
        ("tcp://h:notaport", 2, "the port must be a number"),
        ("tcp://127.0.0.1:99999", 2, "from 1 to 65535"),
        ("tls://127.0.0.1:1", 2, "TLS certificates"),
        ("tcp://127.0.0.1:{closed}", 1, "connection refused"),
        ("tcp://no-such-host.invalid:8786", 1, "unknown host"),
    ],
)
def test_a_bad_dask_scheduler_is_one_line(tmp_path, address, code, needle):
    pytest.importorskip("distributed")
    grey(tmp_path, "a.png"), grey(tmp_path, "b.png")
    address = address.format(closed=closed_port())
    done = run_cli(
        ["filter", "a.png", "b.png", "-k", "box", "-o", "out", "--dask", address], tmp_path
    )
    assert done.returncode == code, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), lines
    assert needle in lines[0]
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


# ------------------------------------------------------------------- worker processes


def test_workers_that_cannot_be_forked_give_one_line(tmp_path, monkeypatch):
    """As under a process limit (ulimit -u): fork fails with EAGAIN."""
    import concurrent.futures

    from convtool import batch
    from convtool.errors import ConvtoolError
    from convtool.pipeline import Chain, parse_steps

    def refuse(self, *args, **kwargs):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(concurrent.futures.ProcessPoolExecutor, "submit", refuse)
    for name in ("a.png", "b.png", "c.png"):
        grey(tmp_path, name)
    plan = batch.plan([str(tmp_path / n) for n in ("a.png", "b.png", "c.png")], str(tmp_path / "o"))
    settings = batch.Settings(chain=Chain(steps=parse_steps(["box"])))
    with pytest.raises(ConvtoolError, match="cannot start 3 worker processes.*-j 1"):
        list(batch.run(plan.jobs, settings, workers=3))


def run_as_nobody_with(nproc: int, args: list[str], folder: Path):
    """Run the CLI as an unprivileged user under ``prlimit --nproc``, or skip."""
    prlimit, setpriv = shutil.which("prlimit"), shutil.which("setpriv")
    if prlimit is None:
        pytest.skip("needs prlimit")
    prefix = [prlimit, f"--nproc={nproc}"]
    if os.geteuid() == 0:  # root is not held to RLIMIT_NPROC: drop to nobody
        if setpriv is None:
            pytest.skip("needs setpriv to drop root")
        prefix += [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    # OpenBLAS starts a thread per core when numpy is imported (and fails loudly under the
    # limit): one thread, as its own message advises, so that the limit is met by convtool.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import numpy"], capture_output=True, cwd=folder, env=env
    )
    if probe.returncode != 0:
        pytest.skip("python cannot run as an unprivileged user here")
    return subprocess.run(
        [*prefix, sys.executable, "-m", "convtool", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_process_limit_gives_one_line_not_a_traceback():
    folder = Path(tempfile.mkdtemp(prefix="convtool-nproc-"))
    try:
        os.chmod(folder, 0o777)
        for name in ("a.png", "b.png", "c.png"):
            os.chmod(grey(folder, name), 0o644)
        big = np.random.default_rng(3).integers(0, 255, (600, 600), dtype=np.uint8)
        Image.fromarray(big).save(folder / "big.png")  # several bands: a thread pool
        os.chmod(folder / "big.png", 0o644)
        done = run_as_nobody_with(2, ["filter", "a.png", "b.png", "c.png", "-k", "box"]
                                  + ["-j", "3", "-o", "out"], folder)  # fmt: skip
        lines = done.stderr.splitlines()
        assert done.returncode == 1, done.stderr
        assert len(lines) == 1 and "cannot start 3 worker processes" in lines[0], done.stderr
        alone = run_as_nobody_with(
            2, ["filter", "big.png", "-k", "[1 2 3; 4 5 6; 7 8 9]", "-o", "x.png"], folder
        )
        assert alone.returncode == 0 and alone.stderr == ""  # the bands run without threads
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------- batches and helpers


def test_a_batch_output_name_too_long_fails_that_file_only(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    grey(folder, "b" * 245 + ".png")  # 249 bytes: with the suffix, 257
    grey(folder, "short.png")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["filter", str(folder), "-o", str(out), "-k", "box", "--suffix", "-blurred"]
    )
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert "1 done, 0 skipped, 1 failed" in lines[-2]
    assert "257 bytes" in lines[-1] and "--suffix" in lines[-1]
    assert os.listdir(out) == ["short-blurred.png"]


def test_a_batch_never_overwrites_its_kernel_file(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir(), out.mkdir()
    np.save(folder / "k.npy", b.noise(b.HEIGHT, b.WIDTH))  # an image named like the kernel
    np.save(out / "k.npy", np.ones((3, 3)) / 9)  # the kernel, where that output would go
    kernel = (out / "k.npy").read_bytes()
    result = runner.invoke(app, ["filter", str(folder), "-o", str(out), "-k", str(out / "k.npy")])
    assert result.exit_code == 2
    assert "k.npy" in result.stderr and "choose another -o" in result.stderr
    assert (out / "k.npy").read_bytes() == kernel


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain é.png", "plain é.png"),
        ("a\x1b[2J\x07b", "a\\x1b[2J\\x07b"),
        ("two\nlines\r\tend", "two\\nlines\\r\\tend"),
        ("x\u202egnp.exe", "x\\u202egnp.exe"),  # a right-to-left override
        ("raw\udcffbyte", "raw\\xffbyte"),  # os.fsdecode of the byte 0xff
        ("\u00a0\u200b\U000e0041", "\\xa0\\u200b\\U000e0041"),
    ],
)
def test_printable_escapes_what_a_terminal_acts_on(text, shown):
    from convtool.errors import printable

    assert printable(text) == shown


def test_one_line_caps_a_huge_message_keeping_both_ends():
    from convtool.errors import excerpt, one_line

    line = one_line("start: " + "x" * 50_000_000 + "\n: what to do")
    assert len(line) <= MAX_LINE and line.isprintable()
    assert line.startswith("start: xxx") and line.endswith("\\n: what to do")
    assert excerpt("y" * 100) == repr("y" * 40 + "…")


def test_the_output_check_survives_a_folder_swapped_while_it_looks(tmp_path, monkeypatch):
    """realpath raises (EINVAL, ENOENT) when a link on the way is replaced as it is read."""
    from convtool.images import outputs

    def swapped(path, *args, **kwargs):
        raise OSError(22, "Invalid argument", str(path))

    monkeypatch.setattr(os.path, "realpath", swapped)
    outputs.check_not_inputs([("-o", str(tmp_path / "sub" / "out.png"))], [str(grey(tmp_path))])

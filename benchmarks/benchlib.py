"""What every section of the benchmark shares: timing, child processes, programs, test images,
memory readings, machine facts and Markdown tables.

Nothing here knows about convtool: the sections and the peers they compare live in
``library.py`` and ``commands.py``.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """Median wall time of ``runs`` timed runs, in seconds."""

    seconds: float
    runs: int

    def rate(self, amount: float) -> float:
        """``amount`` per second (Mpix/s when given megapixels)."""
        return amount / self.seconds


def measure(
    fn: Callable[[], object],
    *,
    repeats: int,
    budget: float,
    warmup: bool = True,
    setup: Callable[[], object] | None = None,
) -> Timing:
    """Time ``fn()`` with ``time.perf_counter``: a warm-up, then the median of the timed runs.

    Runs stop at ``repeats`` or once ``budget`` seconds have been spent on timed runs, so a
    slow peer is run once or twice rather than holding up the whole benchmark (at least one
    timed run always). A warm-up that alone exceeds the budget is taken as the one timing:
    warming matters for short runs, not for one that takes many seconds. ``setup()`` runs
    before each run, outside the timing (e.g. emptying an output folder).
    """
    times: list[float] = []
    if warmup:
        if setup:
            setup()
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        if elapsed >= budget > 0:
            return Timing(elapsed, 1)
    while len(times) < repeats and not (times and sum(times) >= budget):
        if setup:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), len(times))


def alternated(
    fns: dict[str, Callable[[], object]], *, rounds: int, budget: float
) -> dict[str, Timing]:
    """Time several warm calls in turn: each round runs every one once, the order rotated
    round by round; the median of each. A load that comes and goes on a shared machine then
    weighs on all of them alike, which timing one after the other cannot promise: their
    ratio is what this is for. Stops after ``rounds`` or once ``budget`` seconds were spent
    (at least three rounds)."""
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    spent = 0.0
    for done in range(rounds):
        if done >= 3 and spent >= budget:
            break
        for k in range(len(names)):
            name = names[(done + k) % len(names)]
            start = time.perf_counter()
            fns[name]()
            elapsed = time.perf_counter() - start
            times[name].append(elapsed)
            spent += elapsed
    return {name: Timing(statistics.median(t), len(t)) for name, t in times.items()}


# ----------------------------------------------------------------------------- child processes


class CommandFailed(RuntimeError):
    """A command exited non-zero; the message is the last line of its stderr."""


@dataclass(frozen=True)
class ChildRun:
    """One finished child process: wall time, peak resident memory (bytes), stdout text."""

    seconds: float
    max_rss: int
    stdout: str


# Runs argv[2:], timing it and reading its peak RSS from wait4, and writes "seconds maxrss"
# (bytes) to the file argv[1]; exits with the command's status. Started by run_child when
# the command's own memory is wanted: Linux starts a child's peak RSS from what its parent
# held when it forked (kept across exec), so a command forked by the benchmark process, which
# may hold gigabytes, reports at least that; forked by this small process, it reports its own.
_LAUNCHER = """\
import os, sys, time
start = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as report:
    report.write(f"{seconds} {usage.ru_maxrss * 1024}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_child(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    own_memory: bool = False,
) -> ChildRun:
    """Run ``cmd`` (a list, never through a shell) and return its time and its own peak RSS.

    ``os.wait4`` reports the rusage of that one child, unlike ``RUSAGE_CHILDREN`` which keeps
    the maximum over every child ever waited for; but on Linux a child's peak starts from
    what the benchmark process held when it forked it. ``own_memory``: the command is
    started by a small launcher process instead (:data:`_LAUNCHER`), which times it and
    reads its peak, so that the figure is the command's own (its time excludes the
    launcher's start-up). Raises :class:`CommandFailed` on a non-zero exit.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        report = None
        argv = list(cmd)
        if own_memory:
            fd, report = tempfile.mkstemp(prefix="bench-child-")
            os.close(fd)
            argv = [sys.executable, "-S", "-c", _LAUNCHER, report, *argv]
        try:
            start = time.perf_counter()
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd
            )
            _, status, usage = os.wait4(proc.pid, 0)
            seconds, peak = time.perf_counter() - start, usage.ru_maxrss * 1024  # (KiB on Linux)
            proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
            if report is not None and proc.returncode == 0:
                reported = Path(report).read_text().split()
                seconds, peak = float(reported[0]), int(reported[1])
        finally:
            if report is not None:
                os.unlink(report)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        last = stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise CommandFailed(last[0])
    return ChildRun(seconds, peak, stdout)


def short_command(cmd: Sequence[str], limit: int = 110) -> str:
    """The command line as a person would type it, long file lists elided."""
    parts = [Path(p).name if os.sep in p and Path(p).is_absolute() else p for p in cmd]
    text = " ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def find_program(*names: str) -> str | None:
    """The first real executable among ``names`` on PATH, skipping script stand-ins.

    A wrapper script on PATH (this machine has a Python stand-in for ``convert``) would add
    an interpreter's start-up to every timing, so only ELF binaries count.
    """
    for name in names:
        for folder in os.environ.get("PATH", "").split(os.pathsep):
            candidate = Path(folder, name)
            if candidate.is_file() and os.access(candidate, os.X_OK) and _is_elf(candidate):
                return str(candidate)
    return None


def _is_elf(path: Path) -> bool:
    with open(path.resolve(), "rb") as f:
        return f.read(4) == b"\x7fELF"


def program_version(cmd: Sequence[str]) -> str:
    """First line of a program's version output, or ``not installed``."""
    if cmd[0] is None:
        return "not installed"
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    except OSError:
        return "not installed"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


# ----------------------------------------------------------------------------- memory


def peak_extra_bytes(fn: Callable[[], object]) -> int:
    """Peak resident memory ``fn()`` adds on top of the process as it stands (Linux only).

    Writing 5 to /proc/self/clear_refs resets VmHWM to the current RSS, so the peak read
    after the call belongs to the call alone (its result included). Freed heap memory is
    handed back first (malloc_trim), or the call could reuse it unseen; run the process with
    :data:`MALLOC_ENV` so large arrays are mapped and unmapped rather than kept in the heap.
    """
    _malloc_trim()
    before = _status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    fn()
    return max(0, _status_bytes("VmHWM") - before)


# glibc raises its mmap threshold as large blocks are freed, after which arrays come from
# the heap and freed ones stay resident; a fixed threshold keeps every array its own mapping.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 17)}


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to hand back


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes, or None where there is no such file."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ----------------------------------------------------------------------------- test images


def photo_like(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A synthetic 8-bit photo: smooth gradients, soft shapes and sensor-like noise.

    Shape ``(H, W, C)``, or ``(H, W)`` for one channel. Real photos are smooth regions with
    edges and noise; so is this, which keeps PNG sizes and filter outputs realistic.
    """
    rng = np.random.default_rng(seed)
    yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    xx = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    a, b, c = (rng.uniform(-80, 80, channels).astype(np.float32) for _ in range(3))
    phase = rng.uniform(0, 2 * np.pi, channels).astype(np.float32)
    img = 128 + a * yy + b * xx + c * 0.5 * np.sin(6 * xx + 4 * yy + phase)
    for _ in range(24):
        _paint_shape(img, rng)
    img += rng.standard_normal(img.shape, dtype=np.float32) * 6
    out = np.clip(img, 0, 255).round().astype(np.uint8)
    return out[..., 0] if channels == 1 else out


def _paint_shape(img: np.ndarray, rng: np.random.Generator) -> None:
    """Blend one disc or rectangle of a random colour into ``img``, within its bounding box."""
    h, w, channels = img.shape
    radius = int(rng.uniform(0.03, 0.2) * min(h, w)) + 1
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    y0, y1 = max(cy - radius, 0), min(cy + radius, h)
    x0, x1 = max(cx - radius, 0), min(cx + radius, w)
    colour = rng.uniform(0, 255, channels).astype(np.float32)
    yy, xx = np.ogrid[y0:y1, x0:x1]
    if rng.random() < 0.5:
        inside = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2)[..., None]
    else:
        inside = np.ones((y1 - y0, x1 - x0, 1), dtype=bool)
    region = img[y0:y1, x0:x1]
    region[...] = np.where(inside, 0.3 * region + 0.7 * colour, region)


def save_png(path: Path, pixels: np.ndarray, compress_level: int = 1) -> None:
    """Write an 8-bit array as PNG with Pillow (fast compression: these are inputs only)."""
    from PIL import Image

    Image.fromarray(pixels).save(path, compress_level=compress_level)


def load_png(path: Path) -> np.ndarray:
    """Read an image file as an int32 array (signed, so differences cannot wrap).

    16-bit colour keeps its 16 bits through OpenCV where it is installed (Pillow keeps 8).
    """
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if pixels is not None:
            if pixels.ndim == 3:
                pixels = pixels[:, :, 2::-1] if pixels.shape[2] == 3 else pixels
            return pixels.astype(np.int32)
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im, dtype=np.int32)


# ----------------------------------------------------------------------------- machine


def machine_facts(extra_versions: dict[str, str]) -> list[tuple[str, str]]:
    """What a reader needs to compare these figures with their own: CPU, memory, versions."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        total = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        memory = f"{int(total) / 2**20:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    threads_env = {
        k: os.environ[k]
        for k in sorted(os.environ)
        if k.endswith("_NUM_THREADS")
        or k in ("OMP_THREAD_LIMIT", "VIPS_CONCURRENCY", "MAGICK_THREAD_LIMIT")
    }
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts = [
        ("CPUs (nproc)", str(cpus)),
        ("CPU model", cpu),
        ("memory", memory),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        *extra_versions.items(),
        (
            "thread env vars (OPENBLAS_NUM_THREADS etc.)",
            ", ".join(f"{k}={v}" for k, v in threads_env.items()) or "none set",
        ),
        ("load average at the start (1, 5, 15 min)", load_average()),
    ]
    return facts


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def module_version(name: str) -> str:
    """``__version__`` of an importable module, or ``not installed``."""
    try:
        module = __import__(name)
    except ImportError:
        return "not installed"
    return str(getattr(module, "__version__", "unknown"))


# ----------------------------------------------------------------------------- report


@dataclass
class Table:
    """A Markdown table: a caption line, column headers and rows of already-formatted cells."""

    caption: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [self.caption, ""] if self.caption else []
        lines.append(_table_row(self.headers))
        lines.append("| " + " | ".join("---" for _ in self.headers) + " |")
        lines += [_table_row(row) for row in self.rows]
        return "\n".join(lines)


def _table_row(cells: list[str]) -> str:
    # A bare | inside a cell (an error message, say) would start a new column.
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


@dataclass(frozen=True)
class Goal:
    """One target from the issues: what it asks, what was measured, whether it is met."""

    text: str
    measured: str
    met: bool | None  # None: could not be measured (peer missing, run failed)


def goals_table(goals: list[Goal], caption: str = "Goals.") -> Table:
    return Table(
        caption,
        ["goal", "measured", "met?"],
        [[g.text, g.measured, goal_cell(g.met)] for g in goals],
    )


@dataclass
class Section:
    """One numbered part of BENCHMARKS.md: tables, notes, and the goals it checked."""

    title: str = ""
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)  # also gathered at the top of the report
    seconds: float | None = None  # how long the section took to run

    def markdown(self) -> str:
        parts = [f"## {self.title}"]
        parts += [t.markdown() for t in self.tables]
        notes = self.notes + (
            [] if self.seconds is None else [f"This section took {self.seconds:.0f} s."]
        )
        if notes:
            parts.append("Notes:\n\n" + "\n".join(f"- {n}" for n in notes))
        return "\n\n".join(parts)


def goal_cell(met: bool | None) -> str:
    """``yes`` / ``**no**`` / ``n/a`` for a "goal met?" column."""
    return "n/a" if met is None else ("yes" if met else "**no**")


def fmt(value: float | None, digits: int = 3) -> str:
    """A number to ``digits`` significant figures, ``—`` when missing."""
    if value is None or not np.isfinite(value):
        return "—"
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def empty_dir(path: Path) -> None:
    """Remove ``path`` with its content and create it again, empty."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)

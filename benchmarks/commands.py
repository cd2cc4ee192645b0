"""Sections that time whole command lines: single images (2) and folders of images (4).

Every tool writes PNG at zlib level 1 and applies the same weights, and each output is
compared with convtool's, so the times are for the same work.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from benchlib import (
    CommandFailed,
    Goal,
    Section,
    Table,
    Timing,
    alternated,
    empty_dir,
    fmt,
    goals_table,
    load_png,
    measure,
    photo_like,
    ratio,
    run_child,
    save_png,
    short_command,
)
from peers import rank1_factors
from runconfig import Config, Tools, gaussian_1d, log

# ============================================================================= section 2


def write_vips_mask(path: Path, weights: np.ndarray, scale: float = 1.0) -> Path:
    """A libvips .mat file: ``width height scale offset``, then the rows."""
    h, w = weights.shape
    rows = "\n".join(" ".join(f"{v:.10g}" for v in row) for row in weights)
    path.write_text(f"{w} {h} {scale:g} 0\n{rows}\n")
    return path


@dataclass(frozen=True)
class CliKernel:
    """One kernel as each command line tool spells it (vips mask: integer weights and scale)."""

    label: str
    spec: str  # convtool
    magick: list[str]
    mask: np.ndarray  # correlation weights, as convtool applies ``spec`` (true convolution)
    mask_scale: float
    factor: np.ndarray | None = None  # 1-D mask for vips convsep (applied along both axes)
    factor_scale: float = 1.0
    gaussblur_sigma: float | None = None


def cli_kernels() -> list[CliKernel]:
    binomial, gauss = np.array([1, 4, 6, 4, 1]), gaussian_1d(5, 31)
    scale = ["-define", "convolve:scale=!"]
    return [
        CliKernel(
            "binomial 5×5",
            "binomial:5",
            scale + ["-morphology", "Convolve", "Binomial:2"],
            np.outer(binomial, binomial),
            256,
            factor=binomial,
            factor_scale=16,
        ),
        # sobel-x under true convolution is correlation with [-1 0 1] rows: positive where
        # intensity rises to the right, as ImageMagick's Convolve Sobel.
        CliKernel(
            "Sobel x 3×3",
            "sobel-x",
            ["-morphology", "Convolve", "Sobel"],
            np.outer([1, 2, 1], [-1, 0, 1]),
            1,
        ),
        CliKernel(
            "Gaussian σ=5 31×31",
            "gaussian:sigma=5,size=31",
            scale + ["-morphology", "Convolve", "Gaussian:15x5"],
            np.outer(gauss, gauss),
            1,
            factor=gauss,
            gaussblur_sigma=5,
        ),
    ]


# All writers at zlib level 1, convtool's default, so encoding costs the same everywhere.
MAGICK_PNG = ["-define", "png:compression-level=1"]
VIPS_PNG = "[compression=1]"


# The five-line OpenCV script a user would write: read, filter, write at zlib level 1.
OPENCV_SCRIPT = """\
import sys, cv2, numpy as np
image = cv2.imread(sys.argv[1], cv2.IMREAD_UNCHANGED)
k = [np.load(p).astype(np.float32) for p in sys.argv[3:]]  # [kernel] or [column, row]
out = cv2.sepFilter2D(image, -1, k[1], k[0], borderType=cv2.BORDER_REFLECT_101) if len(k) == 2 else cv2.filter2D(image, -1, k[0], borderType=cv2.BORDER_REFLECT_101)
cv2.imwrite(sys.argv[2], out, [cv2.IMWRITE_PNG_COMPRESSION, 1])
"""


def opencv_command(kernel: CliKernel, src: Path, work: Path, dest: Path) -> list[str] | None:
    """The OpenCV script's command for *kernel* (correlation weights, as OpenCV applies
    them; sepFilter2D with the factors where the kernel has them), or None without cv2."""
    if importlib.util.find_spec("cv2") is None:
        return None
    script = work / "opencv_filter.py"
    script.write_text(OPENCV_SCRIPT)
    name = kernel.spec.split(":")[0]
    factors = rank1_factors(kernel.mask / kernel.mask_scale)
    arrays = [kernel.mask / kernel.mask_scale] if factors is None else list(factors)
    paths = []
    for index, array in enumerate(arrays):
        path = work / f"cv-{name}-{index}.npy"
        np.save(path, np.asarray(array, dtype=np.float64).reshape(-1) if factors else array)
        paths.append(str(path))
    return [sys.executable, str(script), str(src), str(dest), *paths]


def cli_commands(
    kernel: CliKernel, tools: Tools, src: Path, work: Path, magick: bool = True
) -> list[tuple[str, list[str], Path]]:
    """(tool label, command, output path) for every tool that can apply ``kernel``.

    ``magick``: ImageMagick too (it takes tens of seconds on the large Gaussian).
    """
    out = work / "out"
    commands = [
        (
            "convtool",
            tools.convtool
            + ["filter", str(src), "-k", kernel.spec, "-o", str(out / "convtool.png")],
            out / "convtool.png",
        )
    ]
    if tools.convert and magick:
        commands.append(
            (
                "ImageMagick convert",
                tools.convert + [str(src)] + kernel.magick + MAGICK_PNG + [str(out / "magick.png")],
                out / "magick.png",
            )
        )
    if tools.vips:
        integer = np.array_equal(kernel.mask, np.round(kernel.mask))
        precision = ["--precision", "integer" if integer else "float"]
        mat = write_vips_mask(
            work / f"mask-{kernel.spec.split(':')[0]}.mat", kernel.mask, kernel.mask_scale
        )
        commands.append(
            (
                "vips conv",
                [tools.vips, "conv", str(src), f"{out / 'conv.png'}{VIPS_PNG}", str(mat)]
                + precision,
                out / "conv.png",
            )
        )
        if kernel.factor is not None:
            mat1 = write_vips_mask(
                work / f"sep-{kernel.spec.split(':')[0]}.mat",
                kernel.factor[None, :],
                kernel.factor_scale,
            )
            commands.append(
                (
                    "vips convsep",
                    [tools.vips, "convsep", str(src), f"{out / 'convsep.png'}{VIPS_PNG}", str(mat1)]
                    + precision,
                    out / "convsep.png",
                )
            )
        if kernel.gaussblur_sigma:
            # min-ampl 0.011 makes libvips' kernel 31 wide, as the others (default 0.2: 19).
            commands.append(
                (
                    "vips gaussblur",
                    [
                        tools.vips,
                        "gaussblur",
                        str(src),
                        f"{out / 'gaussblur.png'}{VIPS_PNG}",
                        str(kernel.gaussblur_sigma),
                        "--min-ampl",
                        "0.011",
                    ],
                    out / "gaussblur.png",
                )
            )
    script = opencv_command(kernel, src, work, out / "opencv.png")
    if script:
        commands.append(("OpenCV script", script, out / "opencv.png"))
    return commands


@dataclass(frozen=True)
class CliInput:
    """One input file of section 2, and which peers run on it."""

    label: str
    path: Path
    magick: str = "all"  # "all" kernels, "binomial" only (ImageMagick is slow), or "none"


def cli_inputs(cfg: Config, work: Path) -> list[CliInput]:
    """The section's inputs: RGB PNG and JPEG (quality 90), 8-bit grey PNG, 16-bit RGB PNG."""
    from PIL import Image

    width, height = cfg.cli_size
    rgb = photo_like(height, width, channels=3, seed=2)
    save_png(work / "rgb.png", rgb)
    Image.fromarray(rgb).save(work / "rgb.jpg", quality=90)
    grey_w, grey_h = cfg.grey_size
    save_png(work / "grey.png", photo_like(grey_h, grey_w, channels=1, seed=3))
    # 16 bits: the 8-bit photo scaled up with low bits of noise, written by OpenCV (Pillow
    # cannot write 16-bit colour), or by convtool where OpenCV is missing
    deep = rgb.astype(np.uint16) * 257 + np.random.default_rng(4).integers(
        0, 256, rgb.shape, dtype=np.uint16
    )
    save_png16(work / "rgb16.png", deep)
    return [
        CliInput(f"{width}×{height} RGB 8-bit PNG", work / "rgb.png"),
        CliInput(f"{width}×{height} RGB JPEG (quality 90)", work / "rgb.jpg", "binomial"),
        CliInput(f"{grey_w}×{grey_h} grey 8-bit PNG", work / "grey.png", "binomial"),
        CliInput(f"{width}×{height} RGB 16-bit PNG", work / "rgb16.png", "none"),
    ]


def save_png16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit RGB PNG at zlib level 1."""
    try:
        import cv2
    except ImportError:
        from convtool.images import Image, write_image

        write_image(path, Image(pixels.astype(np.float32), depth=16))
        return
    cv2.imwrite(str(path), pixels[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])


def section_cli(cfg: Config, tools: Tools) -> Section:
    """Wall time of whole command lines on four kinds of input, stage by stage, start-up."""
    work = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    headers = ["kernel", "tool", "seconds", "runs", "× convtool time", "output MB",
               "max abs. Δ vs convtool (interior, levels)", "command"]  # fmt: skip
    tables, seconds, duels = [], {}, {}
    try:
        (work / "out").mkdir()
        inputs = cli_inputs(cfg, work)
        for index, item in enumerate(inputs):
            table = Table(
                f"Median wall time per command on a {item.label} (lower is better).", headers
            )
            for kernel in cli_kernels():
                magick = item.magick == "all" or (
                    item.magick == "binomial" and kernel.spec.startswith("binomial")
                )
                commands = cli_commands(kernel, tools, item.path, work, magick=magick)
                label = kernel.label
                seconds[item.label, label] = _time_commands(commands, tools, cfg, table, label)
                for tool in GOAL_PEERS.get((index, kernel.spec), ()):
                    duels[item.label, label, tool] = _head_to_head(commands, tool, tools, cfg)
            tables.append(table)
        stages = _stage_times(cfg, tools, inputs[0].path)
        startup = _startup_times(cfg, tools)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    png, jpeg = inputs[0].label, inputs[1].label
    binomial, sobel, gauss = (k.label for k in cli_kernels())

    def peer(kind: str, kernel: str, tool: str) -> tuple[float | None, float | None]:
        if (kind, kernel, tool) in duels:  # (the two run in turns)
            return duels[kind, kernel, tool]
        times = seconds.get((kind, kernel), {})
        return times.get(tool), times.get("convtool")

    goals = []
    for kind, kernel in ((png, binomial), (png, sobel), (jpeg, binomial), (jpeg, sobel)):
        theirs, ours = peer(kind, kernel, "vips conv")
        short = kind.split(" (")[0]
        goals.append(
            Goal(
                f"{short}, {kernel}: convtool ≤ 0.8× the time of `vips conv` (theirs ÷ ours ≥ 1.25)",
                _peer_ratio_text(theirs, ours, tools.vips),
                _at_least(ratio(theirs, ours), 1.25),
            )
        )
    for kernel in (binomial, sobel):
        theirs, ours = peer(png, kernel, "OpenCV script")
        goals.append(
            Goal(
                f"{png.split(' (')[0]}, {kernel}: convtool faster than the OpenCV script",
                _peer_ratio_text(theirs, ours, theirs is not None or None),
                _at_least(ratio(theirs, ours), 1.0),
            )
        )
    theirs, ours = peer(png, gauss, "vips gaussblur")
    goals.append(
        Goal(
            f"{gauss}: convtool ≤ 1.0× the time of `vips gaussblur`",
            _peer_ratio_text(theirs, ours, tools.vips),
            _at_least(ratio(theirs, ours), 1.0),
        )
    )
    theirs, ours = peer(png, binomial, "ImageMagick convert")
    goals.append(
        Goal(
            f"{binomial}: convtool ≥ 3× faster than ImageMagick (their time ÷ ours)",
            _peer_ratio_text(theirs, ours, tools.convert),
            _at_least(ratio(theirs, ours), 3.0),
        )
    )
    goals.append(
        Goal(
            '`convtool --version` within 1.5× of `python -c "import typer"`',
            f"{fmt(startup.ratio)}× ({fmt(startup.ours * 1000)} ms vs "
            f"{fmt(startup.typer * 1000)} ms)"
            if startup.ratio
            else startup.error,
            None if startup.ratio is None else startup.ratio <= 1.5,
        )
    )
    notes = [
        "Times are whole processes (start-up, decode, filter, PNG encode): median of up "
        f"to {cfg.repeats} runs after a warm-up run (a command whose warm-up exceeds "
        f"{cfg.budget:g} s is timed by that one run); every tool writes PNG at zlib level 1 "
        "(convtool's default; `-define png:compression-level=1` for ImageMagick, "
        "`[compression=1]` for libvips, `IMWRITE_PNG_COMPRESSION 1` for OpenCV), so the "
        "output sizes show what each gets for it: libvips stores rows unfiltered, OpenCV "
        "and ImageMagick filter with libpng, convtool uses the Up filter and ISA-L's level 1.",
        "All tools filter the same kernel: ImageMagick `Binomial:2` (5×5), `Sobel`, "
        "`Gaussian:15x5` (31×31, the brief's `Gaussian:0x5` picks its own width); libvips gets "
        "the weights as a .mat mask (integer precision for integer masks, float otherwise) and "
        "`gaussblur 5 --min-ampl 0.011` (31 wide); the OpenCV script (below) reads the "
        "correlation weights from .npy files, `sepFilter2D` for separable kernels, with "
        "reflect-101 borders. The Δ column compares each output with convtool's away from "
        "the borders, where border rules differ; gaussblur rounds its mask to integers on "
        "8-bit input, hence its larger Δ; OpenCV's 8-bit filters round in fixed point. "
        "ImageMagick runs only the binomial on the JPEG and the grey image, and nothing on "
        "the 16-bit one: its large Gaussian takes tens of seconds.",
        f"convtool runs as `{short_command(tools.convtool)}` from this source tree, "
        "compiled to bytecode first as an install would be; "
        f"ImageMagick: {_tool_path(tools.convert)}; libvips: {tools.vips or 'not installed'}.",
        "The goals against `vips conv`, `vips gaussblur` and the OpenCV script take their "
        "times (the two in the goal's cell) from a separate head-to-head: convtool's command "
        f"and the peer's run in turns, up to {2 * cfg.repeats} rounds, their medians, so that "
        "a load passing on this shared machine weighs on both (the tables' medians come "
        "from each command's own runs, one command after the other).",
        f"Start-up: median of {cfg.startup_repeats} runs of each command, taken in turns.",
        "The OpenCV script:\n\n```python\n" + OPENCV_SCRIPT + "```",
    ]
    return Section(tables=[goals_table(goals), stages, *tables], notes=notes, goals=goals)


STAGES = (
    ("imports", "start-up: the modules a filter run imports (python itself not counted)"),
    (
        "read-ahead",
        "read-ahead: file read, PNG stream inflated (ISA-L), on a thread while the imports run",
    ),
    ("decode", "decode: what is left after the read-ahead (Pillow's header, rows unfiltered in C)"),
    ("decode alone", "decode alone, without a read-ahead (not summed: a batch worker's decode)"),
    (
        "convert",
        "convert: samples → float32 channel planes, one pass (8 bits in and out with an integer kernel: none)",
    ),
    ("filter", "filter: the chain (engine bands on threads; the integer kernels for 8 → 8 bits)"),
    ("map", "map: range, rounding and cast alone, one thread (in the command, inside encode)"),
    ("encode", "encode: PNG bands mapped, filtered, deflated on threads"),
    ("write", "write: temporary file, fsync, rename"),
)


def _stage_times(cfg: Config, tools: Tools, src: Path) -> Table:
    """Where convtool's time goes on the first input, binomial 5×5: benchmarks/stages.py."""
    log("cli: stages")
    table = Table(
        "convtool's time stage by stage on the same RGB PNG, binomial 5×5 (median seconds "
        "of each stage run on its own in one process; `benchmarks/stages.py`).",
        ["stage", "seconds", "share of the stages"],
    )
    runs = max(1, min(cfg.repeats, 5))
    script = Path(__file__).with_name("stages.py")
    try:
        done = run_child(
            [sys.executable, str(script), str(src), "binomial:5", str(runs)], env=tools.env
        )
        figures = json.loads(done.stdout)
    except (CommandFailed, ValueError) as err:
        table.rows.append(["failed", str(err), ""])
        return table
    apart = ("map", "decode alone")  # inside encode; the decode without a read-ahead
    total = sum(figures.get(key, 0.0) for key, _ in STAGES if key not in apart)
    for key, text in STAGES:
        value = figures.get(key)
        share = "" if key in apart or not total or value is None else f"{100 * value / total:.0f}%"
        table.rows.append([text, fmt(value), share])
    table.rows.append(
        [
            "sum (map is inside encode; in the command the read-ahead overlaps the imports)",
            fmt(total),
            "100%",
        ]
    )
    return table


# The peers each goal compares convtool's command with, by input (0: the RGB PNG, 1: the
# JPEG) and kernel spec: timed head to head (see _head_to_head) for the goals' ratios.
GOAL_PEERS = {
    (0, "binomial:5"): ("vips conv", "OpenCV script"),
    (0, "sobel-x"): ("vips conv", "OpenCV script"),
    (1, "binomial:5"): ("vips conv",),
    (1, "sobel-x"): ("vips conv",),
    (0, "gaussian:sigma=5,size=31"): ("vips gaussblur",),
}


def _head_to_head(commands, tool: str, tools: Tools, cfg: Config) -> tuple[float, float] | None:
    """(the peer's seconds, convtool's) from the two commands run in turns
    (:func:`benchlib.alternated`), or None when either is missing or fails."""
    found = {name: cmd for name, cmd, _ in commands if name in (tool, "convtool")}
    if len(found) < 2:
        return None
    log(f"cli: head to head, convtool and {tool}")
    try:
        timings = alternated(
            {name: (lambda cmd=cmd: run_child(cmd, env=tools.env)) for name, cmd in found.items()},
            rounds=2 * cfg.repeats,
            budget=4 * cfg.budget,
        )
    except CommandFailed as err:
        log(f"head to head with {tool} failed: {err}")
        return None
    return timings[tool].seconds, timings["convtool"].seconds


def _time_commands(commands, tools: Tools, cfg: Config, table: Table, label: str) -> dict:
    """Time each command, compare its output with convtool's, add a row each; seconds by tool."""
    seconds: dict[str, float] = {}
    reference = None
    for tool, cmd, out in commands:
        log(f"cli: {label}, {tool}")
        row = [label, tool]
        try:
            timing = measure(
                lambda cmd=cmd: run_child(cmd, env=tools.env),
                repeats=cfg.repeats,
                budget=cfg.budget,
            )
        except CommandFailed as err:
            table.rows.append(row + [f"failed: {err}", "", "", "", "", ""])
            continue
        seconds[tool] = timing.seconds
        try:
            pixels = load_png(out)
            size = fmt(out.stat().st_size / 1e6)
        except OSError as err:
            pixels, size = err, ""
        if tool == "convtool":
            reference = pixels
        table.rows.append(
            row
            + [
                fmt(timing.seconds),
                str(timing.runs),
                fmt(ratio(timing.seconds, seconds.get("convtool"))),
                size,
                _interior_difference(pixels, reference),
                f"`{short_command(cmd)}`",
            ]
        )
    for tool, present in (("ImageMagick convert", tools.convert), ("vips conv", tools.vips)):
        if not present:
            table.rows.append([label, tool, "not installed", "", "", "", "", ""])
    return seconds


def _interior_difference(pixels, reference, margin: int = 16) -> str:
    """Largest difference between two 8-bit outputs away from the borders, as text."""
    if isinstance(pixels, Exception) or not isinstance(reference, np.ndarray):
        return f"unreadable: {pixels}" if isinstance(pixels, Exception) else "—"
    if pixels.shape != reference.shape:
        return f"shape {pixels.shape} ≠ {reference.shape}"
    inner = (slice(margin, -margin), slice(margin, -margin))
    return str(int(np.abs(pixels[inner] - reference[inner]).max()))


@dataclass(frozen=True)
class Startup:
    ours: float | None = None
    typer: float | None = None
    error: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.ours, self.typer)


def _startup_times(cfg: Config, tools: Tools) -> Startup:
    """Median times of ``convtool --version`` and ``python -c "import typer"``, interleaved.

    Taking the two in turns (after one warm-up each) lets both see the same load on a
    shared machine.
    """
    log("cli: start-up")
    commands = (tools.convtool + ["--version"], [sys.executable, "-c", "import typer"])
    times: tuple[list[float], list[float]] = ([], [])
    try:
        for cmd in commands:
            run_child(cmd, env=tools.env)
        for _ in range(cfg.startup_repeats):
            for cmd, seconds in zip(commands, times, strict=True):
                seconds.append(run_child(cmd, env=tools.env).seconds)
    except CommandFailed as err:
        return Startup(error=f"failed: {err}")
    return Startup(statistics.median(times[0]), statistics.median(times[1]))


def _peer_ratio_text(a: float | None, b: float | None, installed, unit: str = " s") -> str:
    """``a / b`` with both figures, for a goals table; why not when one is missing."""
    if not installed:
        return "not installed"
    if a is None or b is None:
        return "failed (see below)"
    return f"{fmt(a / b)}× ({fmt(a)}{unit} vs {fmt(b)}{unit})"


def _at_least(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _tool_path(cmd: list[str] | None) -> str:
    return "not installed" if not cmd else " ".join(cmd)


# ============================================================================= section 4

DEFAULT_MOGRIFY = "mogrify, default PNG level"


def section_batch(cfg: Config, tools: Tools) -> Section:
    """Images per second over a folder of PNGs: convtool -j 1 / -j 2 against mogrify."""
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    n, side = cfg.batch_count, cfg.batch_side
    table = Table(
        f"Images per second, {n} RGB PNGs of {side}×{side} (higher is better).",
        ["kernel", "tool", "images/s", "runs", "× mogrify"],
    )
    goals: list[Goal] = []
    try:
        src, out = work / "in", work / "out"
        src.mkdir()
        for i in range(n):
            save_png(src / f"img{i:04d}.png", photo_like(side, side, channels=3, seed=100 + i))
        files = sorted(str(p) for p in src.iterdir())
        pairs = work / "pairs.txt"  # "in out" per line, for xargs
        pairs.write_text("".join(f"{f} {out / Path(f).name}\n" for f in files))
        gauss = gaussian_1d(1, 5)
        for label, spec, magick, mask in (
            (
                "sobel-x",
                "sobel-x",
                ["-morphology", "Convolve", "Sobel"],
                np.outer([1, 2, 1], [-1, 0, 1]),
            ),
            (
                "gaussian:sigma=1,size=5",
                "gaussian:sigma=1,size=5",
                ["-define", "convolve:scale=!", "-morphology", "Convolve", "Gaussian:2x1"],
                np.outer(gauss, gauss),
            ),
        ):
            commands = [
                (
                    f"convtool -j {j}",
                    tools.convtool + ["filter", str(src), "-o", str(out), "-k", spec, "-j", str(j)],
                )
                for j in (1, 2)
            ]
            if tools.mogrify:
                commands.append(
                    ("mogrify", tools.mogrify + ["-path", str(out)] + magick + MAGICK_PNG + files)
                )
                # The issue's own baseline: mogrify as people run it, at its default PNG level.
                commands.append(
                    (DEFAULT_MOGRIFY, tools.mogrify + ["-path", str(out)] + magick + files)
                )
            if tools.vips and shutil.which("xargs"):
                commands.append((VIPS_XARGS, _vips_xargs(tools.vips, pairs, work, label, mask)))
            results = {
                tool: _batch_timing(cmd, out, n, cfg, tools, f"{label}, {tool}")
                for tool, cmd in commands
            }
            rates = {tool: t.rate(n) for tool, t in results.items() if isinstance(t, Timing)}
            for tool, result in results.items():
                table.rows.append(
                    [label, tool]
                    + (
                        [
                            fmt(rates[tool]),
                            str(result.runs),
                            fmt(ratio(rates[tool], rates.get("mogrify"))),
                        ]
                        if tool in rates
                        else [result, "", ""]
                    )
                )
            if not tools.mogrify:
                table.rows.append([label, "mogrify", "not installed", "", ""])
            for peer, factor in (("mogrify", 3.0), (DEFAULT_MOGRIFY, 3.0), (VIPS_XARGS, 1.0)):
                speedup = ratio(rates.get("convtool -j 2"), rates.get(peer))
                wanted = (
                    f"≥ {factor:g}× {peer}'s images/s" if factor != 1 else f"faster than {peer}"
                )
                installed = tools.vips if peer == VIPS_XARGS else tools.mogrify
                goals.append(
                    Goal(
                        f"{label}: convtool -j 2 {wanted}",
                        _peer_ratio_text(
                            rates.get("convtool -j 2"), rates.get(peer), installed, unit=" images/s"
                        ),
                        _at_least(speedup, factor) if factor != 1 else _above(speedup, 1.0),
                    )
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    notes = [
        "Each run starts with an empty output folder; outputs are counted after each run. "
        "Median of up to "
        f"{cfg.repeats} runs, no warm-up; `mogrify` writes at zlib level 1 like convtool, "
        f"`{DEFAULT_MOGRIFY}` at ImageMagick's default PNG level, as the issue measured it; "
        f"`{VIPS_XARGS}` runs one `vips conv` per file (the same weights as a .mat mask, "
        "integer precision for Sobel) two at a time under `xargs -P 2`, writing at level 1."
    ]
    return Section(tables=[goals_table(goals), table], notes=notes, goals=goals)


VIPS_XARGS = "vips conv, xargs -P 2"


def _vips_xargs(vips: str, pairs: Path, work: Path, label: str, mask: np.ndarray) -> list[str]:
    """libvips over the folder as a shell user runs it: two `vips conv` at a time."""
    integer = np.array_equal(mask, np.round(mask))
    mat = write_vips_mask(work / f"batch-{label.split(':')[0]}.mat", mask)
    precision = "integer" if integer else "float"
    script = f'exec "$0" conv "$1" "$2{VIPS_PNG}" {mat} --precision {precision}'
    return ["xargs", "-a", str(pairs), "-P", "2", "-n", "2", "sh", "-c", script, vips]


def _above(value: float | None, goal: float) -> bool | None:
    return None if value is None else value > goal


def _batch_timing(
    cmd: list[str], out: Path, n: int, cfg: Config, tools: Tools, what: str
) -> Timing | str:
    """Median time of one batch command over the folder, or why it failed."""
    log(f"batch: {what}")
    try:
        # No warm-up: one run is many images, and the inputs were just written (cached).
        timing = measure(
            lambda: run_child(cmd, env=tools.env),
            repeats=cfg.repeats,
            budget=cfg.budget,
            warmup=False,
            setup=lambda: empty_dir(out),
        )
    except CommandFailed as err:
        return f"failed: {err}"
    written = len(list(out.glob("*.png")))
    if written != n:
        return f"failed: wrote {written} of {n} images"
    return timing

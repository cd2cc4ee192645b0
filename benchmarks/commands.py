"""Sections that time whole command lines: single images (2) and folders of images (4).

Every tool writes PNG at zlib level 1 and applies the same weights, and each output is
compared with convtool's, so the times are for the same work.
"""

from __future__ import annotations

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


def cli_commands(kernel: CliKernel, tools: Tools, src: Path, work: Path):
    """(tool label, command, output path) for every tool that can apply ``kernel``."""
    out = work / "out"
    commands = [
        (
            "convtool",
            tools.convtool
            + ["filter", str(src), "-k", kernel.spec, "-o", str(out / "convtool.png")],
            out / "convtool.png",
        )
    ]
    if tools.convert:
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
    return commands


def section_cli(cfg: Config, tools: Tools) -> Section:
    """Wall time of whole command lines on one RGB PNG, and start-up time."""
    width, height = cfg.cli_size
    work = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    try:
        src = work / "in.png"
        save_png(src, photo_like(height, width, channels=3, seed=2))
        (work / "out").mkdir()
        times = Table(
            f"Median wall time per command on a {width}×{height} RGB 8-bit PNG (lower is better).",
            [
                "kernel",
                "tool",
                "seconds",
                "runs",
                "× convtool time",
                "max abs. Δ vs convtool (interior, levels)",
                "command",
            ],
        )
        binomial: dict[str, float] = {}
        for kernel in cli_kernels():
            seconds = _time_commands(
                cli_commands(kernel, tools, src, work), tools, cfg, times, kernel.label
            )
            if kernel.spec.startswith("binomial"):
                binomial = seconds
        startup = _startup_times(cfg, tools)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ours, vips, magick = (binomial.get(k) for k in ("convtool", "vips conv", "ImageMagick convert"))
    goals = [
        Goal(
            "binomial 5×5: convtool faster than `vips conv` (their time ÷ ours > 1)",
            _peer_ratio_text(vips, ours, tools.vips),
            _at_least(ratio(vips, ours), 1.0),
        ),
        Goal(
            "binomial 5×5: convtool ≥ 3× faster than ImageMagick (their time ÷ ours)",
            _peer_ratio_text(magick, ours, tools.convert),
            _at_least(ratio(magick, ours), 3.0),
        ),
        Goal(
            '`convtool --version` within 1.5× of `python -c "import typer"`',
            f"{fmt(startup.ratio)}× ({fmt(startup.ours * 1000)} ms vs "
            f"{fmt(startup.typer * 1000)} ms)"
            if startup.ratio
            else startup.error,
            None if startup.ratio is None else startup.ratio <= 1.5,
        ),
    ]
    notes = [
        "Times are whole processes (start-up, PNG decode, filter, PNG encode): median of up "
        f"to {cfg.repeats} runs after a warm-up run (a command whose warm-up exceeds "
        f"{cfg.budget:g} s is timed by that one run); every writer uses zlib level 1 "
        "(convtool's default; `-define png:compression-level=1` for ImageMagick, "
        "`[compression=1]` for libvips).",
        "All tools filter the same kernel: ImageMagick `Binomial:2` (5×5), `Sobel`, "
        "`Gaussian:15x5` (31×31, the brief's `Gaussian:0x5` picks its own width); libvips gets "
        "the weights as a .mat mask (integer precision for integer masks, float otherwise) and "
        "`gaussblur 5 --min-ampl 0.011` (31 wide). The Δ column compares each output with "
        "convtool's away from the borders, where border rules differ; gaussblur rounds its "
        "mask to integers on 8-bit input, hence its larger Δ.",
        f"convtool runs as `{short_command(tools.convtool)}` from this source tree; "
        f"ImageMagick: {_tool_path(tools.convert)}; libvips: {tools.vips or 'not installed'}.",
        f"Start-up: median of {cfg.startup_repeats} runs of each command, taken in turns.",
    ]
    return Section(tables=[goals_table(goals), times], notes=notes, goals=goals)


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
            table.rows.append(row + [f"failed: {err}", "", "", "", ""])
            continue
        seconds[tool] = timing.seconds
        try:
            pixels = load_png(out)
        except OSError as err:
            pixels = err
        if tool == "convtool":
            reference = pixels
        table.rows.append(
            row
            + [
                fmt(timing.seconds),
                str(timing.runs),
                fmt(ratio(timing.seconds, seconds.get("convtool"))),
                _interior_difference(pixels, reference),
                f"`{short_command(cmd)}`",
            ]
        )
    for tool, present in (("ImageMagick convert", tools.convert), ("vips conv", tools.vips)):
        if not present:
            table.rows.append([label, tool, "not installed", "", "", "", ""])
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
        for label, spec, magick in (
            ("sobel-x", "sobel-x", ["-morphology", "Convolve", "Sobel"]),
            (
                "gaussian:sigma=1,size=5",
                "gaussian:sigma=1,size=5",
                ["-define", "convolve:scale=!", "-morphology", "Convolve", "Gaussian:2x1"],
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
            for peer in ("mogrify", DEFAULT_MOGRIFY):
                speedup = ratio(rates.get("convtool -j 2"), rates.get(peer))
                goals.append(
                    Goal(
                        f"{label}: convtool -j 2 ≥ 3× {peer}'s images/s",
                        _peer_ratio_text(
                            rates.get("convtool -j 2"),
                            rates.get(peer),
                            tools.mogrify,
                            unit=" images/s",
                        ),
                        _at_least(speedup, 3.0),
                    )
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    notes = [
        "Each run starts with an empty output folder; outputs are counted after each run. "
        "Median of up to "
        f"{cfg.repeats} runs, no warm-up; `mogrify` writes at zlib level 1 like convtool, "
        f"`{DEFAULT_MOGRIFY}` at ImageMagick's default PNG level, as the issue measured it."
    ]
    return Section(tables=[goals_table(goals), table], notes=notes, goals=goals)


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

"""Sections run inside Python: engine throughput (1), memory (3), template matching (5).

Every implementation is checked against scipy.ndimage in float64, or against its peer,
before it is timed.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import (
    MALLOC_ENV,
    ChildRun,
    CommandFailed,
    Goal,
    Section,
    Table,
    Timing,
    available_memory,
    fmt,
    goal_cell,
    measure,
    peak_extra_bytes,
    photo_like,
    ratio,
    run_child,
)
from peers import (
    Impl,
    KernelCase,
    engine_impls,
    engine_kernels,
    matchers,
    naive_side,
    rank1_factors,
    relative_error,
)
from runconfig import Config, Tools, log

BENCH_SCRIPT = Path(__file__).with_name("bench.py")  # runs the memory probes as children
# Results count as exact when max|error| <= TOLERANCE * sum|k| * max|x| (float32 arithmetic).
TOLERANCE = 1e-4


# ============================================================================= section 1


def section_engine(cfg: Config, tools: Tools) -> Section:
    """Engine Mpix/s for six kernels: convtool's methods against scipy, naive numpy, OpenCV."""
    n = cfg.engine_side
    image = photo_like(n, n, channels=1, seed=1).astype(np.float32)
    impls = engine_impls()
    detail = Table(
        "Throughput (Mpix/s, higher is better); every result checked first.",
        ["kernel", "implementation", "Mpix/s", "max rel. error", "runs", "image"],
    )
    summary = Table(
        "convtool (method auto) against its peers, in Mpix/s and as ratios.",
        [
            "kernel",
            "convtool auto (method)",
            "scipy",
            "best OpenCV",
            "× scipy",
            "≥ 3× scipy?",
            "× OpenCV",
            "OpenCV goal",
            "met?",
        ],
    )
    goals: list[Goal] = []
    for case in engine_kernels():
        rank1 = rank1_factors(case.weights) is not None
        references = _References(case.weights)
        rates: dict[str, float] = {}
        for impl in impls:
            if impl.rank1_only and not rank1:
                continue
            side = naive_side(n, case.weights, cfg.naive_macs) if impl.group == "naive" else n
            log(f"engine: {case.label}, {impl.label}, {side}×{side}")
            rate, cells = _checked_rate(impl, image[:side, :side], case.weights, references, cfg)
            crop = f"{side}×{side}" + (" crop" if side < n else "")
            detail.rows.append([case.label, impl.label] + cells + [crop if rate else ""])
            if rate:
                rates[impl.key] = rate
        summary.rows.append(_engine_summary_row(case, rates, image.shape, goals))
    notes = [
        f"Image: {n}×{n} float32 (synthetic photo, values 0–255); kernels applied as "
        "correlation with reflect padding (scipy `mirror`, OpenCV `BORDER_REFLECT_101`).",
        "Check before timing: max|result − scipy.ndimage.correlate in float64| / "
        f"(sum|k| · max|x|) ≤ {TOLERANCE:g}; the checked run is the warm-up. Median of up to "
        f"{cfg.repeats} runs (fewer once {cfg.budget:g} s of runs were spent; a checked run "
        "that alone took longer is the one timing).",
        "The naive version runs on a crop when the whole image would exceed "
        f"{cfg.naive_macs:.0e} multiply-adds per run; its Mpix/s are those of the crop.",
        f"Threads: convtool uses all CPUs ({os.cpu_count()}), OpenCV its default "
        f"({_opencv_threads()}), scipy.ndimage and the naive version one.",
    ]
    return Section(tables=[summary, detail], notes=notes, goals=goals)


class _References:
    """scipy.ndimage.correlate in float64 of an image (or crop), computed once per shape."""

    def __init__(self, weights: np.ndarray):
        self.weights, self.cache = weights, {}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        if x.shape not in self.cache:
            self.cache[x.shape] = ndimage.correlate(
                x.astype(np.float64), self.weights, mode="mirror"
            )
        return self.cache[x.shape]


def _checked_rate(
    impl: Impl, x: np.ndarray, w: np.ndarray, reference: _References, cfg: Config
) -> tuple[float | None, list[str]]:
    """Check one implementation, then time it: (Mpix/s or None, [Mpix/s, error, runs] cells)."""
    if impl.run is None:
        return None, ["not installed", "", ""]
    try:
        # The checked run doubles as the warm-up, and as the one timing when it alone
        # exceeds the budget (scipy on 31×31 kernels takes many seconds).
        start = time.perf_counter()
        result = impl.run(x, w)
        first = Timing(time.perf_counter() - start, 1)
        error = relative_error(result, reference(x), x, w)
        if error > TOLERANCE:
            return None, ["**wrong result**", f"{error:.1e}", ""]
        timing = (
            first
            if first.seconds >= cfg.budget > 0
            else measure(
                functools.partial(impl.run, x, w),
                repeats=cfg.repeats,
                budget=cfg.budget,
                warmup=False,
            )
        )
    except Exception as err:  # noqa: BLE001 - a failing peer is reported, not fatal
        return None, [f"failed: {err}", "", ""]
    rate = timing.rate(x.size / 1e6)
    return rate, [fmt(rate), f"{error:.1e}", str(timing.runs)]


def _engine_summary_row(
    case: KernelCase, rates: dict[str, float], shape, goals: list[Goal]
) -> list[str]:
    """One kernel's summary: convtool auto against scipy and the best OpenCV call; adds goals."""
    auto = rates.get("convtool-auto")
    opencv = [v for k, v in rates.items() if k.startswith("cv2")]
    best_cv = max(opencv) if opencv else None
    vs_scipy, vs_cv = ratio(auto, rates.get("scipy")), ratio(auto, best_cv)
    met_scipy = None if vs_scipy is None else vs_scipy >= 3
    met_cv = None if vs_cv is None else vs_cv >= case.opencv_goal
    goals.append(Goal(f"{case.label}: convtool ≥ 3× scipy.ndimage", _times(vs_scipy), met_scipy))
    goals.append(
        Goal(
            f"{case.label}: convtool ≥ {case.opencv_goal:g}× OpenCV",
            "OpenCV not installed" if best_cv is None else _times(vs_cv),
            met_cv,
        )
    )
    return [
        case.label,
        f"{fmt(auto)} ({_chosen_method(case.weights, shape)})",
        fmt(rates.get("scipy")),
        "not installed" if best_cv is None else fmt(best_cv),
        fmt(vs_scipy),
        goal_cell(met_scipy),
        fmt(vs_cv),
        f"≥ {case.opencv_goal:g}×",
        goal_cell(met_cv),
    ]


def _times(value: float | None) -> str:
    return "failed (see below)" if value is None else f"{fmt(value)}×"


def _chosen_method(weights: np.ndarray, shape) -> str:
    """The method convtool's auto picks for this kernel and image, or ``?``."""
    try:
        from convtool import engine

        return engine.choose_method(
            weights.shape, engine.separable_factors(weights) is not None, shape
        )
    except Exception:  # noqa: BLE001 - the method name is a courtesy
        return "?"


def _opencv_threads() -> str:
    try:
        import cv2
    except ImportError:
        return "not installed"
    return str(cv2.getNumThreads())


# ============================================================================= section 3

# Which implementations each memory probe runs: a small separable kernel takes every method,
# a large non-separable one the methods that make sense for it (direct would take minutes).
MEMORY_PROBES = {
    "binomial5": (
        "convtool-auto",
        "convtool-direct",
        "convtool-separable",
        "convtool-fft",
        "scipy",
        "cv2-filter2D",
        "cv2-sepFilter2D",
    ),
    "random31": ("convtool-auto", "convtool-fft", "scipy", "cv2-filter2D"),
}


def probe_memory(kernel_key: str, impl_key: str, side: int) -> dict:
    """Run one implementation once, in this (child) process, and measure its extra peak RSS."""
    case = next(c for c in engine_kernels() if c.key == kernel_key)
    impl = next(i for i in engine_impls() if i.key == impl_key)
    if impl.run is None:
        return {"missing": True}
    image = photo_like(side, side, channels=1, seed=1).astype(np.float32)
    # A call on a corner first, so lazily loaded modules and libraries are not counted; 256
    # pixels, as convtool computes images under 128×128 directly whatever the kernel.
    impl.run(image[:256, :256].copy(), case.weights)
    start = time.perf_counter()
    extra = peak_extra_bytes(lambda: impl.run(image, case.weights))
    return {"extra": extra, "seconds": time.perf_counter() - start}


def section_memory(cfg: Config, tools: Tools) -> Section:
    """Peak extra memory of each method, each in a fresh child process; then the giant image."""
    side = cfg.memory_side
    image_bytes = side * side * 4
    table = Table(
        f"Peak memory added by one call on a {side}×{side} float32 image "
        f"({image_bytes / 2**20:.0f} MiB), output included.",
        ["kernel", "implementation", "peak extra (× image)", "MiB", "seconds"],
    )
    cases = {c.key: c for c in engine_kernels()}
    labels = {i.key: i.label for i in engine_impls()}
    for kernel_key, impl_keys in MEMORY_PROBES.items():
        for impl_key in impl_keys:
            log(f"memory: {kernel_key}, {impl_key}")
            row = [cases[kernel_key].label, labels[impl_key]]
            try:
                child = run_child(
                    [sys.executable, str(BENCH_SCRIPT), "--probe", kernel_key, impl_key, str(side)],
                    env=tools.env | MALLOC_ENV,
                )
                result = json.loads(child.stdout.strip().splitlines()[-1])
            except CommandFailed as err:
                table.rows.append(row + [f"failed: {err}", "", ""])
                continue
            if result.get("missing"):
                table.rows.append(row + ["not installed", "", ""])
                continue
            table.rows.append(
                row
                + [
                    fmt(result["extra"] / image_bytes),
                    f"{result['extra'] / 2**20:.0f}",
                    fmt(result["seconds"]),
                ]
            )
    tables = [table]
    notes = [
        "Each row is a fresh child process: image made, a call on a 256×256 corner (so lazy "
        "imports are not counted), free heap trimmed, VmHWM reset (/proc/self/clear_refs), one "
        "call, VmHWM read; the figure is the peak above the resident size before the call, so "
        "it includes the output (1× image) and any temporary arrays, thread buffers and FFT "
        "plans. The children run with glibc's mmap threshold fixed "
        f"({MALLOC_ENV['MALLOC_MMAP_THRESHOLD_']} bytes), so freed arrays cannot be reused "
        "unseen.",
    ]
    if cfg.big_side:
        tables.append(_giant_image(cfg.big_side, tools, notes))
    else:
        notes.append("The 20000×20000 8-bit image runs in full mode only.")
    return Section(tables=tables, notes=notes)


def _giant_image(side: int, tools: Tools, notes: list[str]) -> Table:
    """``convtool filter`` on a side×side 8-bit .npy with a 31×31 Gaussian: time and peak RSS."""
    table = Table(
        f"`convtool filter` on a {side}×{side} 8-bit image, gaussian:sigma=5,size=31.",
        ["input", "seconds", "peak RSS (GiB)", "peak RSS − start-up RSS (× float32 image)"],
    )
    float_bytes = side * side * 4
    need = 6 * float_bytes
    free = available_memory()
    if free is not None and free < need:
        notes.append(
            f"Giant image skipped: {free / 2**30:.1f} GiB available, about "
            f"{need / 2**30:.1f} GiB wanted."
        )
        return table
    work = Path(tempfile.mkdtemp(prefix="bench-big-"))
    try:
        log(f"memory: writing the {side}×{side} 8-bit image")
        tile = photo_like(2500, 2500, channels=1, seed=3)
        np.save(work / "big.npy", np.tile(tile, (-(-side // 2500),) * 2)[:side, :side])
        np.save(work / "small.npy", tile[:16, :16])
        log("memory: filtering the giant image")
        try:
            # The same command on a 16×16 image: the interpreter and its imports alone.
            startup = _filter_npy(tools, work / "small.npy", work / "small-out.npy")
            child = _filter_npy(tools, work / "big.npy", work / "out.npy")
        except CommandFailed as err:
            table.rows.append(["uint8 .npy", f"failed: {err}", "", ""])
            return table
        shape = np.load(work / "out.npy", mmap_mode="r").shape
        table.rows.append(
            [
                f"uint8 .npy → {'×'.join(map(str, shape))} .npy",
                fmt(child.seconds),
                f"{child.max_rss / 2**30:.2f}",
                fmt((child.max_rss - startup.max_rss) / float_bytes),
            ]
        )
        notes.append(
            "The giant image is a 2500×2500 synthetic photo tiled; the whole process "
            "is measured (read, filter, write), peak RSS from wait4(); start-up RSS is "
            f"that of the same command on a 16×16 image ({startup.max_rss / 2**20:.0f} "
            "MiB)."
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return table


def _filter_npy(tools: Tools, src: Path, dest: Path) -> ChildRun:
    return run_child(
        tools.convtool
        + [
            "filter",
            str(src),
            "-k",
            "gaussian:sigma=5,size=31",
            "-o",
            str(dest),
            "--max-pixels",
            "0",
        ],
        env=tools.env,
    )


# ============================================================================= section 5


def section_match(cfg: Config, tools: Tools) -> Section:
    """convtool.match.match_template against cv2.matchTemplate(TM_CCOEFF_NORMED)."""
    side = cfg.scene_side
    scene = photo_like(side, side, channels=1, seed=4).astype(np.float32)
    table = Table(
        f"Zero-normalised cross-correlation of a {side}×{side} float32 scene "
        "(milliseconds, lower is better).",
        [
            "template",
            "convtool ms",
            "OpenCV ms",
            "convtool speed ÷ OpenCV",
            "max abs. Δ score",
            "same best match?",
        ],
    )
    runners = matchers()
    rng = np.random.default_rng(5)
    for t in cfg.templates:
        y, x = (int(v) for v in rng.integers(0, side - t, 2))
        template = scene[y : y + t, x : x + t].copy()
        log(f"match: {t}×{t}")
        results, ms = {}, {}
        for name, run in runners.items():
            if run is None:
                continue
            call = functools.partial(run, scene, template)
            results[name] = call()  # compared below; doubles as the warm-up
            ms[name] = (
                measure(call, repeats=cfg.repeats, budget=cfg.budget, warmup=False).seconds * 1000
            )
        table.rows.append(
            [
                f"{t}×{t}",
                fmt(ms["convtool"]) if "convtool" in ms else "not available",
                fmt(ms["opencv"]) if "opencv" in ms else "not installed",
                fmt(ratio(ms.get("opencv"), ms.get("convtool"))),
                *_compare_scores(results.get("convtool"), results.get("opencv")),
            ]
        )
    notes = [
        "Templates are cut from the scene, so the best match is known; both score maps are "
        "the valid geometry (H − h + 1, W − w + 1). No goal was set for this section."
    ]
    return Section(tables=[table], notes=notes)


def _compare_scores(ours, theirs) -> list[str]:
    """[max abs. score difference, same best match?] of two score maps; dashes if one is missing."""
    if ours is None or theirs is None:
        return ["—", "—"]
    if ours.shape != theirs.shape:
        return [f"shapes {ours.shape} ≠ {theirs.shape}", "—"]
    best = [np.unravel_index(np.argmax(s), s.shape) for s in (ours, theirs)]
    return [f"{np.abs(ours - theirs).max():.1e}", goal_cell(best[0] == best[1])]

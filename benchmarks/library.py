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
from collections.abc import Callable
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
    alternated,
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
    convtool_implementation,
    engine_impls,
    engine_kernels,
    matchers,
    naive_side,
    rank1_factors,
    relative_error,
    uint8_impls,
    uint8_kernels,
)
from runconfig import Config, Tools, log

BENCH_SCRIPT = Path(__file__).with_name("bench.py")  # runs the memory probes as children
# Results count as exact when max|error| <= TOLERANCE * sum|k| * max|x| (float32 arithmetic).
TOLERANCE = 1e-4


# ============================================================================= section 1


def section_engine(cfg: Config, tools: Tools) -> Section:
    """Engine Mpix/s for six kernels at each size: convtool compiled and numpy against scipy,
    naive numpy and OpenCV, as shares of a plain copy; then uint8 -> uint8 against OpenCV."""
    impls = engine_impls()
    detail = Table(
        "Throughput (Mpix/s, higher is better); every result checked first.",
        ["kernel", "implementation", "Mpix/s", "max rel. error", "runs", "image"],
    )
    summary = Table(
        "convtool (method auto) against its peers, in Mpix/s and as ratios; "
        "“of copy”: the figure as a share of the plain-copy row.",
        [
            "kernel",
            "image",
            "convtool compiled (method)",
            "convtool numpy",
            "scipy",
            "fastest OpenCV",
            "× OpenCV",
            "compiled ÷ numpy",
            "× scipy",
            "of copy",
            "≥ 1× OpenCV?",
        ],
    )
    goals: list[Goal] = []
    copies: dict[int, float] = {}
    fresh: dict[int, float] = {}
    into: dict[int, float | None] = {}
    shares: dict[int, float | None] = {}
    for n in cfg.engine_sides:
        image = photo_like(n, n, channels=1, seed=1).astype(np.float32)
        copies[n] = copy_rate(image, cfg)
        fresh[n] = copy_rate(image, cfg, fresh=True)
        summary.rows.append(
            ["plain copy (np.copyto, bands on all CPUs)", f"{n}×{n}", fmt(copies[n])]
            + [""] * 6
            + ["1", ""]
        )
        summary.rows.append(
            ["plain copy into a new array (np.empty_like + np.copyto)", f"{n}×{n}", fmt(fresh[n])]
            + [""] * 6
            + [fmt(ratio(fresh[n], copies[n])), ""]
        )
        for case in engine_kernels():
            rank1 = rank1_factors(case.weights) is not None
            references = _References(case.weights)
            rates: dict[str, float] = {}
            for impl in impls:
                if impl.rank1_only and not rank1:
                    continue
                side = naive_side(n, case.weights, cfg.naive_macs) if impl.group == "naive" else n
                log(f"engine: {case.label}, {impl.label}, {side}×{side}")
                rate, cells = _checked_rate(
                    impl, image[:side, :side], case.weights, references, cfg
                )
                crop = f"{side}×{side}" + (" crop" if side < n else "")
                detail.rows.append([case.label, impl.label] + cells + [crop if rate else ""])
                if rate:
                    rates[impl.key] = rate
            duel = _head_to_head(
                {i.key: i for i in impls}, rates, "convtool-auto", image, case.weights, cfg
            )
            summary.rows.append(
                _engine_summary_row(case, rates, image.shape, copies[n], goals, duel)
            )
            if case.label == "Sobel 3×3":
                into[n] = _into_preallocated(image, case.weights, cfg)
                shares[n] = _copy_share(image, case.weights, cfg)
                share_cell = shares[n] if shares[n] is not None else ratio(into[n], copies[n])
                summary.rows.append(
                    [f"{case.label} into a preallocated output (`out=`)", f"{n}×{n}"]
                    + [fmt(into[n])]
                    + [""] * 6
                    + [fmt(share_cell), ""]
                )
    largest = max(cfg.engine_sides)
    sobel = next(
        (r for r in summary.rows if r[0] == "Sobel 3×3" and r[1] == f"{largest}×{largest}"), None
    )
    fresh_share = _number(sobel[9]) if sobel else None  # a new output, as the copy's 2nd row
    # like for like: both into a preallocated array, alternated (else from the two rows)
    share = shares.get(largest)
    if share is None:
        share = ratio(into.get(largest), copies.get(largest))
    goals.append(
        Goal(
            f"Sobel 3×3 at {largest}²: ≥ 80% of the plain-copy bandwidth",
            "—"
            if share is None
            else f"{share:.0%} into a preallocated output (`out=`), as the copy; "
            + ("—" if fresh_share is None else f"{fresh_share:.0%}")
            + " making a new one (a copy into a new array: "
            + fmt(ratio(fresh.get(largest), copies.get(largest)))
            + ")",
            None if share is None else share >= 0.8,
        )
    )
    uint8_table = _uint8_rows(cfg, goals)
    notes = [
        f"Images: {', '.join(f'{n}×{n}' for n in cfg.engine_sides)} float32 (synthetic photo, "
        "values 0–255); kernels applied as correlation with reflect padding (scipy `mirror`, "
        "OpenCV `BORDER_REFLECT_101`).",
        "Check before timing: max|result − scipy.ndimage.correlate in float64| / "
        f"(sum|k| · max|x|) ≤ {TOLERANCE:g}; the checked run is the warm-up. Median of up to "
        f"{cfg.repeats} runs (fewer once {cfg.budget:g} s of runs were spent; a checked run "
        "that alone took longer is the one timing).",
        "The naive version runs on a crop when the whole image would exceed "
        f"{cfg.naive_macs:.0e} multiply-adds per run; its Mpix/s are those of the crop.",
        f"convtool compiled: {convtool_implementation()}; convtool numpy: the same call with "
        "`CONVTOOL_NATIVE=0`.",
        f"Threads: convtool uses all CPUs it may run on ({_cpus()}), as does the plain copy "
        f"(one band per CPU); OpenCV its default ({_opencv_threads()}); scipy.ndimage and the "
        "naive version one.",
        "× OpenCV (and the uint8 and matching ratios): from runs of convtool and the fastest "
        "OpenCV call alternated, a dozen or so of each, their medians; the Mpix/s columns "
        "are from each implementation's own runs, one after the other.",
        "Plain copy: `np.copyto` of the image into a preallocated array, in one band of rows "
        "per CPU: reading the image once and writing it once, the least any filter does. "
        "Into a new array: the same copy into `np.empty_like(image)` made at each call, as a "
        "filter that returns its result (convtool, scipy, OpenCV) makes one; the difference "
        "is the kernel's zeroing of the new pages on their first write. The Sobel copy-share "
        "goal and the `out=` row's share: from the copy and the call into `out=` run "
        "alternately, their medians.",
    ]
    return Section(tables=[summary, uint8_table, detail], notes=notes, goals=goals)


def _into_preallocated(image: np.ndarray, weights: np.ndarray, cfg: Config) -> float | None:
    """Mpix/s of convtool (auto) writing into one output array made beforehand, as the plain
    copy does; None when this convtool has no ``out=``."""
    try:
        from convtool import engine

        out = engine.correlate(image, weights)
        timing = measure(
            functools.partial(engine.correlate, image, weights, out=out),
            repeats=max(cfg.repeats, 3),
            budget=cfg.budget,
        )
    except Exception as err:  # noqa: BLE001 - an older convtool: the row says so
        log(f"engine: Sobel into a preallocated output failed: {err}")
        return None
    return timing.rate(image.size / 1e6)


def _copy_share(image: np.ndarray, weights: np.ndarray, cfg: Config) -> float | None:
    """The plain copy's time ÷ convtool's into a preallocated output, from the two run
    alternately (:func:`benchlib.alternated`: a load that comes and goes weighs on both);
    None when this convtool has no ``out=``."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        from convtool import engine

        out = engine.correlate(image, weights)
        engine.correlate(image, weights, out=out)
    except Exception as err:  # noqa: BLE001 - an older convtool: the row says so
        log(f"engine: Sobel into a preallocated output failed: {err}")
        return None
    workers = _cpus()
    with ThreadPoolExecutor(workers) as pool:
        copy = _plain_copy(image, pool, workers, fresh=False)
        return _speed_ratio(functools.partial(engine.correlate, image, weights, out=out), copy, cfg)


def _plain_copy(image: np.ndarray, pool, workers: int, fresh: bool) -> Callable[[], np.ndarray]:
    """np.copyto of ``image`` into a preallocated array (``fresh``: into a new one made at
    each call), one band of rows per thread of ``pool`` (``workers`` threads)."""
    kept = np.empty_like(image)
    edges = np.linspace(0, image.shape[0], workers + 1).astype(int)
    parts = [(slice(a, b),) for a, b in zip(edges[:-1], edges[1:], strict=True)]

    def copy() -> np.ndarray:
        out = np.empty_like(image) if fresh else kept
        list(pool.map(lambda part: np.copyto(out[part], image[part]), parts))
        return out

    return copy


def copy_rate(image: np.ndarray, cfg: Config, fresh: bool = False) -> float:
    """Mpix/s of np.copyto over ``image`` into a preallocated array (``fresh``: into a new
    one made at each call), one band per CPU."""
    from concurrent.futures import ThreadPoolExecutor

    workers = _cpus()
    with ThreadPoolExecutor(workers) as pool:
        copy = _plain_copy(image, pool, workers, fresh)
        timing = measure(copy, repeats=max(cfg.repeats, 3), budget=cfg.budget)
    return timing.rate(image.size / 1e6)


def _cpus() -> int:
    try:
        from convtool._system import cpu_count
    except ImportError:
        return os.cpu_count() or 1
    return cpu_count()


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _uint8_rows(cfg: Config, goals: list[Goal]) -> Table:
    """uint8 RGB -> uint8 against OpenCV on the same data: Mpix/s, ratio, exact share."""
    from scipy import ndimage

    width, height = cfg.uint8_size
    image = photo_like(height, width, channels=3, seed=2)
    table = Table(
        f"uint8 → uint8, {width}×{height} RGB interleaved (Mpix/s of RGB pixels; results "
        "clipped to 0..255, rounded half to even). “exact”: share of samples equal to "
        "float64-then-round.",
        [
            "kernel",
            "convtool Mpix/s",
            "fastest OpenCV (call)",
            "× OpenCV",
            "≥ 1×?",
            "convtool exact",
            "OpenCV exact",
        ],
    )
    runs = uint8_impls()
    for case in uint8_kernels():
        log(f"uint8: {case.label}")
        exact_ref = np.clip(
            np.rint(
                ndimage.correlate(image.astype(np.float64), case.weights[..., None], mode="mirror")
            ),
            0,
            255,
        ).astype(np.uint8)
        rates: dict[str, float] = {}
        exact: dict[str, float] = {}
        for name, run in runs.items():
            if run is None:
                continue
            try:
                result = run(image, case.weights)
                if result is None:
                    continue
                exact[name] = float(np.mean(result == exact_ref))
                timing = measure(
                    functools.partial(run, image, case.weights),
                    repeats=cfg.repeats,
                    budget=cfg.budget,
                    warmup=False,
                )
            except Exception as err:  # noqa: BLE001 - a failing peer is reported, not fatal
                log(f"uint8: {name} failed: {err}")
                continue
            rates[name] = timing.rate(width * height / 1e6)
        opencv = {k: v for k, v in rates.items() if k.startswith("cv2")}
        best = max(opencv, key=opencv.get) if opencv else None
        vs = ratio(rates.get("convtool"), opencv.get(best) if best else None)
        if best is not None and "convtool" in rates:
            vs = _speed_ratio(
                functools.partial(runs["convtool"], image, case.weights),
                functools.partial(runs[best], image, case.weights),
                cfg,
            )
        met = None if vs is None else vs >= 1.0
        goals.append(Goal(f"uint8 {case.label}: convtool ≥ 1× OpenCV", _times(vs), met))
        table.rows.append(
            [
                case.label,
                fmt(rates.get("convtool")),
                "not installed" if best is None else f"{fmt(opencv[best])} ({best})",
                fmt(vs),
                goal_cell(met),
                f"{exact['convtool']:.2%}" if "convtool" in exact else "—",
                f"{exact[best]:.2%}" if best in exact else "—",
            ]
        )
    return table


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


def _head_to_head(
    impls: dict, rates: dict[str, float], ours: str, x: np.ndarray, w: np.ndarray, cfg: Config
) -> float | None:
    """Speed of ``ours`` ÷ the fastest OpenCV call's, from alternated runs of the two
    (:func:`benchlib.alternated`), or None when either did not run."""
    opencv = {k: v for k, v in rates.items() if k.startswith("cv2")}
    if ours not in rates or not opencv:
        return None
    best = max(opencv, key=opencv.get)
    try:
        return _speed_ratio(
            functools.partial(impls[ours].run, x, w), functools.partial(impls[best].run, x, w), cfg
        )
    except Exception as err:  # noqa: BLE001 - then the separate timings stand
        log(f"head to head {ours} / {best} failed: {err}")
        return None


def _speed_ratio(ours: Callable[[], object], theirs: Callable[[], object], cfg: Config) -> float:
    """Their time ÷ ours, from alternated runs of the two (:func:`benchlib.alternated`)."""
    timings = alternated(
        {"ours": ours, "theirs": theirs}, rounds=max(2 * cfg.repeats, 9), budget=2 * cfg.budget
    )
    return timings["theirs"].seconds / timings["ours"].seconds


def _engine_summary_row(
    case: KernelCase,
    rates: dict[str, float],
    shape,
    copy: float,
    goals: list[Goal],
    duel: float | None = None,
) -> list[str]:
    """One kernel and size: convtool compiled and numpy against scipy and the fastest OpenCV
    call, as a share of the plain copy; adds the ≥ 1× OpenCV goal (``duel``: the ratio
    from alternated runs, when there is one)."""
    auto, numpy_rate = rates.get("convtool-auto"), rates.get("convtool-numpy")
    opencv = {k: v for k, v in rates.items() if k.startswith("cv2")}
    best = max(opencv, key=opencv.get) if opencv else None
    vs_cv = duel if duel is not None else ratio(auto, opencv.get(best) if best else None)
    met = None if vs_cv is None else vs_cv >= 1.0
    size = f"{shape[0]}×{shape[1]}"
    goals.append(
        Goal(
            f"{case.label} {size}: convtool ≥ 1× the fastest OpenCV",
            "OpenCV not installed" if best is None else _times(vs_cv),
            met,
        )
    )
    return [
        case.label,
        size,
        f"{fmt(auto)} ({_chosen_method(case.weights, shape)})",
        fmt(numpy_rate),
        fmt(rates.get("scipy")),
        "not installed" if best is None else f"{fmt(opencv[best])} ({best.removeprefix('cv2-')})",
        fmt(vs_cv),
        fmt(ratio(auto, numpy_rate)),
        fmt(ratio(auto, rates.get("scipy"))),
        fmt(ratio(auto, copy)),
        goal_cell(met),
    ]


def _times(value: float | None) -> str:
    return "failed (see below)" if value is None else f"{fmt(value)}×"


def _chosen_method(weights: np.ndarray, shape) -> str:
    """The method convtool's auto picks for this kernel and image, or ``?``."""
    try:
        from convtool import engine
        from convtool.engine import native

        compiled = native.module() is not None  # the float32 image of section 1 is theirs
        return engine.choose_method(
            weights.shape, engine.separable_factors(weights) is not None, shape, compiled
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
        "convtool-numpy",
        "convtool-direct",
        "convtool-separable",
        "convtool-fft",
        "scipy",
        "cv2-filter2D",
        "cv2-sepFilter2D",
    ),
    "random31": ("convtool-auto", "convtool-numpy", "convtool-fft", "scipy", "cv2-filter2D"),
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
    goals: list[Goal] = []
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
            if impl_key in ("convtool-auto", "convtool-numpy"):
                share = result["extra"] / image_bytes
                goals.append(
                    Goal(
                        f"{cases[kernel_key].label}, {labels[impl_key]}: extra memory "
                        "≤ 1.25× the image (output included)",
                        f"{fmt(share)}×",
                        share <= 1.25,
                    )
                )
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
    return Section(tables=tables, notes=notes, goals=goals)


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
            "is measured (read, filter, write), peak RSS from wait4() in a small launcher (see "
            "section 6's notes); start-up RSS is "
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
        own_memory=True,  # (not from the benchmark process's own peak: see run_child)
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
    goals: list[Goal] = []
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
        speed = ratio(ms.get("opencv"), ms.get("convtool"))
        if "opencv" in ms and "convtool" in ms:
            speed = _speed_ratio(
                functools.partial(runners["convtool"], scene, template),
                functools.partial(runners["opencv"], scene, template),
                cfg,
            )
        goals.append(
            Goal(
                f"match {t}×{t} template: convtool ≥ 1× cv2.matchTemplate",
                _times(speed),
                None if speed is None else speed >= 1.0,
            )
        )
        table.rows.append(
            [
                f"{t}×{t}",
                fmt(ms["convtool"]) if "convtool" in ms else "not available",
                fmt(ms["opencv"]) if "opencv" in ms else "not installed",
                fmt(speed),
                *_compare_scores(results.get("convtool"), results.get("opencv")),
            ]
        )
    notes = [
        "Templates are cut from the scene, so the best match is known; both score maps are "
        "the valid geometry (H − h + 1, W − w + 1).",
        f"Threads: convtool all CPUs it may run on ({_cpus()}), OpenCV its default "
        f"({_opencv_threads()}).",
    ]
    return Section(tables=[table], notes=notes, goals=goals)


def _compare_scores(ours, theirs) -> list[str]:
    """[max abs. score difference, same best match?] of two score maps; dashes if one is missing."""
    if ours is None or theirs is None:
        return ["—", "—"]
    if ours.shape != theirs.shape:
        return [f"shapes {ours.shape} ≠ {theirs.shape}", "—"]
    best = [np.unravel_index(np.argmax(s), s.shape) for s in (ours, theirs)]
    return [f"{np.abs(ours - theirs).max():.1e}", goal_cell(best[0] == best[1])]

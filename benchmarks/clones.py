"""The compiled kernels at each SIMD level, one thread, ratios measured in one process.

    python benchmarks/clones.py                 # the built module, at every level this CPU runs
    python benchmarks/clones.py --builds [SRC]  # and SRC's _native.c (default: this tree)
                                                # built once per -march level, no dispatch
    python benchmarks/clones.py --also OTHER.so # and every level of another build (other -D...)

The built module's levels are switched with ``_native.select_level`` (what
``CONVTOOL_NATIVE_LEVEL`` does at start-up); ``--builds`` compiles copies of the extension
with ``-DCONVTOOL_NO_CLONES -march=...`` into a temporary directory and loads each in turn (it
measures any tree, e.g. an export of an older commit: ``git archive OLD convtool/engine``). Each case is timed round-robin over
the variants (min of ``--repeat`` runs) against the numpy engine (``CONVTOOL_NATIVE=0``), and
every variant's result is compared bit for bit with the first one's.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from convtool import engine  # noqa: E402
from convtool.engine import native  # noqa: E402

MARCH = {"v4": "x86-64-v4", "v3": "x86-64-v3", "baseline": "x86-64"}


@dataclass(frozen=True)
class Case:
    label: str
    run: Callable[[], np.ndarray]


def cases(small: bool) -> list[Case]:
    """The kernels of the issue: random 7x7, Sobel, binomial 5x5, Gaussian 31, uint8 RGB."""
    rng = np.random.default_rng(13)
    n = 1024 if small else 2048
    x = rng.random((n, n), dtype=np.float32)
    rgb = rng.integers(0, 256, (1080, 1920, 3) if small else (2160, 3840, 3), dtype=np.uint8)
    random7 = rng.standard_normal((7, 7))
    sobel = np.outer([1.0, 2, 1], [-1.0, 0, 1])
    binomial = np.outer([1.0, 4, 6, 4, 1], [1.0, 4, 6, 4, 1]) / 256
    t = np.arange(31) - 15
    g = np.exp(-(t**2) / 50.0)
    gauss31 = np.outer(g, g) / g.sum() ** 2

    def f32(w, method):
        return lambda: engine.correlate(x, w, padding="reflect", method=method, threads=1)

    def u8(w):
        return lambda: engine.correlate(
            rgb, w, padding="reflect", out_dtype=np.uint8, channel_axis=-1, threads=1
        )

    size, size8 = f"{n}²", f"{rgb.shape[1]}x{rgb.shape[0]} RGB"
    return [
        Case(f"random 7x7 direct f32 {size}", f32(random7, "direct")),
        Case(f"Sobel 3x3 auto f32 {size}", f32(sobel, "auto")),
        Case(f"binomial 5x5 separable f32 {size}", f32(binomial, "separable")),
        Case(f"Gaussian 31 separable f32 {size}", f32(gauss31, "separable")),
        Case(f"Sobel 3x3 uint8 {size8}", u8(sobel)),
        Case(f"binomial 5x5 uint8 {size8}", u8(binomial)),
    ]


def build(source: Path, level: str, into: Path) -> Path:
    """source's _native.c compiled for one -march level, without runtime dispatch."""
    engine_dir = source / "convtool" / "engine"
    include = sysconfig.get_paths()["include"]
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    out = into / level / f"_native{suffix}"
    out.parent.mkdir(parents=True)
    command = [
        os.environ.get("CC", "gcc"), "-shared", "-fPIC", "-O3", "-ffp-contract=off",
        "-fno-math-errno", "-std=c11", "-w", "-DCONVTOOL_NO_CLONES", f"-march={MARCH[level]}",
        f"-I{include}", str(engine_dir / "_native.c"), "-o", str(out), "-lm",
    ]  # fmt: skip
    subprocess.run(command, check=True)
    return out


def load(path: Path):
    """An extension file as convtool.engine._native (a fresh copy each time)."""
    loader = importlib.machinery.ExtensionFileLoader("convtool.engine._native", str(path))
    spec = importlib.util.spec_from_loader("convtool.engine._native", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def cpu_levels() -> list[str]:
    """The levels this CPU runs, from /proc/cpuinfo's flags (for --builds)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return ["baseline"]
    levels = ["baseline"]
    if {"avx2", "fma", "bmi2"} <= flags:
        levels.insert(0, "v3")
        if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
            levels.insert(0, "v4")
    return levels


def variants(builds: Path | None, also: list[Path], into: Path) -> dict[str, Callable[[], None]]:
    """Name -> a function that makes the engine run that variant next."""
    out: dict[str, Callable[[], None]] = {}

    def numpy_engine() -> None:
        os.environ[native.NATIVE_ENV] = "0"

    def levels_of(module, prefix: str) -> None:
        if not hasattr(module, "select_level"):  # (a build from before the levels)
            out[prefix + "built"] = lambda: (
                os.environ.pop(native.NATIVE_ENV, None),
                setattr(native, "_module", module),
            )[0]
            return
        for level in module.info()["levels"]:
            out[prefix + level] = lambda level=level: (
                os.environ.pop(native.NATIVE_ENV, None),
                setattr(native, "_module", module),
                module.select_level(level),
            )[0]

    module = native._load()
    if module is not None:
        levels_of(module, "")
    elif builds is None:
        sys.exit("the compiled kernels are not built: python setup.py build_ext --inplace")
    for k, path in enumerate(also):
        levels_of(load(path), f"{k + 1}:")
    for level in cpu_levels() if builds is not None else []:
        m = load(build(builds, level, into))
        out[f"-march {level}"] = lambda m=m: (
            os.environ.pop(native.NATIVE_ENV, None),
            setattr(native, "_module", m),
        )[0]
    out["numpy"] = numpy_engine
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--builds", nargs="?", const=str(ROOT), default=None, metavar="SRC")
    parser.add_argument("--also", action="append", default=[], type=Path, metavar="SO")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="1024² and 1080p (quick check)")
    parser.add_argument("--case", default="", help="only the cases whose label holds this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        builds = Path(args.builds) if args.builds else None
        chosen = variants(builds, args.also, Path(tmp))
        names = list(chosen)
        first = names[0]
        print(f"min of {args.repeat} runs, one thread; time / {first}'s, and numpy's / each's")
        print(f"{'case':38}" + "".join(f"{n:>14}" for n in names))
        for case in [c for c in cases(args.small) if args.case in c.label]:
            best = dict.fromkeys(names, float("inf"))
            results = {}
            for _ in range(args.repeat):
                for name in names:
                    chosen[name]()
                    t0 = time.perf_counter()
                    results[name] = case.run()
                    best[name] = min(best[name], time.perf_counter() - t0)
            same = [n for n in names[1:-1] if results[n].tobytes() == results[first].tobytes()]
            ms = "".join(f"{1e3 * best[n]:>12.1f}ms" for n in names)
            ratios = "".join(f"{best[n] / best[first]:>13.2f}x" for n in names)
            speedups = "".join(f"{best['numpy'] / best[n]:>13.2f}x" for n in names)
            bits = "same bits" if len(same) == len(names) - 2 else "BITS DIFFER"
            print(f"{case.label:38}{ms}  ({bits})")
            print(f"{'  / ' + first:38}{ratios}")
            print(f"{'  numpy /':38}{speedups}")
        chosen[first]()
    shutil.rmtree(Path(tmp), ignore_errors=True)


if __name__ == "__main__":
    main()

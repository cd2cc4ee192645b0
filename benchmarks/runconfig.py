"""What one benchmark run knows: its mode (sizes, repeats), the programs it compares, its log."""

from __future__ import annotations

import compileall
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from benchlib import find_program

ROOT = Path(__file__).resolve().parent.parent  # the source tree being benchmarked


@dataclass(frozen=True)
class Config:
    """Sizes and repeat counts of one mode (full, quick, or the test's smoke)."""

    name: str
    engine_sides: tuple[int, ...]  # section 1: square float32 images
    uint8_size: tuple[int, int]  # section 1: (width, height) of the uint8 RGB image
    naive_macs: float  # multiply-adds one naive run may do; sets the side of its crop
    cli_size: tuple[int, int]  # section 2: (width, height) of the RGB PNG, JPEG and 16-bit PNG
    grey_size: tuple[int, int]  # section 2: (width, height) of the 8-bit grey PNG
    startup_repeats: int
    memory_side: int  # section 3: square float32 image in each child
    big_side: int | None  # section 3: the 8-bit giant, full mode only
    batch_count: int  # section 4
    batch_side: int
    scene_side: int  # section 5
    templates: tuple[int, ...]
    large_side: int  # section 6: square 8-bit tiled TIFF (--quick runs it only when asked)
    repeats: int  # timed runs per measurement at most
    budget: float  # seconds of timed runs per measurement, beyond which runs stop


MODES = {
    "full": Config(
        name="full",
        engine_sides=(2048, 4096),
        uint8_size=(3840, 2160),
        naive_macs=5e8,
        cli_size=(3840, 2160),
        grey_size=(6000, 4000),
        startup_repeats=15,
        memory_side=4096,
        big_side=20000,
        batch_count=200,
        batch_side=512,
        scene_side=1024,
        templates=(32, 128),
        large_side=40000,
        repeats=7,
        budget=2.0,
    ),
    "quick": Config(
        name="quick",
        engine_sides=(1024,),
        uint8_size=(1920, 1080),
        naive_macs=1e8,
        cli_size=(1920, 1080),
        grey_size=(1500, 1000),
        startup_repeats=10,
        memory_side=1024,
        big_side=None,
        batch_count=40,
        batch_side=512,
        scene_side=1024,
        templates=(32, 128),
        large_side=4000,
        repeats=7,
        budget=0.6,
    ),
    # Tiny sizes and one run of each: the test suite checks that the script works.
    "smoke": Config(
        name="smoke",
        engine_sides=(96,),
        uint8_size=(160, 120),
        naive_macs=1e6,
        cli_size=(160, 120),
        grey_size=(150, 100),
        startup_repeats=2,
        memory_side=96,
        big_side=None,
        batch_count=3,
        batch_side=64,
        scene_side=128,
        templates=(8, 16),
        large_side=512,
        repeats=1,
        budget=0.0,
    ),
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def gaussian_1d(sigma: float, size: int) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps, centred at ``size // 2``."""
    g = np.exp(-0.5 * (np.arange(size) - size // 2) ** 2 / sigma**2)
    return g / g.sum()


@dataclass(frozen=True)
class Tools:
    """The command lines of convtool and its peers; ``None`` where a peer is not installed."""

    convtool: list[str]
    env: dict[str, str]  # convtool's children import it from this source tree
    convert: list[str] | None
    mogrify: list[str] | None
    vips: str | None

    @classmethod
    def find(cls) -> Tools:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        magick = find_program("magick")
        convert = [magick] if magick else _listed(find_program("convert"))
        mogrify = [magick, "mogrify"] if magick else _listed(find_program("mogrify"))
        # Bytecode for the source tree, as `pip install` writes it: with
        # PYTHONDONTWRITEBYTECODE set (as on this machine) every run would compile convtool
        # anew, ~50 ms that no installed copy pays.
        compileall.compile_dir(str(ROOT / "convtool"), quiet=1)
        # The console script where the venv has one (what users type), else `python -m`.
        script = Path(sys.executable).with_name("convtool")
        convtool = [str(script)] if script.is_file() else [sys.executable, "-m", "convtool"]
        return cls(convtool, env, convert, mogrify, find_program("vips"))


def _listed(program: str | None) -> list[str] | None:
    return [program] if program else None

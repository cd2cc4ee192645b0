"""convtool's benchmark: engine, command line, memory, batch and template matching, side by side.

Every figure comes from one run on one machine, and every comparison is a ratio within that
run, so a busy or slow machine shifts all tools alike. Each result is checked against
scipy.ndimage (float64) or against its peer before it is timed.

    .venv/bin/python benchmarks/bench.py                  # full run, ~10 min on 2 cores
    .venv/bin/python benchmarks/bench.py --quick          # smaller sizes, < 2 min
    .venv/bin/python benchmarks/bench.py --quick --sections 1,5 --output /tmp/B.md
    .venv/bin/python benchmarks/bench.py --quick --sections 6     # large images at 4000²

It writes BENCHMARKS.md (or --output). Peers that are not installed (OpenCV, ImageMagick,
libvips) are reported as such; nothing fails for their absence. The sections run inside
Python live in library.py (1, 3, 5), the kernels and implementations they compare in
peers.py, those timing command lines in commands.py (2, 4), images larger than memory and
one image on Dask in large.py (6); modes and programs in runconfig.py; timing, child
processes, test images and tables in benchlib.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path

from benchlib import (
    Goal,
    Section,
    Table,
    goals_table,
    load_average,
    machine_facts,
    module_version,
    program_version,
)
from commands import section_batch, section_cli
from large import section_large
from library import probe_memory, section_engine, section_match, section_memory
from runconfig import MODES, ROOT, Config, Tools, log

SECTIONS = {
    1: ("Engine throughput", section_engine),
    2: ("Command line", section_cli),
    3: ("Memory", section_memory),
    4: ("Batch throughput", section_batch),
    5: ("Template matching", section_match),
    6: ("Images larger than memory, and one image on Dask", section_large),
}
# --quick and --smoke leave out section 6 (gigapixel files) unless --sections names it.
SHORT_MODE_SECTIONS = "1,2,3,4,5"


def versions(tools: Tools) -> dict[str, str]:
    cv2 = module_version("cv2")
    git = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "convtool": f"{module_version('convtool')} (git {git or '?'}, work tree as it was)",
        "numpy": module_version("numpy"),
        "scipy": module_version("scipy"),
        "OpenCV (cv2)": cv2,
        "Pillow": module_version("PIL"),
        "ImageMagick": program_version((tools.convert or [None]) + ["-version"]),
        "libvips": program_version([tools.vips, "--version"]),
        "zarr": module_version("zarr"),
        "dask": module_version("dask"),
        "dask-image": module_version("dask_image"),
    }


def render(
    sections: list[Section],
    cfg: Config,
    facts: list[tuple[str, str]],
    command: str,
    started: datetime.datetime,
    seconds: float,
) -> str:
    """The whole BENCHMARKS.md: how it was made, on what, the goals at a glance, the sections."""
    machine = Table("", ["machine", "value"], [[k, v] for k, v in facts])
    goals = [
        Goal(f"{s.title.split('.')[0]}: {g.text}", g.measured, g.met)
        for s in sections
        for g in s.goals
    ]
    counts = {v: sum(g.met is v for g in goals) for v in (True, False, None)}
    head = (
        "# convtool benchmarks\n\n"
        f"Written by `benchmarks/bench.py` ({cfg.name} mode) on "
        f"{started:%Y-%m-%d %H:%M} UTC in {seconds / 60:.1f} min. Command:\n\n"
        f"```\n{command}\n```\n\n"
        "All figures come from this one run; ratios compare tools within it. The machine "
        "may have been shared with other work (see the load averages). Run "
        "`python benchmarks/bench.py --help` for the options.\n\n" + machine.markdown()
    )
    summary = (
        f"## Goals at a glance\n\n{counts[True]} met, {counts[False]} not met, "
        f"{counts[None]} not measured (the number before the colon is the section).\n\n"
        + goals_table(goals, caption="").markdown()
    )
    return "\n\n".join([head, summary] + [s.markdown() for s in sections]) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 2 minutes")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, one run each: checks the script works (tests)",
    )
    parser.add_argument(
        "--sections",
        default=None,
        help="comma-separated sections to run (default: all; 1-5 with --quick or --smoke)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "BENCHMARKS.md",
        help="Markdown file to write (default: BENCHMARKS.md at the top)",
    )
    parser.add_argument(
        "--probe", nargs=3, metavar=("KERNEL", "IMPL", "SIDE"), help=argparse.SUPPRESS
    )  # section 3's child processes
    args = parser.parse_args(argv)
    if args.sections is None:
        args.sections = (
            SHORT_MODE_SECTIONS if args.quick or args.smoke else ",".join(map(str, SECTIONS))
        )
    try:
        args.sections = sorted({int(s) for s in args.sections.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sections takes numbers like 1,3,5, got {args.sections!r}")
    if not set(args.sections) <= set(SECTIONS):
        parser.error(f"--sections: choose among {', '.join(map(str, SECTIONS))}")
    return args


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))  # benchmark the source tree, installed or not
    args = parse_args(argv)
    if args.probe:
        kernel, impl, side = args.probe
        print(json.dumps(probe_memory(kernel, impl, int(side))))
        return 0
    cfg = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    tools = Tools.find()
    facts = machine_facts(versions(tools))  # before the run: the load average at the start
    started, clock = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    sections = []
    for number in args.sections:
        title, run = SECTIONS[number]
        log(f"section {number}: {title}")
        section_start = time.perf_counter()
        try:
            section = run(cfg, tools)
        except Exception as err:  # noqa: BLE001 - one broken section must not lose the others
            traceback.print_exc()
            section = Section(notes=[f"Section failed: {err!r}"])
        section.title = f"{number}. {title}"
        section.seconds = time.perf_counter() - section_start
        sections.append(section)
    command = shlex.join(
        ["python", "benchmarks/bench.py"] + (argv if argv is not None else sys.argv[1:])
    )
    facts.append(("load average at the end (1, 5, 15 min)", load_average()))
    text = render(sections, cfg, facts, command, started, time.perf_counter() - clock)
    args.output.write_text(text)
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

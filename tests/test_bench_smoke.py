"""The benchmark script runs end to end on tiny sizes and writes its Markdown tables.

Only the sections that need no command line peers run here (engine, memory, template
matching), to keep the test near 10 s; the command line and batch sections are exercised by
``benchmarks/bench.py --quick``.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_smoke_run_writes_a_table_per_section(tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench.py"),
            "--smoke",
            "--sections",
            "1,3,5",
            "--output",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    text = report.read_text()
    assert "Section failed" not in text, text
    for title in ("## 1. Engine throughput", "## 3. Memory", "## 5. Template matching"):
        assert title in text
    # Every kernel has a checked, timed convtool row (not "failed" or "wrong result").
    engine = text.split("## 1. Engine throughput")[1].split("\n## ")[0]
    engine_rows = [line for line in engine.splitlines() if "| convtool auto |" in line]
    assert len(engine_rows) == 6
    assert all(line.split("|")[3].strip()[0].isdigit() for line in engine_rows), engine_rows
    assert "| machine | value |" in text


def test_stage_breakdown_times_every_stage_of_a_filter_run(tmp_path):
    # Section 2's breakdown calls into the library stage by stage: it must keep up with it.
    import json

    from PIL import Image

    source = tmp_path / "rgb.png"
    pixels = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(source)
    for spec in ("binomial:5", "gaussian:sigma=1.3"):  # the integer route and the float one
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "stages.py"), str(source), spec, "1"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        times = json.loads(done.stdout)
        stages = ("imports", "read-ahead", "decode", "decode alone", "convert", "filter", "map")
        stages += ("encode", "write")
        assert set(times) == set(stages)
        assert all(times[stage] >= 0 for stage in stages)

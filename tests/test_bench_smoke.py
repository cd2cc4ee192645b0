"""The benchmark script runs end to end on tiny sizes and writes its Markdown tables.

Only the sections that need no command line peers run here (engine, memory, template
matching), to keep the test near 10 s; the command line and batch sections are exercised by
``benchmarks/bench.py --quick``.
"""

import subprocess
import sys
from pathlib import Path

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

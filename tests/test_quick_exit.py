"""The CLI's quick exit (`convtool.cli.app.leave`): it skips only the interpreter's teardown."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_it_keeps_the_exit_code_the_atexit_handlers_and_buffered_output(tmp_path):
    marker = tmp_path / "atexit-ran"
    done = run(f"""
        import atexit, sys
        from convtool.cli.app import leave
        atexit.register(lambda: open({str(marker)!r}, "w").close())
        sys.stdout.write("buffered, not yet flushed")
        leave(3)
        print("not reached")
    """)
    assert done.returncode == 3
    assert done.stdout == "buffered, not yet flushed"
    assert marker.exists()


def test_it_steps_aside_while_another_thread_is_working(tmp_path):
    result = tmp_path / "written-by-the-thread"
    done = run(f"""
        import threading, time
        from convtool.cli.app import leave
        def work():
            time.sleep(0.3)
            open({str(result)!r}, "w").write("done")
        threading.Thread(target=work).start()
        leave(0)
        print("ordinary exit")
    """)
    assert done.returncode == 0 and "ordinary exit" in done.stdout
    assert result.read_text() == "done"


def test_the_engines_idle_band_threads_do_not_hold_it_back():
    done = run("""
        import numpy as np
        from convtool.engine import correlate
        from convtool.cli.app import leave
        import threading
        correlate(np.ones((600, 600)), np.ones((3, 3)), threads=2)  # starts the kept pool
        assert any(t.name.startswith("convtool-band") for t in threading.enumerate())
        leave(5)
        print("ordinary exit")
    """)
    assert done.returncode == 5 and "ordinary exit" not in done.stdout

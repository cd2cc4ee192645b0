"""The compiled kernels' build and switches: a failed build leaves the numpy engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_failing_compiler_leaves_no_module_and_no_error(tmp_path):
    (tmp_path / "convtool" / "engine").mkdir(parents=True)
    shutil.copy(ROOT / "setup.py", tmp_path / "setup.py")
    for source in (ROOT / "convtool" / "engine").glob("_native*.[ch]"):  # every C source
        shutil.copy(source, tmp_path / "convtool" / "engine" / source.name)
    env = dict(os.environ, CC="false", LDSHARED="false")
    done = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "numpy engine will be used" in done.stderr + done.stdout
    assert not list(tmp_path.rglob("_native*.so"))


def test_switched_off_by_the_environment(monkeypatch):
    from convtool.engine import native

    monkeypatch.setenv(native.NATIVE_ENV, "0")
    assert native.module() is None
    assert native.implementation() == "numpy (CONVTOOL_NATIVE=0)"


def test_the_compiled_kernels_run_the_direct_and_separable_methods(monkeypatch):
    import numpy as np

    from convtool.engine import native

    monkeypatch.delenv(native.NATIVE_ENV, raising=False)
    if native._load() is None:
        pytest.skip("the compiled kernels were not built")
    calls = []
    real = native._load()

    class Spy:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(real, name)

    monkeypatch.setattr(native, "_module", Spy())
    from convtool.engine import correlate

    image = np.random.default_rng(0).random((40, 40), dtype=np.float32)
    correlate(image, np.ones((3, 3)), method="separable")
    correlate(image, np.arange(9.0).reshape(3, 3), method="direct")
    assert calls == ["correlate_separable", "correlate_direct"]


@pytest.mark.parametrize("switch, shown", [("0", "engine: numpy (CONVTOOL_NATIVE=0)"), ("", "")])
def test_kernels_show_names_the_implementation(switch, shown, kernels_show):
    from convtool.engine import native

    done = kernels_show(**{native.NATIVE_ENV: switch})
    assert done.returncode == 0, done.stderr
    expected = shown or f"engine: {native.implementation()}"
    assert expected in done.stdout

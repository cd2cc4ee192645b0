"""Fixtures shared by the test modules (keep this small)."""

from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so every failure reproduces."""
    return np.random.default_rng(20240601)


@pytest.fixture
def stack(rng) -> np.ndarray:
    """Two 11x13 float64 channels of random values in [-1, 1): small, odd-sized, not square."""
    return rng.uniform(-1.0, 1.0, size=(2, 11, 13))


@pytest.fixture(scope="module")
def empty_folder(tmp_path_factory):
    """Run in an empty folder, so random spec text that happens to name a file finds none."""
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("empty"))
    yield
    os.chdir(old)


@pytest.fixture(scope="module", params=["compiled", "numpy"])
def implementation(request):
    """Run a module's tests on each implementation of the engine: compiled kernels, then numpy.

    Module-scoped (hypothesis refuses function-scoped fixtures), through the environment
    variable the engine reads at each call. In CI a missing compiled module is a failure.
    """
    from convtool.engine import native

    old = os.environ.get(native.NATIVE_ENV)
    if request.param == "compiled":
        if native._load() is None:
            if os.environ.get("CI"):
                pytest.fail("the compiled kernels were not built (python setup.py build_ext)")
            pytest.skip("the compiled kernels were not built")
        os.environ.pop(native.NATIVE_ENV, None)
    else:
        os.environ[native.NATIVE_ENV] = "0"
    yield request.param
    if old is None:
        os.environ.pop(native.NATIVE_ENV, None)
    else:
        os.environ[native.NATIVE_ENV] = old


@pytest.fixture
def poisoned_empty(monkeypatch):
    """np.empty and np.empty_like fill what they make with NaN (or 0xAB bytes): whatever
    reads memory it never wrote then shows it (the kernel shape that alpha's carry once took
    from np.empty was, now and then, rejected for holding NaN)."""
    empty, empty_like = np.empty, np.empty_like

    def poison(array):
        if array.dtype.kind in "fc":
            array.fill(np.nan)
        elif array.dtype.kind in "iub":
            array.view(np.uint8).fill(0xAB)
        return array

    monkeypatch.setattr(np, "empty", lambda *a, **k: poison(empty(*a, **k)))
    monkeypatch.setattr(np, "empty_like", lambda *a, **k: poison(empty_like(*a, **k)))


@pytest.fixture
def kernels_show():
    """``convtool kernels show box:3`` in a fresh process, with these environment variables
    set (a value of None: removed); returns the finished process."""
    import subprocess
    import sys
    from pathlib import Path

    def run(**variables: str | None) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        for name, value in variables.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return subprocess.run(
            [sys.executable, "-m", "convtool", "kernels", "show", "box:3"],
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run

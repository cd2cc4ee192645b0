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

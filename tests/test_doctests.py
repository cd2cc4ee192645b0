"""The examples in the docstrings run, and show what they say.

Every module of ``convtool/`` whose source holds a ``>>>`` example is run by :mod:`doctest`
(found by reading the source, so a new example is run without being listed here).
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "convtool"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


WITH_EXAMPLES = sorted(
    module_name(path)
    for path in PACKAGE.rglob("*.py")
    if ">>> " in path.read_text(encoding="utf-8")
)


def test_the_public_functions_have_examples():
    """The modules of convolve, correlate, gradient_magnitude and match_template have some."""
    assert {"convtool.pipeline.filters", "convtool.match.scores"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{name}: no example found"
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"

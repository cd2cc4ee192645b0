"""Exact, fast 2-D correlation and convolution (numpy stride tricks; the engine never touches files)."""

from __future__ import annotations

from convtool.engine.api import (
    METHODS,
    convolve,
    correlate,
)
from convtool.engine.plan import (
    MAX_STEP,
    MAX_THREADS,
    Axis,
    Plan,
    Tuning,
    choose_method,
    separable_factors,
)

__all__ = [
    "METHODS",
    "MAX_STEP",
    "MAX_THREADS",
    "correlate",
    "convolve",
    "Axis",
    "Plan",
    "Tuning",
    "choose_method",
    "separable_factors",
]

"""Exact, fast 2-D correlation and convolution (numpy stride tricks; the engine never touches files)."""

from __future__ import annotations

from convtool.engine.api import (
    METHODS,
    carry,
    convolve,
    correlate,
)
from convtool.engine.plan import (
    Axis,
    Plan,
    Tuning,
    choose_method,
    separable_factors,
)

__all__ = [
    "METHODS",
    "carry",
    "correlate",
    "convolve",
    "Axis",
    "Plan",
    "Tuning",
    "choose_method",
    "separable_factors",
]

"""Exact, fast 2-D correlation and convolution (numpy stride tricks; the engine never touches files)."""

from __future__ import annotations

from convtool.engine.api import (
    METHODS,
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
from convtool.engine.schedule import BandObserver, observe_bands

__all__ = [
    "METHODS",
    "correlate",
    "convolve",
    "Axis",
    "Plan",
    "Tuning",
    "choose_method",
    "separable_factors",
    "BandObserver",
    "observe_bands",
]

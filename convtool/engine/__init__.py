"""Exact, fast 2-D correlation and convolution and their transposes (numpy stride tricks; the
engine never touches files)."""

from __future__ import annotations

from convtool.engine.api import (
    METHODS,
    carry,
    convolve,
    correlate,
)
from convtool.engine.bands import source_positions
from convtool.engine.plan import (
    MAX_STEP,
    MAX_THREADS,
    Axis,
    Plan,
    Tuning,
    choose_method,
    separable_factors,
)
from convtool.engine.schedule import BandObserver, observe_bands
from convtool.engine.transposed import (
    convolve_transposed,
    correlate_transposed,
    transposed_shape,
)

__all__ = [
    "METHODS",
    "MAX_STEP",
    "MAX_THREADS",
    "carry",
    "correlate",
    "convolve",
    "correlate_transposed",
    "convolve_transposed",
    "transposed_shape",
    "source_positions",
    "Axis",
    "Plan",
    "Tuning",
    "choose_method",
    "separable_factors",
    "BandObserver",
    "observe_bands",
]

"""Steps (convolve, grad:, pooling) and chains applied N times, with alpha and channels."""

from __future__ import annotations

from convtool.pipeline.chain import (
    ALPHA_MODES,
    GRADIENT_NORMS,
    GRADIENT_OPERATORS,
    MAX_ITERATIONS,
    POOL_KINDS,
    Chain,
    ConvolveStep,
    FilterOptions,
    GradientStep,
    PoolStep,
    Progress,
    Step,
    combine_gradients,
    gradient_magnitude,
    parse_channels,
    parse_step,
    parse_steps,
    pool,
    step_entries,
)

__all__ = [
    "ALPHA_MODES",
    "GRADIENT_NORMS",
    "GRADIENT_OPERATORS",
    "MAX_ITERATIONS",
    "POOL_KINDS",
    "Chain",
    "ConvolveStep",
    "FilterOptions",
    "GradientStep",
    "PoolStep",
    "Progress",
    "Step",
    "combine_gradients",
    "gradient_magnitude",
    "parse_channels",
    "parse_step",
    "parse_steps",
    "pool",
    "step_entries",
]

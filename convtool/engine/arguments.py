"""The engine's arguments checked: images, kernels, numbers and pairs, one UsageError each.

Every public engine function (correlate, convolve, carry, the transposes, the row plans of
streaming) takes its image, kernel, stride, dilation, origin and thread count through
these, so a wrong argument gets the same message wherever it is given.
"""

from __future__ import annotations

import operator

import numpy as np

from convtool.engine.plan import _RANK1_RTOL
from convtool.errors import UsageError


def as_number(value, name: str) -> float:
    """``value`` as a float, or UsageError naming ``name``."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, got {value!r}") from None


def as_image(image) -> np.ndarray:
    """``image`` as an array of real numbers with at least 2 non-empty dimensions."""
    x = np.asarray(image)
    if x.ndim < 2:
        raise UsageError(f"image must have at least 2 dimensions (..., H, W), got shape {x.shape}")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise UsageError(f"image is empty: shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise UsageError(f"image must hold real numbers, got dtype {x.dtype}")
    return x


def as_kernel(kernel):
    """Return (weights float64 (kh, kw), factors or None, origin) from any accepted kernel."""
    weights = getattr(kernel, "weights", kernel)
    if isinstance(weights, str):
        raise UsageError(
            f"the engine takes kernel weights, not a spec like {weights!r}; use "
            "convtool.correlate / convtool.convolve, or convtool.get_kernel first"
        )
    try:
        # (numpy makes None a NaN: say what was given, not that a weight is not finite)
        given = np.asarray(weights)
        if weights is None or (given.dtype == object and any(v is None for v in given.flat)):
            raise TypeError
        w = np.array(given, dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError(
            f"kernel must be a 2-D array of numbers, got {type(weights).__name__}"
        ) from None
    if w.ndim < 2:  # a scalar is 1x1, a 1-D array one row
        w = w.reshape(1, -1)
    if w.ndim != 2:
        raise UsageError(f"kernel must be 2-D (1-D means one row), got shape {w.shape}")
    if w.size == 0:
        raise UsageError(f"kernel is empty: shape {w.shape}")
    if not np.isfinite(w).all():
        raise UsageError("kernel weights must be finite, got NaN or infinity")
    factors = getattr(kernel, "factors", None)
    if factors is not None:
        column, row = (np.asarray(f, dtype=np.float64).ravel() for f in factors)
        outer = np.outer(column, row)
        if outer.shape != w.shape or np.abs(outer - w).max() > _RANK1_RTOL * np.abs(w).max():
            raise UsageError("kernel factors (column, row) do not multiply to its weights")
        factors = (column, row)
    return w, factors, getattr(kernel, "origin", (0, 0))


def as_pair(
    value, name: str, minimum: int | None = 1, maximum: int | None = None
) -> tuple[int, int]:
    """An int or a pair of ints as (rows, columns), each within ``minimum..maximum``."""
    items = value if isinstance(value, (tuple, list, np.ndarray)) else (value, value)
    if len(items) != 2:
        raise UsageError(
            f"{name} must be an integer or a pair of integers, got {short_repr(value)}"
        )
    rows, cols = (as_integer(v, name, minimum, maximum, shown=value) for v in items)
    return rows, cols


def as_integer(
    value, name: str, minimum: int | None = 1, maximum: int | None = None, *, shown=None
) -> int:
    """``value`` as an int within ``minimum..maximum`` (bools and fractions refused)."""
    shown = value if shown is None else shown
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise UsageError(
            f"{name} must be an integer or a pair of integers, got {short_repr(shown)}"
        ) from None
    if minimum is not None and number < minimum:
        raise UsageError(f"{name} must be at least {minimum}, got {short_repr(shown)}")
    if maximum is not None and number > maximum:
        raise UsageError(f"{name} must be at most {maximum:,}, got {short_repr(shown)}")
    return number


def short_repr(value) -> str:
    """``repr(value)`` for a message, short (an int of 5000 digits cannot even be printed)."""
    try:
        text = repr(value)
    except ValueError:
        return "a number of thousands of digits"
    return text if len(text) <= 60 else text[:57] + "..."

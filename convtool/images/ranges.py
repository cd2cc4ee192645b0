"""Range mapping: from float results to the values an output depth holds.

Results stay floating point, unclipped, in their source's value scale until they are
written; :func:`output_samples` then maps them into the output depth's range
(:func:`map_range`: ``clip``, ``abs``, ``offset`` or ``rescale``), changes scale between 8
and 16 bits, rounds half to even and casts. No file formats here: see :mod:`convtool.images`.
"""

from __future__ import annotations

import numpy as np

from convtool.choices import RangeMode, values
from convtool.errors import UsageError

__all__ = ["MAX_VALUES", "RANGE_MODES", "finite_span", "map_range", "output_samples"]

RANGE_MODES = values(RangeMode)
MAX_VALUES = {8: 255, 16: 65535, 32: 4294967295}
"""The top of each integer depth's value scale."""

_INT_DTYPES = {8: np.uint8, 16: np.uint16, 32: np.uint32}


def map_range(
    pixels: np.ndarray, mode: str, max_value: float, span: tuple[float, float] | None = None
) -> np.ndarray:
    """Map values into 0..max_value as an integer output needs; return floats, unrounded.

    ``clip``: values below 0 become 0, above max_value become max_value. ``abs``: |x|, then
    clip. ``offset``: add half the range ((max_value + 1) / 2: 128 for 8-bit, 32768 for
    16-bit; max_value / 2 for a 0..1 scale), then clip — zero lands mid-grey. ``rescale``:
    the minimum over all channels goes to 0, the maximum to max_value, linearly; a constant
    image maps to 0; NaN and infinities are left out of the minimum and maximum (*span*
    gives them instead: the frames of an animation share one). NaN always becomes 0.
    """
    if mode not in RANGE_MODES:
        raise UsageError(f"range mode must be one of {', '.join(RANGE_MODES)}; got {mode!r}")
    x = np.asarray(pixels)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    if mode == "abs":
        x = np.abs(x)
    elif mode == "offset":
        x = x + ((max_value + 1) / 2 if max_value > 1 else max_value / 2)
    elif mode == "rescale":
        low, high = span if span is not None else finite_span(x)
        if high == low:
            return np.zeros_like(x)
        x = (x - low) * (max_value / (high - low))
    # fmax/fmin rather than clip: NaN becomes 0 (fmax returns the non-NaN argument).
    out = np.fmax(x, 0.0, out=None if x is pixels else x)
    return np.fmin(out, max_value, out=out)


def finite_span(x: np.ndarray) -> tuple[float, float]:
    """The minimum and maximum of the finite values of *x* ((0, 0) if there are none)."""
    low, high = float(np.nanmin(x, initial=np.inf)), float(np.nanmax(x, initial=-np.inf))
    if np.isfinite(low) and np.isfinite(high):
        return low, high
    finite = x[np.isfinite(x)]  # rare: infinities present (or nothing finite at all)
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)


def output_samples(
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    source_depth: int | str,
    depth: int | str,
    range_mode: str | None,
    span: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Map, round and cast colour and alpha (None: no alpha) for the output *depth*.

    *source_depth* gives the values' scale (:data:`MAX_VALUES`; 0..1 for ``"float"``).
    Integer outputs: *range_mode* (default ``clip``) into 0..max, 8 ↔ 16-bit rescaling,
    round half to even. Float output: raw, or mapped into the source's own scale when a
    *range_mode* is given. *span*: ``rescale``'s minimum and maximum, when several arrays
    share them. Alpha is opacity (:func:`_alpha_factor`) and only ever clipped.
    """
    alpha_factor = _alpha_factor(source_depth, depth)
    if depth == "float":
        colour = pixels
        if alpha is not None and alpha_factor != 1.0:
            alpha = alpha * alpha_factor
        if range_mode is not None:
            known = MAX_VALUES.get(source_depth) if isinstance(source_depth, int) else None
            scale = known or 1.0
            colour = map_range(colour, range_mode, scale, span)
            alpha = None if alpha is None else map_range(alpha, "clip", 1.0)
        return colour, alpha
    max_value = MAX_VALUES[depth]  # type: ignore[index]
    factor = _rescale_factor(source_depth, depth)
    dtype = _INT_DTYPES[depth]  # type: ignore[index]
    if span is not None and factor != 1.0:
        span = (span[0] * factor, span[1] * factor)
    colour = map_range(_times(pixels, factor, depth), range_mode or "clip", max_value, span)
    colour = _round_to(colour, dtype)
    if alpha is not None:
        alpha = _round_to(map_range(_times(alpha, alpha_factor, depth), "clip", max_value), dtype)
    return colour, alpha


def _alpha_factor(source: int | str, target: int | str) -> float:
    """What alpha is multiplied by: it is opacity, 0..max for integers and 0..1 for float.

    Float alpha is 0 (transparent) to 1 (opaque), as float TIFF and image libraries hold
    it, whatever the scale of the float colour; so float → integer multiplies by the
    target's max and integer → float divides by the source's. Between integer depths
    alpha changes scale as the colour does (:func:`_rescale_factor`).
    """
    if source == "float" and target != "float":
        return float(MAX_VALUES[target])  # type: ignore[index]
    if source != "float" and target == "float":
        return 1.0 / MAX_VALUES[source]  # type: ignore[index]
    return _rescale_factor(source, target)


def _rescale_factor(source: int | str, target: int | str) -> float:
    """8 ↔ 16 bits change scale (255 ↔ 65535); 32-bit and float values are kept as they are."""
    if source in (8, 16) and target in (8, 16) and source != target:
        return MAX_VALUES[target] / MAX_VALUES[source]  # type: ignore[index]
    return 1.0


def _times(values: np.ndarray, factor: float, depth: int | str) -> np.ndarray:
    # float32 holds 8/16-bit values exactly; 32-bit outputs need float64 to round right.
    values = values.astype(np.float64) if depth == 32 or values.dtype.kind != "f" else values
    return values * factor if factor != 1.0 else values


def _round_to(values: np.ndarray, dtype: type) -> np.ndarray:
    """Round half to even (np.rint) and cast; *values* are already in range, without NaN."""
    return np.rint(values, out=values).astype(dtype)

"""When 8-bit samples can be filtered in integers, exactly: kernels as small integers times a scale.

A uint8 -> uint8 call (``correlate(..., out_dtype=np.uint8)``) wants
``clip(rint(sum w * x), 0, 255)`` with float64 sums and ``np.rint``'s ties to even. The
compiled integer kernels give exactly that, without a float image, when the weights are
``w = n * g / D`` with small integers ``n``, ``g``, ``D``:

- ``T = sum n * x`` is computed exactly (16-bit lanes when its range ``255 * sum|n|`` is
  under 2^16, else 32-bit: so ``255 * sum|n| < 2^31`` is required);
- ``D`` a power of two: ``T * g / D`` is exact in float32 when ``255 * sum|n| * g < 2^24``,
  so rounding it rounds the exact value, ties to even like ``np.rint``. The float64 weights
  are then exactly ``n * g / D``, and float64 sums of 8-bit samples times them are exact
  too: the two agree bit for bit.
- ``D`` odd and ``< 2^14``: ``T * g / D`` is never a tie (``2 T g`` is even, ``(2k+1) D`` odd)
  and is at least ``1/(2D) > 2^-15`` from one, more than float32's error on any value that
  rounds into 0..255 (``<= 256 * 2^-23``) or float64's with weights within 1e-12 of
  ``n * g / D``: again the same integer.
- Anything else (Gaussians, an even ``D`` that is not a power of two like a 6x6 box's 36,
  whose exact ties float64 may round either way) keeps the float path.

The bound is stated once here; ``tests/test_uint8_path.py`` checks it against float64 then
``np.rint`` over random, all-0, all-255 and 0/255 images.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["integer_form", "integer_weights", "integer_factors"]

_MAX_ODD_DIVISOR = 1 << 14
_FLOAT32_EXACT = 1 << 24
_INT32 = 1 << 31
_ODD_RTOL = 1e-12


def integer_form(weights) -> tuple[np.ndarray, int, int] | None:
    """``(n, g, D)`` with ``weights == n * g / D`` (n int64, gcd(n) = 1, D a power of two or
    odd), or None: exact for power-of-two D, within 1e-12 of each weight for odd D."""
    w = np.ascontiguousarray(weights, dtype=np.float64)
    form = _integer_form_of(w.tobytes(), w.shape)
    if form is None:
        return None
    ints, g, d = form
    return ints.copy(), g, d  # the cached array stays as it is


@functools.lru_cache(maxsize=64)
def _integer_form_of(data: bytes, shape: tuple[int, ...]) -> tuple[np.ndarray, int, int] | None:
    """:func:`integer_form` of the weights these bytes hold: a batch asks for the same
    kernel's form several times per image (routing, the engine's choice, each factor)."""
    w = np.frombuffer(data, dtype=np.float64).reshape(shape)
    nonzero = w[w != 0]
    if nonzero.size == 0 or not np.isfinite(w).all():
        return None
    # Power-of-two denominators: every float is a dyadic rational; take them exactly.
    # (as_integer_ratio: the exact ratio, a power-of-two denominator, without fractions' import)
    ratios = [float(v).as_integer_ratio() for v in nonzero]
    denominator = max(d for _, d in ratios)
    if denominator < _INT32:
        numerators = [n * (denominator // d) for n, d in ratios]
        if max(abs(v) for v in numerators) < _INT32:
            return _reduced(w, numerators, 1, denominator)
    # Odd denominators: the smallest weight as g / D, the others integer multiples of it.
    smallest = float(np.abs(nonzero).min())
    multiples = w / smallest
    n = np.rint(multiples)
    if np.abs(multiples - n).max() > _ODD_RTOL * np.abs(n).max() or np.abs(n).max() >= _INT32:
        return None
    from fractions import Fraction  # (decimal...): only for kernels with an odd divisor

    fraction = Fraction(smallest).limit_denominator(_MAX_ODD_DIVISOR)
    g, d = fraction.numerator, fraction.denominator
    if d % 2 == 0 or abs(g / d - smallest) > _ODD_RTOL * smallest:
        return None
    ints = n.astype(np.int64)
    if np.abs(ints * (g / d) - w).max() > _ODD_RTOL * np.abs(w).max():
        return None
    return ints, g, d


def _reduced(w: np.ndarray, numerators: list[int], g: int, d: int):
    ints = np.zeros(w.shape, dtype=np.int64)
    ints[w != 0] = numerators
    common = math.gcd(*numerators)
    ints //= common
    g *= common
    shared = math.gcd(g, d)
    return ints, g // shared, d // shared


def _exact(ints: np.ndarray, g: int, d: int) -> bool:
    """The bound above: T fits int32, and T * g / D rounds as float64-then-rint does."""
    reach = 255 * int(np.abs(ints).sum())
    if reach >= _INT32:
        return False
    if d & (d - 1) == 0:  # a power of two (1 included)
        return reach * g < _FLOAT32_EXACT
    return d % 2 == 1 and d < _MAX_ODD_DIVISOR


def integer_weights(weights) -> tuple[np.ndarray, float] | None:
    """``(n, scale)``: integer weights and the scale for the exact 8-bit path, or None."""
    form = integer_form(weights)
    if form is None or not _exact(*form):
        return None
    ints, g, d = form
    return ints, g / d


def integer_factors(column, row, weights=None) -> tuple[np.ndarray, np.ndarray, float] | None:
    """``(column n, row n, scale)`` for the exact separable 8-bit path (both factors of two
    taps or more, their product within the bound), or None.

    The factors' own integer forms first; failing that, the integer form of ``weights`` (the
    2-D kernel whose factors they are) split into integer factors. The engine's factors of
    a binomial 5x5 are ``[1 4 6 4 1] * 6/256`` and ``[1 4 6 4 1] / 6`` (the column and row
    through its largest weight), and a sixth has no exact integer form: its 2-D weights
    ``n / 256`` do, and ``n`` is the outer product of two integer rows."""
    column, row = np.ravel(column), np.ravel(row)
    if column.size < 2 or row.size < 2:
        return None
    column_form, row_form = integer_form(column), integer_form(row)
    if column_form is None or row_form is None:
        return None if weights is None else _split(weights, column.size, row.size)
    (cn, cg, cd), (rn, rg, rd) = column_form, row_form
    g, d = cg * rg, cd * rd
    shared = math.gcd(g, d)
    g, d = g // shared, d // shared
    if not _exact(np.outer(cn, rn), g, d):
        return None
    return cn, rn, g / d


def _split(weights, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Integer factors of the integer form ``n * g / D`` of rank-1 ``weights``: the column
    and row of ``n`` through its largest entry, each divided by its gcd, if their outer
    product is ``n`` (then it is, up to a sign: gcd(n) = 1)."""
    form = integer_form(weights)
    if form is None or not _exact(*form) or form[0].shape != (rows, cols):
        return None
    ints, g, d = form
    i, j = np.unravel_index(np.argmax(np.abs(ints)), ints.shape)
    column = ints[:, j] // math.gcd(*ints[:, j].tolist())
    row = ints[i] // math.gcd(*ints[i].tolist())
    product = np.outer(column, row)
    if np.array_equal(-product, ints):
        column = -column
    elif not np.array_equal(product, ints):
        return None
    return column, row, g / d

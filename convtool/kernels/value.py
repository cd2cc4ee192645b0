"""The Kernel value: weights, factors, origin and offset, checked once; scaling a kernel.

Conventions (shared with the engine, which never imports this module):

- ``weights[r, c]``: row r, column c. By default the engine applies a kernel as a true
  convolution (flipped, as scipy.ndimage.convolve); derivative kernels are written so that
  ``sobel-x`` is positive where intensity rises to the right and ``sobel-y`` where it rises
  downwards. ``--correlate`` applies the weights as written.
- The centre tap is at ``k // 2 + origin`` on each axis (scipy.ndimage's ``origin``); in
  both convolution and correlation that tap sits on the output pixel.
- ``factors = (column, row)`` with ``weights == np.outer(column, row)`` when a kernel is
  known to be separable; builders construct separable kernels from their factors.

Parsed matrices (formats.MatrixData) become Kernels here, with their scale applied.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from convtool.errors import KernelError
from convtool.kernels import formats as fmt
from convtool.kernels.formats import MatrixData, Scale

__all__ = ["ZERO_SUM_TOLERANCE", "Kernel", "apply_scale", "from_data"]

# A kernel whose sum is this small relative to sum(|w|) is zero-sum (derivatives, DoG, LoG):
# normalising it by its sum would divide by rounding noise.
ZERO_SUM_TOLERANCE = 1e-9


@dataclass(frozen=True, eq=False)
class Kernel:
    """An immutable 2-D kernel: float64 weights, a display name, optional factors and origin.

    ``offset`` is added to every output pixel after filtering (libvips ``.mat`` files carry
    one); it is 0 for everything else. Weights and factors are read-only arrays.
    """

    weights: np.ndarray
    name: str = "matrix"
    factors: tuple[np.ndarray, np.ndarray] | None = None
    origin: tuple[int, int] = (0, 0)
    offset: float = 0.0

    def __post_init__(self) -> None:
        weights = _as_weights(self.weights)
        set_field = functools.partial(object.__setattr__, self)
        set_field("weights", weights)
        if not isinstance(self.name, str):
            raise KernelError(f"kernel name must be a string, got {self.name!r}")
        if self.factors is not None:
            set_field("factors", _checked_factors(self.factors, weights))
        set_field("origin", _checked_origin(self.origin, weights.shape))
        try:
            offset = float(self.offset)
        except (TypeError, ValueError):
            offset = math.nan
        if not math.isfinite(offset):
            raise KernelError(f"kernel offset must be finite, got {self.offset!r}")
        set_field("offset", offset)

    @property
    def shape(self) -> tuple[int, int]:
        return self.weights.shape

    @property
    def size(self) -> int:
        """Number of taps (rows × columns), as numpy's ``size``."""
        return self.weights.size

    @property
    def sum(self) -> float:
        """The sum of the weights (``inf`` if huge weights overflow float64)."""
        with np.errstate(over="ignore"):
            return float(self.weights.sum())

    @property
    def is_separable(self) -> bool:
        """True when the factors are known (the engine factors rank-1 kernels without them too)."""
        return self.factors is not None

    @property
    def centre(self) -> tuple[int, int]:
        """Index (row, column) of the centre tap: ``k // 2 + origin`` per axis."""
        (kr, kc), (orow, ocol) = self.shape, self.origin
        return kr // 2 + orow, kc // 2 + ocol

    def normalized(self) -> Kernel:
        """Divided by its sum; a zero-sum kernel is divided by its positive total instead.

        So a smoothing kernel sums to 1 and a derivative kernel has positive weights summing
        to 1 and negative weights to -1 (ImageMagick's ``!``). All-zero: KernelError.
        """
        with np.errstate(over="ignore"):
            total = float(np.abs(self.weights).sum())
        if total == 0:
            raise KernelError(f"cannot normalise {self.name}: all its weights are 0")
        if not math.isfinite(total):  # sums of huge weights overflow: normalise w / max|w|
            peak = float(np.abs(self.weights).max())
            unit = _rescaled(self, 1.0, peak, self.name)
            return dataclasses.replace(unit.normalized(), name=f"{self.name}@scale=!")
        divisor = self.sum
        if abs(divisor) <= ZERO_SUM_TOLERANCE * total:
            divisor = float(self.weights[self.weights > 0].sum())
        return _rescaled(self, 1.0, divisor, f"{self.name}@scale=!")

    def flipped(self) -> Kernel:
        """Rotated by 180°, with the origin mirrored as scipy does, so that correlating with
        the result equals convolving with this kernel."""
        (kr, kc), (orow, ocol) = self.shape, self.origin
        origin = (-orow - (1 - kr % 2), -ocol - (1 - kc % 2))
        factors = None if self.factors is None else (self.factors[0][::-1], self.factors[1][::-1])
        name = f"{self.name} (flipped)"
        return Kernel(self.weights[::-1, ::-1], name, factors, origin, self.offset)

    def __repr__(self) -> str:
        extra = "".join([
            ", separable" if self.factors is not None else "",
            f", origin={self.origin}" if self.origin != (0, 0) else "",
            f", offset={self.offset:g}" if self.offset else "",
        ])  # fmt: skip
        return f"Kernel({self.name!r}, {self.shape[0]}x{self.shape[1]}, sum={self.sum:.6g}{extra})"


def _as_weights(weights: Any) -> np.ndarray:
    try:
        array = np.asarray(weights)
    except (ValueError, TypeError) as exc:
        raise KernelError(
            f"kernel weights are not a rectangular array of numbers ({exc})"
        ) from None
    if array.dtype.kind not in "biuf":
        raise KernelError(f"kernel weights must be real numbers, got {array.dtype}")
    if array.ndim < 2:
        array = array.reshape(1, -1)  # a scalar is 1x1, a 1-D array one row (as the engine)
    if array.ndim != 2:
        raise KernelError(f"a kernel is 2-D, got a {array.ndim}-D array")
    fmt.check_side(*array.shape)
    array = np.array(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise KernelError("kernel weights must be finite (no NaN or infinity)")
    array.setflags(write=False)
    return array


def _checked_factors(factors: Any, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        column, row = (np.array(f, dtype=np.float64).ravel() for f in factors)
    except (ValueError, TypeError):
        raise KernelError("kernel factors must be two 1-D arrays (column, row)") from None
    if (column.size, row.size) != weights.shape:
        raise KernelError(
            f"factors of {column.size} and {row.size} taps do not fit a "
            f"{weights.shape[0]}x{weights.shape[1]} kernel"
        )
    scale = float(np.abs(weights).max()) or 1.0
    product = np.outer(column, row)
    if not np.isfinite(product).all() or np.abs(product - weights).max() > 1e-9 * scale:
        raise KernelError("kernel factors: outer(column, row) does not equal the weights")
    column.setflags(write=False)
    row.setflags(write=False)
    return (column, row)


def _checked_origin(origin: Any, shape: tuple[int, int]) -> tuple[int, int]:
    try:
        pair = tuple(origin)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(
        isinstance(o, numbers.Integral) and not isinstance(o, bool) for o in pair
    ):
        raise KernelError(f"kernel origin must be two integers (rows, columns), got {origin!r}")
    for o, k, axis in zip(pair, shape, ("rows", "columns"), strict=True):
        if not -(k // 2) <= o <= (k - 1) // 2:
            raise KernelError(
                f"origin {o} on {axis} puts the centre outside a kernel of side {k} "
                f"(allowed {-(k // 2)}..{(k - 1) // 2})"
            )
    return (int(pair[0]), int(pair[1]))


def _rescaled(kernel: Kernel, factor: float, divisor: float, name: str) -> Kernel:
    """``kernel`` times factor / divisor (dividing keeps [1 2 1]/16 exact), factors kept.

    An overflow shows as infinite weights, which the Kernel refuses with a KernelError.
    """
    with np.errstate(over="ignore"):
        if kernel.factors is None:
            weights = kernel.weights * factor / divisor
            return dataclasses.replace(kernel, weights=weights, name=name)
        column, row = kernel.factors
        column = column * factor / divisor
    return dataclasses.replace(kernel, weights=np.outer(column, row), name=name,
                               factors=(column, row))  # fmt: skip


def _zero_sum_normalized(kernel: Kernel, name: str) -> Kernel:
    """Positive weights scaled to sum 1 and negative ones to -1 (ImageMagick's ``^``)."""
    with np.errstate(over="ignore"):
        total = float(np.abs(kernel.weights).sum())
    if not math.isfinite(total):  # sums of huge weights overflow: work on w / max|w|
        unit = _rescaled(kernel, 1.0, float(np.abs(kernel.weights).max()), kernel.name)
        return _zero_sum_normalized(unit, name)
    if total == 0 or abs(kernel.sum) <= ZERO_SUM_TOLERANCE * total:
        return dataclasses.replace(kernel.normalized(), name=name)
    w = kernel.weights
    positive, negative = float(w[w > 0].sum()), float(-w[w < 0].sum())
    with np.errstate(over="ignore"):
        scaled = np.where(w > 0, w / (positive or 1.0), w / (negative or 1.0))
    return dataclasses.replace(kernel, weights=scaled, factors=None, name=name)


def apply_scale(kernel: Kernel, scale: Scale, name: str | None = None) -> Kernel:
    """Apply a parsed scale (see formats.parse_scale): normalise, then multiply."""
    name = name or f"{kernel.name}@scale={scale.text}"
    if scale.normalize == "sum":
        kernel = kernel.normalized()
    elif scale.normalize == "zero-sum":
        kernel = _zero_sum_normalized(kernel, name)
    return _rescaled(kernel, scale.factor, scale.divisor, name)


def from_data(data: MatrixData, name: str) -> Kernel:
    """The kernel a parsed file or spec describes, its scale applied."""
    kernel = Kernel(data.weights, name, data.factors, data.origin, data.offset)
    return apply_scale(kernel, data.scale, name) if data.scale else kernel

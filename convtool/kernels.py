"""Convolution kernels: the Kernel value, named builders, the registry and kernel specs.

Conventions (shared with the engine, which never imports this module):

- ``weights[r, c]``: row r, column c. By default the engine applies a kernel as a true
  convolution (flipped, as scipy.ndimage.convolve); derivative kernels are written so that
  ``sobel-x`` is positive where intensity rises to the right and ``sobel-y`` where it rises
  downwards. ``--correlate`` applies the weights as written.
- The centre tap is at ``k // 2 + origin`` on each axis (scipy.ndimage's ``origin``); in
  both convolution and correlation that tap sits on the output pixel.
- ``factors = (column, row)`` with ``weights == np.outer(column, row)`` when a kernel is
  known to be separable; builders construct separable kernels from their factors.

Fixed kernels (sobel-x, kirsch-n, ...) are text files in the top-level ``kernels/`` folder,
shipped as the package ``convtool._kernels``; parametric ones are the builders below.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.resources
import math
import numbers
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import kernel_formats as fmt
from .errors import KernelError
from .kernel_formats import MAX_KERNEL_SIDE, MatrixData, Scale

__all__ = [
    "MAX_KERNEL_SIDE", "Kernel", "KernelEntry", "Param", "get_kernel", "parse_kernel_spec",
    "read_kernel_file", "compose", "list_kernels", "identity", "box", "gaussian", "binomial",
    "laplacian", "sharpen", "kirsch", "log", "dog", "unsharp",
]  # fmt: skip

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
        return float(self.weights.sum())

    @property
    def is_separable(self) -> bool:
        """True when the factors are known (the engine may still find others by SVD)."""
        return self.factors is not None

    @property
    def centre(self) -> tuple[int, int]:
        """Index (row, column) of the centre tap: ``k // 2 + origin`` per axis."""
        return tuple(k // 2 + o for k, o in zip(self.shape, self.origin, strict=True))

    def normalized(self) -> Kernel:
        """Divided by its sum; a zero-sum kernel is divided by its positive total instead.

        So a smoothing kernel sums to 1 and a derivative kernel has positive weights summing
        to 1 and negative weights to -1 (ImageMagick's ``!``). All-zero: KernelError.
        """
        total = float(np.abs(self.weights).sum())
        if total == 0:
            raise KernelError(f"cannot normalise {self.name}: all its weights are 0")
        divisor = self.sum
        if abs(divisor) <= ZERO_SUM_TOLERANCE * total:
            divisor = float(self.weights[self.weights > 0].sum())
        return _rescaled(self, 1.0, divisor, f"{self.name}@scale=!")

    def flipped(self) -> Kernel:
        """Rotated by 180°, with the origin mirrored as scipy does, so that correlating with
        the result equals convolving with this kernel."""
        origin = tuple(-o - (1 - k % 2) for k, o in zip(self.shape, self.origin, strict=True))
        factors = None if self.factors is None else tuple(f[::-1] for f in self.factors)
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
    total = float(np.abs(kernel.weights).sum())
    if total == 0 or abs(kernel.sum) <= ZERO_SUM_TOLERANCE * total:
        return dataclasses.replace(kernel.normalized(), name=name)
    w = kernel.weights
    positive, negative = float(w[w > 0].sum()), float(-w[w < 0].sum())
    with np.errstate(over="ignore"):
        scaled = np.where(w > 0, w / (positive or 1.0), w / (negative or 1.0))
    return dataclasses.replace(kernel, weights=scaled, factors=None, name=name)


def apply_scale(kernel: Kernel, scale: Scale, name: str | None = None) -> Kernel:
    """Apply a parsed scale (see kernel_formats.parse_scale): normalise, then multiply."""
    name = name or f"{kernel.name}@scale={scale.text}"
    if scale.normalize == "sum":
        kernel = kernel.normalized()
    elif scale.normalize == "zero-sum":
        kernel = _zero_sum_normalized(kernel, name)
    return _rescaled(kernel, scale.factor, scale.divisor, name)


def _from_data(data: MatrixData, name: str) -> Kernel:
    kernel = Kernel(data.weights, name, data.factors, data.origin, data.offset)
    return apply_scale(kernel, data.scale, name) if data.scale else kernel


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Param:
    """One typed, range-checked parameter of a named kernel (as in ``gaussian:sigma=2``)."""

    name: str
    kind: str  # "int", "float", "choice" or "size" (N or HxW)
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the value must be > low rather than >= low
    odd: bool = False
    choices: tuple[Any, ...] = ()
    auto: str = ""  # how a default of None is worked out, e.g. "2*ceil(3*sigma)+1"

    def allowed(self) -> str:
        """What values are allowed, in words: ``"an odd integer from 1 to 1025"``."""
        if self.kind == "choice":
            return " or ".join(str(c) for c in self.choices)
        if self.kind == "size":
            return f"N or HxW, integers from {self.low:g} to {self.high:g}"
        noun = "an odd integer" if self.odd else "an integer" if self.kind == "int" else "a number"
        if self.low is not None and self.high is not None:
            return f"{noun} from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {self.low:g}"
        return noun

    def describe(self) -> str:
        """``name=default`` for the kernel list, e.g. ``sigma=1`` or ``size=2*ceil(3*sigma)+1``."""
        return f"{self.name}={self.auto if self.default is None else self.format(self.default)}"

    def format(self, value: Any) -> str:
        if self.kind == "size":
            h, w = self.check(value, "")
            return f"{h}" if h == w else f"{h}x{w}"
        return f"{value:.15g}" if isinstance(value, float) else str(value)

    def parse(self, raw: str, owner: str) -> Any:
        """The value of ``raw`` (text from a spec), checked; KernelError names the parameter."""
        text = raw.strip().lower()
        value: Any = None
        if self.kind == "int" and re.fullmatch(r"[+-]?\d+", text):
            value = int(text)
        elif self.kind == "float" and fmt.NUMBER_RE.fullmatch(text):
            value = float(text)
        elif self.kind == "choice":
            value = next((c for c in self.choices if str(c) == text), None)
        elif self.kind == "size" and (m := re.fullmatch(r"(\d+)(?:x(\d+))?", text)):
            value = (int(m.group(1)), int(m.group(2) or m.group(1)))
        if value is None:
            self._fail(raw, owner)
        return self.check(value, owner, raw)

    def check(self, value: Any, owner: str, raw: Any = None) -> Any:
        """``value`` (from Python or parsed) in canonical form, or KernelError."""
        shown = value if raw is None else raw
        if value is None and self.default is None:
            return None
        if self.kind == "choice":
            match = next((c for c in self.choices if str(c) == str(value).lower()), None)
            if match is None:
                self._fail(shown, owner)
            return match
        if self.kind == "size":
            pair = (value, value) if isinstance(value, numbers.Integral) else value
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                self._fail(shown, owner)
            return tuple(self._number(v, shown, owner, integral=True) for v in pair)
        return self._number(value, shown, owner, integral=self.kind == "int")

    def _number(self, value: Any, shown: Any, owner: str, integral: bool) -> Any:
        kind = numbers.Integral if integral else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            self._fail(shown, owner)
        value = int(value) if integral else float(value)
        if not math.isfinite(value):
            self._fail(shown, owner)
        too_low = self.low is not None and (
            value <= self.low if self.low_open else value < self.low
        )
        too_high = self.high is not None and value > self.high
        if too_low or too_high or (self.odd and value % 2 == 0):
            self._fail(shown, owner)
        return value

    def _fail(self, shown: Any, owner: str) -> None:
        raise KernelError(f"{owner}: {self.name} must be {self.allowed()}, got {shown!r}")


def _spec_name(owner: str, params: tuple[Param, ...], values: tuple[Any, ...]) -> str:
    """The canonical spec of a built kernel: non-default parameters as key=value."""
    parts = [
        f"{p.name}={p.format(v)}"
        for p, v in zip(params, values, strict=True)
        if v is not None and v != p.check(p.default, owner)
    ]
    return owner + (":" + ",".join(parts) if parts else "")


SIDE = dict(low=1, high=MAX_KERNEL_SIDE)
BOX_SIZE = Param("size", "size", 3, "rows x columns (N for NxN)", **SIDE)
SIGMA = Param("sigma", "float", 1.0, "standard deviation in pixels", low=0, low_open=True)
GAUSS_SIZE = Param("size", "int", None, "side", odd=True, auto="2*ceil(3*sigma)+1", **SIDE)
LOG_SIZE = Param("size", "int", None, "side", odd=True, auto="2*ceil(4*sigma)+1", **SIDE)
BINOMIAL_SIZE = Param("size", "int", 3, "side (row n-1 of Pascal's triangle)", odd=True, **SIDE)
NEIGHBOURS = Param("neighbours", "choice", 4, "4 (edges) or 8 (edges and corners)", choices=(4, 8))
AMOUNT = Param("amount", "float", 2.0, "amount-1 is added to the Laplacian's centre", low=0)
DIRECTIONS = ("n", "ne", "e", "se", "s", "sw", "w", "nw")
DIRECTION = Param("direction", "choice", "n", "bright side of the edge", choices=DIRECTIONS)
SIGMA1 = dataclasses.replace(SIGMA, name="sigma1", help="inner (smaller) Gaussian")
SIGMA2 = dataclasses.replace(SIGMA, name="sigma2", default=1.6, help="outer Gaussian")
DOG_SIZE = dataclasses.replace(GAUSS_SIZE, auto="2*ceil(3*max(sigma1,sigma2))+1")
UNSHARP_AMOUNT = Param("amount", "float", 1.0, "strength of the added detail", low=0)


def _auto_size(owner: str, sigma: float, size: int | None, truncate: float, param: Param) -> int:
    """``size`` checked, or the odd side 2*ceil(truncate*sigma)+1 if it is None."""
    if size is not None:
        return param.check(size, owner)
    if truncate * sigma > MAX_KERNEL_SIDE // 2:
        raise KernelError(
            f"{owner}: sigma={sigma:g} needs more than {MAX_KERNEL_SIDE} taps per side "
            f"(the limit); give a smaller size="
        )
    return 2 * math.ceil(truncate * sigma) + 1


# ----------------------------------------------------------------------------- builders


def _separable(column: np.ndarray, row: np.ndarray, name: str) -> Kernel:
    return Kernel(np.outer(column, row), name, (column, row))


def _impulse(shape: tuple[int, int] = (3, 3)) -> np.ndarray:
    delta = np.zeros(shape)
    delta[shape[0] // 2, shape[1] // 2] = 1.0
    return delta


def _gaussian_1d(sigma: float, size: int) -> np.ndarray:
    x = np.arange(size) - size // 2
    with np.errstate(over="ignore"):  # a tiny sigma overflows to exp(-inf) = 0, as it should
        g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def identity() -> Kernel:
    """The 1x1 kernel [1]: leaves the image unchanged."""
    return _fixed_kernel("identity")


def box(height: int = 3, width: int | None = None) -> Kernel:
    """Mean over height × width taps (width defaults to height); weights 1/(height·width)."""
    h, w = BOX_SIZE.check((height, height if width is None else width), "box")
    # Column 1/(h·w) and row of ones: the outer product is exactly 1/(h·w), not a rounded square.
    return _separable(
        np.full(h, 1.0 / (h * w)), np.ones(w), _spec_name("box", (BOX_SIZE,), ((h, w),))
    )


def gaussian(sigma: float = 1.0, size: int | None = None) -> Kernel:
    """Normalised 2-D Gaussian, built from its 1-D factor; side 2*ceil(3σ)+1 unless given.

    Matches scipy.ndimage.gaussian_filter with ``truncate = (size // 2) / sigma``.
    """
    sigma = SIGMA.check(sigma, "gaussian")
    size = _auto_size("gaussian", sigma, size, 3, GAUSS_SIZE)
    g = _gaussian_1d(sigma, size)
    auto = size == 2 * math.ceil(3 * sigma) + 1
    return _separable(
        g, g, _spec_name("gaussian", (SIGMA, GAUSS_SIZE), (sigma, None if auto else size))
    )


def binomial(size: int = 3) -> Kernel:
    """Outer product of row size-1 of Pascal's triangle, normalised.

    binomial:3 = [1 2 1]ᵀ[1 2 1] / 16, binomial:5 = [1 4 6 4 1]ᵀ[1 4 6 4 1] / 256; binomial:n
    applied twice equals binomial:2n-1, and it tends to a Gaussian of σ² = (n-1)/4.
    """
    n = BINOMIAL_SIZE.check(size, "binomial")
    # Python's int / int is correctly rounded even where comb(n-1, k) overflows a float.
    row = np.array([math.comb(n - 1, k) / 2 ** (n - 1) for k in range(n)])
    return _separable(row, row, _spec_name("binomial", (BINOMIAL_SIZE,), (n,)))


LAPLACIAN_4 = np.array([[ 0, -1,  0],
                        [-1,  4, -1],
                        [ 0, -1,  0]], dtype=np.float64)  # fmt: skip
LAPLACIAN_8 = np.array([[-1, -1, -1],
                        [-1,  8, -1],
                        [-1, -1, -1]], dtype=np.float64)  # fmt: skip


def laplacian(neighbours: int = 4) -> Kernel:
    """Negative discrete Laplacian (positive centre, sum 0): bright on the bright side of edges.

    4 neighbours: [[0 -1 0] [-1 4 -1] [0 -1 0]]; 8: [[-1 -1 -1] [-1 8 -1] [-1 -1 -1]].
    """
    n = NEIGHBOURS.check(neighbours, "laplacian")
    weights = LAPLACIAN_4 if n == 4 else LAPLACIAN_8
    return Kernel(weights, _spec_name("laplacian", (NEIGHBOURS,), (n,)))


def sharpen(amount: float = 2.0, neighbours: int = 4) -> Kernel:
    """Laplacian(neighbours) + (amount - 1)·identity: sums to amount - 1.

    Default [[0 -1 0] [-1 5 -1] [0 -1 0]]; amount=1 is the Laplacian itself; amount=2 with
    8 neighbours has centre 9.
    """
    amount = AMOUNT.check(amount, "sharpen")
    n = NEIGHBOURS.check(neighbours, "sharpen")
    weights = laplacian(n).weights + (amount - 1.0) * _impulse()
    return Kernel(weights, _spec_name("sharpen", (AMOUNT, NEIGHBOURS), (amount, n)))


def kirsch(direction: str = "n") -> Kernel:
    """Kirsch compass mask kirsch-<direction>: strongest for edges whose bright side is there."""
    return _fixed_kernel(f"kirsch-{DIRECTION.check(direction, 'kirsch')}")


def log(sigma: float = 1.0, size: int | None = None) -> Kernel:
    """Laplacian of Gaussian with the Laplacian's sign (positive centre), made zero-sum.

    The negative of MATLAB's ``fspecial('log', size, sigma)``: the Gaussian's Laplacian
    ``g·(r² - 2σ²)/σ⁴`` (g normalised), minus its mean, negated; equal to minus
    scipy.ndimage.gaussian_laplace's weights with their mean removed. Side 2*ceil(4σ)+1.
    """
    sigma = SIGMA.check(sigma, "log")
    size = _auto_size("log", sigma, size, 4, LOG_SIZE)
    x = np.arange(size, dtype=np.float64) - size // 2
    r2 = x[:, np.newaxis] ** 2 + x[np.newaxis, :] ** 2
    g1 = _gaussian_1d(sigma, size)
    g = np.outer(g1, g1)
    h = g * (r2 - 2 * sigma**2) / sigma**4
    auto = size == 2 * math.ceil(4 * sigma) + 1
    return Kernel(
        h.mean() - h, _spec_name("log", (SIGMA, LOG_SIZE), (sigma, None if auto else size))
    )


def dog(sigma1: float = 1.0, sigma2: float = 1.6, size: int | None = None) -> Kernel:
    """Difference of Gaussians gaussian(sigma1) - gaussian(sigma2) on one grid: sum 0.

    With sigma2 ≈ 1.6·sigma1 it approximates a (scaled) Laplacian of Gaussian.
    """
    sigma1, sigma2 = SIGMA1.check(sigma1, "dog"), SIGMA2.check(sigma2, "dog")
    if sigma1 == sigma2:
        raise KernelError(f"dog: sigma1 and sigma2 must differ, both are {sigma1:g}")
    size = _auto_size("dog", max(sigma1, sigma2), size, 3, DOG_SIZE)
    weights = gaussian(sigma1, size).weights - gaussian(sigma2, size).weights
    auto = size == 2 * math.ceil(3 * max(sigma1, sigma2)) + 1
    name = _spec_name("dog", (SIGMA1, SIGMA2, DOG_SIZE), (sigma1, sigma2, None if auto else size))
    return Kernel(weights, name)


def unsharp(sigma: float = 1.0, amount: float = 1.0, size: int | None = None) -> Kernel:
    """Unsharp mask: identity + amount·(identity - gaussian(sigma)); sums to 1."""
    sigma = SIGMA.check(sigma, "unsharp")
    amount = UNSHARP_AMOUNT.check(amount, "unsharp")
    blur = gaussian(sigma, size)
    weights = (1.0 + amount) * _impulse(blur.shape) - amount * blur.weights
    auto = blur.shape[0] == 2 * math.ceil(3 * sigma) + 1
    values = (sigma, amount, None if auto else blur.shape[0])
    return Kernel(weights, _spec_name("unsharp", (SIGMA, UNSHARP_AMOUNT, GAUSS_SIZE), values))


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class KernelEntry:
    """One named kernel as listed by :func:`list_kernels` (and ``convtool kernels``)."""

    name: str
    size: str  # "3x3", or how the size follows from the parameters
    params: str  # "sigma=1, size=2*ceil(3*sigma)+1"; "" for a fixed kernel
    description: str
    parameters: tuple[Param, ...] = ()
    kind: str = "fixed"  # "fixed" (a file in kernels/) or "parametric" (a builder)


@dataclass(frozen=True)
class _Builder:
    name: str
    build: Callable[..., Kernel]
    params: tuple[Param, ...]  # the first is the one a positional value sets (box:5)
    size: str
    description: str


def _box_from_spec(size: tuple[int, int] = (3, 3)) -> Kernel:
    return box(*size)


BUILDERS = {b.name: b for b in (
    _Builder("box", _box_from_spec, (BOX_SIZE,), "size",
             "mean over the window (box:5, box:3x5 = 3 rows x 5 columns); separable"),
    _Builder("gaussian", gaussian, (SIGMA, GAUSS_SIZE), "2*ceil(3*sigma)+1",
             "Gaussian blur, normalised to sum 1; separable"),
    _Builder("binomial", binomial, (BINOMIAL_SIZE,), "size",
             "Pascal's-triangle blur, e.g. [1 2 1]'[1 2 1]/16; separable"),
    _Builder("laplacian", laplacian, (NEIGHBOURS,), "3x3",
             "negative Laplacian, positive centre, sum 0: edges and fine detail"),
    _Builder("sharpen", sharpen, (AMOUNT, NEIGHBOURS), "3x3",
             "laplacian + (amount-1)*identity; default [[0 -1 0] [-1 5 -1] [0 -1 0]]"),
    _Builder("kirsch", kirsch, (DIRECTION,), "3x3",
             "Kirsch compass mask for one direction (same as kirsch-<direction>)"),
    _Builder("log", log, (SIGMA, LOG_SIZE), "2*ceil(4*sigma)+1",
             "Laplacian of Gaussian (positive centre, sum 0): blobs and edges at scale sigma"),
    _Builder("dog", dog, (SIGMA1, SIGMA2, DOG_SIZE), "2*ceil(3*max(sigma1,sigma2))+1",
             "difference of Gaussians gaussian(sigma1) - gaussian(sigma2), sum 0"),
    _Builder("unsharp", unsharp, (SIGMA, UNSHARP_AMOUNT, GAUSS_SIZE), "2*ceil(3*sigma)+1",
             "unsharp mask: identity + amount*(identity - gaussian(sigma)), sum 1"),
)}  # fmt: skip


def _kernel_folder():
    """The fixed kernels: the installed package convtool._kernels, else the source tree's."""
    try:
        folder = importlib.resources.files("convtool._kernels")
        if folder.is_dir():
            return folder
    except ModuleNotFoundError:
        pass  # running from a source checkout: kernels/ sits next to convtool/
    return Path(__file__).resolve().parent.parent / "kernels"


@functools.cache
def _fixed_files() -> dict[str, Any]:
    try:
        items = list(_kernel_folder().iterdir())
    except OSError:
        items = []
    return {item.name[: -len(".txt")]: item for item in items if item.name.endswith(".txt")}


@functools.cache
def _load_fixed(name: str) -> tuple[Kernel, str]:
    item = _fixed_files().get(name)
    if item is None:
        raise KernelError(f"no kernel file for {name!r} in {_kernel_folder()}")
    try:
        data = fmt.parse_text_file(item.read_text(encoding="utf-8"))
        return _from_data(data, name), data.description
    except KernelError as exc:
        raise KernelError(str(exc), path=str(item)) from None


def _fixed_kernel(name: str) -> Kernel:
    return _load_fixed(name)[0]


def _names() -> list[str]:
    return sorted(set(BUILDERS) | set(_fixed_files()))


def list_kernels() -> list[KernelEntry]:
    """Every named kernel, sorted by name: fixed ones (files) and parametric ones (builders)."""
    entries = []
    for name, builder in BUILDERS.items():
        h, w = builder.build().shape
        size = f"{h}x{w}" if builder.size == "3x3" else f"{builder.size} ({h}x{w})"
        params = ", ".join(p.describe() for p in builder.params)
        entries.append(
            KernelEntry(name, size, params, builder.description, builder.params, "parametric")
        )
    for name in _fixed_files():
        kernel, description = _load_fixed(name)
        h, w = kernel.shape
        entries.append(KernelEntry(name, f"{h}x{w}", "", description))
    return sorted(entries, key=lambda e: e.name)


# -------------------------------------------------------------------------------- specs


_NAME_RE = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)(?::(.*))?", re.S)


def get_kernel(spec: Any) -> Kernel:
    """Any kernel spec as a Kernel: a Kernel, a spec string, a path, or an array-like."""
    if isinstance(spec, Kernel):
        return spec
    if isinstance(spec, str):
        return parse_kernel_spec(spec)
    if isinstance(spec, os.PathLike):
        return read_kernel_file(spec)
    if isinstance(spec, bytes | bytearray):
        raise KernelError("a kernel spec is text, not bytes")
    return Kernel(spec, "array")


def parse_kernel_spec(spec: str) -> Kernel:
    """Turn a kernel spec into a Kernel (the README's "Kernel specs" gives the grammar).

    ``SPEC[@scale=S][@origin=ROW,COL]`` where SPEC is a name (``sobel-x``), a name with
    arguments (``gaussian:sigma=2,size=9``, ``box:3x5``), an inline matrix
    (``"[1 2 1; 2 4 2; 1 2 1]/16"``), an ImageMagick kernel (``"3x3: 1,2,1 2,4,2 1,2,1"``)
    or a kernel file (``k.txt``, ``k.npy``, ``k.mat``, ``@k.txt``).
    """
    if not isinstance(spec, str):
        raise KernelError(f"a kernel spec is text, got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise KernelError("empty kernel spec")
    if os.path.isfile(text) and text.lower() not in _names():
        return read_kernel_file(text)
    fmt.reject_imagemagick_flags(text)
    base, *modifiers = text.split("@")
    if not base.strip():  # ImageMagick's "@file"
        path = modifiers.pop(0).strip()
        if not path:
            raise KernelError(f"{spec.strip()!r}: '@' must be followed by a kernel file name")
        kernel = read_kernel_file(path)
    else:
        kernel = _parse_base(base.strip())
    for modifier in modifiers:
        kernel = _apply_modifier(kernel, modifier)
    return kernel


def _parse_base(text: str) -> Kernel:
    if text.lower().endswith(fmt.FILE_EXTENSIONS):
        return read_kernel_file(text)
    shown = " ".join(text.split())
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if fmt.looks_like_imagemagick(text):
        return _from_data(fmt.parse_imagemagick(text), shown)
    if text[:1].isalpha():
        return _parse_named(text)
    return _from_data(fmt.parse_matrix_spec(text), shown)


def _apply_modifier(kernel: Kernel, modifier: str) -> Kernel:
    key, eq, value = modifier.partition("=")
    key, value = key.strip().lower(), value.strip()
    if key == "scale" and eq:
        return apply_scale(kernel, fmt.parse_scale(value), f"{kernel.name}@scale={value}")
    if key == "origin" and eq:
        centre = fmt.parse_centre(value, "@origin")
        origin = fmt.origin_from_centre(centre, kernel.shape, "@origin")
        return dataclasses.replace(kernel, origin=origin, name=f"{kernel.name}@origin={value}")
    raise KernelError(
        f"unknown kernel modifier {'@' + modifier.strip()!r}; use @scale=S or @origin=ROW,COL"
    )


def _parse_named(text: str) -> Kernel:
    m = _NAME_RE.fullmatch(text)
    if m is None:
        if "/" in text or "\\" in text:
            raise KernelError(f"no such kernel file: {text!r}")
        raise KernelError(f"{text!r} is not a kernel name, matrix or file")
    name, args = m.group(1).lower().replace("_", "-"), m.group(2)
    builder = BUILDERS.get(name)
    if builder is not None:
        return builder.build(**_parse_args(builder, args))
    if name in _fixed_files():
        if args is not None:
            raise KernelError(f"{name} is a fixed kernel and takes no parameters, got {args!r}")
        return _fixed_kernel(name)
    close = difflib.get_close_matches(name, _names(), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(_names())}"
    raise KernelError(f"unknown kernel {name!r}; {hint}")


def _parse_args(builder: _Builder, args: str | None) -> dict[str, Any]:
    """``key=value,...`` or one positional value for the main parameter, then key=values."""
    values: dict[str, Any] = {}
    if args is None:
        return values
    owner, by_name = builder.name, {p.name: p for p in builder.params}
    if not args.strip():
        raise KernelError(f"{owner}: nothing after ':'; give {builder.params[0].name} or key=value")
    for index, item in enumerate(part.strip() for part in args.split(",")):
        key, eq, raw = item.partition("=")
        key = key.strip().lower()
        if not item:
            raise KernelError(f"{owner}: empty parameter in {args!r}")
        if not eq:
            if index:
                raise KernelError(
                    f"{owner}: {item!r} needs a name (key=value); only the first value may "
                    f"be given bare, for {builder.params[0].name}"
                )
            key, raw = builder.params[0].name, item
        if key not in by_name:
            close = difflib.get_close_matches(key, by_name, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise KernelError(
                f"{owner}: unknown parameter {key!r}; {hint}parameters: {', '.join(by_name)}"
            )
        if key in values:
            raise KernelError(f"{owner}: {key} given twice")
        values[key] = by_name[key].parse(raw, owner)
    return values


def read_kernel_file(path: str | os.PathLike) -> Kernel:
    """A kernel from a file: plain text, ``.npy``, libvips or MATLAB ``.mat``, ImageMagick text.

    Errors are KernelError with ``path=`` set, so the message starts with the file name.
    """
    if not isinstance(path, str | os.PathLike):
        raise KernelError(f"a kernel file path is text, got {type(path).__name__}")
    where = os.fspath(path)
    data = fmt.read_kernel_data(where)
    try:
        return _from_data(data, where)
    except KernelError as exc:
        raise KernelError(str(exc), path=where) from None


# ------------------------------------------------------------------------------ compose


# Above this many multiply-adds, compose() multiplies spectra instead of shifting and adding.
_DIRECT_COMPOSE_WORK = 30_000_000


def compose(kernel: Kernel, n: int) -> Kernel:
    """The one kernel equal to ``n`` successive applications of ``kernel``.

    It is the n-fold full convolution of the weights (side (k-1)·n+1 per axis) with its centre
    at n times the kernel's centre index, so one pass with it equals n passes (exactly with
    ``full`` padding, and away from the borders otherwise), for convolution and correlation
    alike. Separable kernels compose their 1-D factors and stay separable; an offset o becomes
    o·(1 + s + ... + s^(n-1)) for a kernel sum s. Binomial:3 composed twice is binomial:5.
    """
    kernel = get_kernel(kernel)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise KernelError(f"compose: n must be a whole number >= 1, got {n!r}")
    n = int(n)
    if n == 1:
        return kernel
    (h, w), (cy, cx) = kernel.shape, kernel.centre
    side_h, side_w = (h - 1) * n + 1, (w - 1) * n + 1
    fmt.check_side(side_h, side_w, f"{kernel.name} applied {n} times")
    name = f"{kernel.name} applied {n} times"
    origin = (n * cy - side_h // 2, n * cx - side_w // 2)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow fails in Kernel()
        powers = np.float64(kernel.sum) ** np.arange(n)
    offset = float(kernel.offset * powers.sum()) if kernel.offset else 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        if kernel.factors is not None:
            factors = tuple(_power_1d(f, n) for f in kernel.factors)
            weights = np.outer(*factors)
        else:
            factors, weights = None, _power_2d(kernel.weights, n, (side_h, side_w))
    if not np.isfinite(weights).all():
        raise KernelError(f"{name}: the weights overflow float64 (they grow as |w|^{n})")
    return Kernel(weights, name, factors, origin, offset)


def _power_1d(taps: np.ndarray, n: int) -> np.ndarray:
    result = taps
    for _ in range(n - 1):
        result = np.convolve(result, taps)
    return result


def _power_2d(weights: np.ndarray, n: int, shape: tuple[int, int]) -> np.ndarray:
    h, w = weights.shape
    taps = np.count_nonzero(weights)
    work = taps * sum(((h - 1) * i + 1) * ((w - 1) * i + 1) for i in range(1, n))
    if work <= _DIRECT_COMPOSE_WORK:
        result = weights
        for _ in range(n - 1):
            result = _full_convolve(result, weights)
        return result
    spectrum = np.fft.rfft2(weights, s=shape) ** n
    result = np.fft.irfft2(spectrum, s=shape)
    if np.array_equal(weights, np.round(weights)) and np.abs(result).max() < 2.0**52:
        result = np.round(result)  # integer kernels compose to integers: drop the FFT's noise
    return result


def _full_convolve(image: np.ndarray, small: np.ndarray) -> np.ndarray:
    """Full 2-D convolution by shifted adds: one vectorised add per tap of ``small``."""
    h, w = image.shape
    out = np.zeros((h + small.shape[0] - 1, w + small.shape[1] - 1))
    for r, c in zip(*np.nonzero(small), strict=True):
        out[r : r + h, c : c + w] += small[r, c] * image
    return out

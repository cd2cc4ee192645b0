"""Named kernels: the parametric builders and their registry.

Parametric kernels (``gaussian:sigma=2``, ``box:3x5``) are pure functions of checked
parameters. Each declares its parameters as :class:`~convtool.kernels.params.Param`, so
that Python calls, kernel specs, error messages and ``convtool kernels`` share one
description; ``BUILDERS`` maps a spec name to its builder. The fixed kernels (sobel-x,
kirsch-n, ...) are files, read by :mod:`convtool.kernels.fixed`; :func:`kernel_names` lists
both.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from convtool.errors import KernelError
from convtool.kernels.fixed import fixed_files, fixed_kernel
from convtool.kernels.formats import MAX_KERNEL_SIDE
from convtool.kernels.params import Param, parse_params, spec_name
from convtool.kernels.value import Kernel

__all__ = [
    "BUILDERS", "Builder", "Param", "identity", "box", "gaussian", "binomial", "laplacian",
    "sharpen", "kirsch", "log", "dog", "unsharp", "kernel_names", "parse_params",
]  # fmt: skip


# --------------------------------------------------------------------------- parameters


BOX_SIZE = Param("size", "size", 3, "rows x columns (N for NxN)", low=1, high=MAX_KERNEL_SIDE)
SIGMA = Param("sigma", "float", 1.0, "standard deviation in pixels", low=0, low_open=True)
GAUSS_SIZE = Param(
    "size", "int", None, "side", odd=True, auto="2*ceil(3*sigma)+1", low=1, high=MAX_KERNEL_SIDE
)
LOG_SIZE = Param(
    "size", "int", None, "side", odd=True, auto="2*ceil(4*sigma)+1", low=1, high=MAX_KERNEL_SIDE
)
BINOMIAL_SIZE = Param(
    "size", "int", 3, "side (row n-1 of Pascal's triangle)", odd=True, low=1, high=MAX_KERNEL_SIDE
)
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
    return fixed_kernel("identity")


def box(height: int = 3, width: int | None = None) -> Kernel:
    """Mean over height × width taps (width defaults to height); weights 1/(height·width)."""
    h, w = BOX_SIZE.check((height, height if width is None else width), "box")
    # Column 1/(h·w) and row of ones: the outer product is exactly 1/(h·w), not a rounded square.
    return _separable(
        np.full(h, 1.0 / (h * w)), np.ones(w), spec_name("box", (BOX_SIZE,), ((h, w),))
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
        g, g, spec_name("gaussian", (SIGMA, GAUSS_SIZE), (sigma, None if auto else size))
    )


def binomial(size: int = 3) -> Kernel:
    """Outer product of row size-1 of Pascal's triangle, normalised.

    binomial:3 = [1 2 1]ᵀ[1 2 1] / 16, binomial:5 = [1 4 6 4 1]ᵀ[1 4 6 4 1] / 256; binomial:n
    applied twice equals binomial:2n-1, and it tends to a Gaussian of σ² = (n-1)/4.
    """
    n = BINOMIAL_SIZE.check(size, "binomial")
    # Python's int / int is correctly rounded even where comb(n-1, k) overflows a float.
    row = np.array([math.comb(n - 1, k) / 2 ** (n - 1) for k in range(n)])
    return _separable(row, row, spec_name("binomial", (BINOMIAL_SIZE,), (n,)))


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
    return Kernel(weights, spec_name("laplacian", (NEIGHBOURS,), (n,)))


def sharpen(amount: float = 2.0, neighbours: int = 4) -> Kernel:
    """Laplacian(neighbours) + (amount - 1)·identity: sums to amount - 1.

    Default [[0 -1 0] [-1 5 -1] [0 -1 0]]; amount=1 is the Laplacian itself; amount=2 with
    8 neighbours has centre 9.
    """
    amount = AMOUNT.check(amount, "sharpen")
    n = NEIGHBOURS.check(neighbours, "sharpen")
    weights = laplacian(n).weights + (amount - 1.0) * _impulse()
    return Kernel(weights, spec_name("sharpen", (AMOUNT, NEIGHBOURS), (amount, n)))


def kirsch(direction: str = "n") -> Kernel:
    """Kirsch compass mask kirsch-<direction>: strongest for edges whose bright side is there."""
    return fixed_kernel(f"kirsch-{DIRECTION.check(direction, 'kirsch')}")


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
        h.mean() - h, spec_name("log", (SIGMA, LOG_SIZE), (sigma, None if auto else size))
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
    name = spec_name("dog", (SIGMA1, SIGMA2, DOG_SIZE), (sigma1, sigma2, None if auto else size))
    return Kernel(weights, name)


def unsharp(sigma: float = 1.0, amount: float = 1.0, size: int | None = None) -> Kernel:
    """Unsharp mask: identity + amount·(identity - gaussian(sigma)); sums to 1."""
    sigma = SIGMA.check(sigma, "unsharp")
    amount = UNSHARP_AMOUNT.check(amount, "unsharp")
    blur = gaussian(sigma, size)
    weights = (1.0 + amount) * _impulse(blur.shape) - amount * blur.weights
    auto = blur.shape[0] == 2 * math.ceil(3 * sigma) + 1
    values = (sigma, amount, None if auto else blur.shape[0])
    return Kernel(weights, spec_name("unsharp", (SIGMA, UNSHARP_AMOUNT, GAUSS_SIZE), values))


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Builder:
    """A parametric kernel as named in specs: its builder and its declared parameters."""

    name: str
    build: Callable[..., Kernel]
    params: tuple[Param, ...]  # the first is the one a positional value sets (box:5)
    size: str
    description: str


def _box_from_spec(size: tuple[int, int] = (3, 3)) -> Kernel:
    return box(*size)


BUILDERS = {b.name: b for b in (
    Builder("box", _box_from_spec, (BOX_SIZE,), "size",
            "mean over the window (box:5, box:3x5 = 3 rows x 5 columns); separable"),
    Builder("gaussian", gaussian, (SIGMA, GAUSS_SIZE), "2*ceil(3*sigma)+1",
            "Gaussian blur, normalised to sum 1; separable"),
    Builder("binomial", binomial, (BINOMIAL_SIZE,), "size",
            "Pascal's-triangle blur, e.g. [1 2 1]'[1 2 1]/16; separable"),
    Builder("laplacian", laplacian, (NEIGHBOURS,), "3x3",
            "negative Laplacian, positive centre, sum 0: edges and fine detail"),
    Builder("sharpen", sharpen, (AMOUNT, NEIGHBOURS), "3x3",
            "laplacian + (amount-1)*identity, sum amount-1: brightness kept only at "
            "amount=2 (the default, [[0 -1 0] [-1 5 -1] [0 -1 0]]); unsharp keeps it always"),
    Builder("kirsch", kirsch, (DIRECTION,), "3x3",
            "Kirsch compass mask for one direction (same as kirsch-<direction>)"),
    Builder("log", log, (SIGMA, LOG_SIZE), "2*ceil(4*sigma)+1",
            "Laplacian of Gaussian (positive centre, sum 0): blobs and edges at scale sigma"),
    Builder("dog", dog, (SIGMA1, SIGMA2, DOG_SIZE), "2*ceil(3*max(sigma1,sigma2))+1",
            "difference of Gaussians gaussian(sigma1) - gaussian(sigma2), sum 0"),
    Builder("unsharp", unsharp, (SIGMA, UNSHARP_AMOUNT, GAUSS_SIZE), "2*ceil(3*sigma)+1",
            "unsharp mask: identity + amount*(identity - gaussian(sigma)), sum 1"),
)}  # fmt: skip


def kernel_names() -> list[str]:
    """Every kernel name a spec may use, parametric and fixed, sorted."""
    return sorted(set(BUILDERS) | set(fixed_files()))

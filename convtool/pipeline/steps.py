"""The steps of a filter chain: what one ``-k SPEC`` becomes (parsing: :mod:`.parsing`).

A step is a convolution with a kernel, a gradient magnitude from a pair of derivative
kernels, or a pooling (a layer mixing channels is in :mod:`.layers`). Every convolving step goes through the same engine call, so
``--padding``, ``--stride``, ``--dilation`` and ``--correlate`` mean the same thing for
all of them. Pooling has its own window and stride and no padding, as PyTorch's
``max_pool2d`` / ``avg_pool2d``.

Arrays here are channel-first stacks ``(C, H, W)``. Each step also moves arrays it does
not filter (alpha, channels left alone) with its geometry (:meth:`Step.carry`) and
gives the alpha coverage that ``--alpha weighted`` divides by (:meth:`Step.coverage`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from convtool import engine
from convtool.errors import UsageError
from convtool.kernels import Kernel, get_kernel
from convtool.padding import Padding, parse_padding

GRADIENT_OPERATORS = {
    "sobel": ("sobel-x", "sobel-y"),
    "prewitt": ("prewitt-x", "prewitt-y"),
    "scharr": ("scharr-x", "scharr-y"),
    "roberts": ("roberts-cross1", "roberts-cross2"),
}
GRADIENT_NORMS = ("l2", "l1", "max")
POOL_KINDS = ("maxpool", "avgpool")
ALPHA_MODES = ("carry", "weighted", "filter")
MAX_ITERATIONS = 1000


@dataclass(frozen=True)
class FilterOptions:
    """How every convolving step is applied (the CLI's shared options)."""

    padding: Padding = Padding.REFLECT
    cval: float = 0.0
    stride: int = 1
    dilation: int = 1
    correlate: bool = False
    normalize: bool = False
    method: str = "auto"
    threads: int | None = None
    transposed: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "padding", parse_padding(self.padding))
        try:
            cval = float(self.cval)
        except (TypeError, ValueError):
            cval = float("nan")
        if not np.isfinite(cval):
            raise UsageError(f"--cval must be a finite number, got {self.cval!r}")
        object.__setattr__(self, "cval", cval)
        if self.cval != 0 and self.padding is not Padding.CONSTANT:
            # Every other mode ignores the value: say so rather than drop it silently.
            raise UsageError(
                f"--cval applies only to --padding constant, not {self.padding.value}; "
                "add --padding constant or leave out --cval"
            )
        for name in ("stride", "dilation"):
            object.__setattr__(self, name, _step(getattr(self, name), f"--{name}"))
        if self.method not in engine.METHODS:
            raise UsageError(
                f"--method must be one of {', '.join(engine.METHODS)}, got {self.method!r}"
            )
        if self.threads is not None and not 1 <= self.threads <= engine.MAX_THREADS:
            raise UsageError(
                f"--threads must be ≥ 1 and at most {engine.MAX_THREADS}, got {self.threads}"
            )
        if self.transposed and self.padding is Padding.CONSTANT and self.cval != 0:
            raise UsageError(
                "--transposed has no meaning with --padding constant and a --cval other than 0 "
                "(that border is affine, not linear); use --padding zero"
            )

    def engine_args(self) -> dict:
        return {
            "padding": self.padding,
            "cval": self.cval,
            "stride": self.stride,
            "dilation": self.dilation,
            "method": self.method,
            "threads": self.threads,
        }


def _step(value, what: str) -> int:
    """A stride or dilation: a whole number from 1 to ``engine.MAX_STEP``, or UsageError."""
    try:
        whole = not isinstance(value, bool) and int(value) == value
    except (TypeError, ValueError, OverflowError):  # None, text, NaN, infinity
        whole = False
    if not whole or not 1 <= value <= engine.MAX_STEP:
        try:
            shown = str(value)
        except ValueError:  # an int of thousands of digits
            shown = "a number of thousands of digits"
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise UsageError(
            f"{what} must be a whole number ≥ 1 and at most {engine.MAX_STEP:,}, got {shown}"
        )
    return int(value)


def check_transposable(steps, options: FilterOptions) -> None:
    """Under ``--transposed`` every step must be linear: no gradient magnitude, no pooling."""
    if not options.transposed:
        return
    for step in steps:
        if isinstance(step, GradientStep | PoolStep):
            raise UsageError(
                f"--transposed turns convolving steps into their transposes; {step.spec or 'this step'} "
                "is not linear and has none (remove it, or run it in another convtool call)"
            )


class Step(Protocol):
    """One link of the chain: maps a (C, H, W) stack, and alpha alongside it."""

    spec: str

    def apply(self, stack: np.ndarray, options: FilterOptions) -> np.ndarray: ...

    def carry(self, array: np.ndarray, options: FilterOptions) -> np.ndarray: ...

    def coverage(self, weights: np.ndarray, options: FilterOptions) -> np.ndarray: ...


def engine_call(options: FilterOptions):
    """The engine function a convolving step calls: correlate or convolve, or a transpose."""
    if options.transposed:
        return engine.correlate_transposed if options.correlate else engine.convolve_transposed
    return engine.correlate if options.correlate else engine.convolve


def _filter(stack: np.ndarray, kernel: Kernel, options: FilterOptions) -> np.ndarray:
    if options.normalize:
        kernel = kernel.normalized()
    _check_weights_fit(kernel, stack.dtype)
    out = engine_call(options)(stack, kernel, **options.engine_args())
    if kernel.offset:  # libvips .mat files add a constant after the weighted sum
        out += kernel.offset
    return out


def _check_weights_fit(kernel: Kernel, dtype: np.dtype) -> None:
    """Refuse weights the working precision cannot hold (they would become infinite)."""
    largest = float(np.abs(kernel.weights).max())
    if largest > float(np.finfo(dtype).max):
        raise UsageError(
            f"kernel {kernel.name} has weights up to {largest:.3g}, beyond {np.dtype(dtype).name} "
            "(the working precision); use --precision double or smaller weights"
        )


def _coverage(weights: np.ndarray, kernel: Kernel, options: FilterOptions) -> np.ndarray:
    """The share of ``kernel``'s absolute weight that falls on opaque pixels.

    Used by ``--alpha weighted``: dividing the filtered premultiplied colour by it
    gives the plain result where everything is opaque, and keeps hidden colour under
    transparent pixels out of the result, for smoothing and derivative kernels alike
    (the absolute weights never sum to zero).
    """
    magnitude = np.abs(kernel.weights)
    share = dataclasses.replace(kernel, weights=magnitude / magnitude.sum(), factors=None)
    plain = dataclasses.replace(options, normalize=False)
    return _filter(weights, share, plain)


def _carry_like(
    array: np.ndarray, shape: tuple[int, int], origin, options: FilterOptions
) -> np.ndarray:
    """Move ``array`` (alpha, or channels left unfiltered) as a kernel of ``shape`` moves
    the filtered channels, without blurring it.

    The one-tap kernel sits where the filter's centre is: ``k // 2`` for correlation
    and, for convolution, where the flipped kernel's centre lands (``(k - 1) // 2``),
    so valid/full crops and pads match the colour channels pixel for pixel. A transposed
    step inserts pixels, which a carried array has no values for: refused.
    """
    if options.transposed:
        raise UsageError(
            "--transposed inserts pixels, so alpha or channels left unfiltered cannot be "
            "carried along; use --alpha filter (alpha filtered like a colour channel) and "
            "--channels all"
        )
    delta = np.zeros(shape)
    if options.correlate:
        centre = tuple(k // 2 + o for k, o in zip(shape, origin, strict=True))
    else:
        centre = tuple((k - 1) // 2 - o for k, o in zip(shape, origin, strict=True))
    delta[centre] = 1.0
    args = options.engine_args() | {"method": "direct"}
    return engine.correlate(array, delta, origin=tuple(origin), **args)


@dataclass(frozen=True)
class ConvolveStep:
    """Convolve (or correlate) every channel with one kernel."""

    kernel: Kernel
    spec: str = ""

    def apply(self, stack: np.ndarray, options: FilterOptions) -> np.ndarray:
        return _filter(stack, self.kernel, options)

    def carry(self, array: np.ndarray, options: FilterOptions) -> np.ndarray:
        return _carry_like(array, self.kernel.weights.shape, self.kernel.origin, options)

    def coverage(self, weights: np.ndarray, options: FilterOptions) -> np.ndarray:
        return _coverage(weights, self.kernel, options)


@dataclass(frozen=True)
class GradientStep:
    """Gradient magnitude from a pair of derivative kernels (e.g. sobel-x and sobel-y).

    ``norm`` is ``l2`` (sqrt(gx² + gy²)), ``l1`` (|gx| + |gy|) or ``max`` (max(|gx|, |gy|)).
    Each derivative is filtered with the chain's padding, stride and dilation.
    """

    kx: Kernel
    ky: Kernel
    norm: str = "l2"
    spec: str = ""

    def apply(self, stack: np.ndarray, options: FilterOptions) -> np.ndarray:
        gx = _filter(stack, self.kx, options)
        gy = _filter(stack, self.ky, options)
        return combine_gradients(gx, gy, self.norm)

    def carry(self, array: np.ndarray, options: FilterOptions) -> np.ndarray:
        return _carry_like(array, self.kx.weights.shape, self.kx.origin, options)

    def coverage(self, weights: np.ndarray, options: FilterOptions) -> np.ndarray:
        return _coverage(weights, self.kx, options)


def gradient_magnitude(
    image: np.ndarray,
    operator: str = "sobel",
    *,
    norm: str = "l2",
    correlate: bool = False,
    **engine_options,
) -> np.ndarray:
    """Gradient magnitude of ``image`` (..., H, W) from a pair of derivative kernels.

    ``operator`` is ``sobel``, ``prewitt``, ``scharr`` or ``roberts`` (its two diagonal
    kernels); ``norm`` ``l2`` (sqrt(gx² + gy²)), ``l1`` or ``max``. ``engine_options``
    (padding, cval, stride, dilation, method, threads) go to both derivative filters.

    >>> gradient_magnitude(np.eye(4), "prewitt", padding="edge").shape
    (4, 4)
    """
    if operator not in GRADIENT_OPERATORS:
        raise UsageError(
            f"gradient operator must be one of {', '.join(GRADIENT_OPERATORS)}, got {operator!r}"
        )
    kx, ky = (get_kernel(name) for name in GRADIENT_OPERATORS[operator])
    run = engine.correlate if correlate else engine.convolve
    image = np.asarray(image)
    gx = run(image, kx, **engine_options)
    return combine_gradients(gx, run(image, ky, **engine_options), norm)


def combine_gradients(gx: np.ndarray, gy: np.ndarray, norm: str = "l2") -> np.ndarray:
    """Combine two derivative images into a magnitude, in place in ``gx``."""
    if norm == "l2":
        np.hypot(gx, gy, out=gx)
    elif norm == "l1":
        np.abs(gx, out=gx)
        gx += np.abs(gy)
    elif norm == "max":
        np.maximum(np.abs(gx, out=gx), np.abs(gy), out=gx)
    else:
        raise UsageError(f"gradient norm must be one of {', '.join(GRADIENT_NORMS)}, got {norm!r}")
    return gx


@dataclass(frozen=True)
class PoolStep:
    """Max or average pooling over ``size`` windows every ``stride`` pixels, no padding.

    Output side is ``(n - size) // stride + 1``, as PyTorch's ``max_pool2d`` /
    ``avg_pool2d``. The chain's padding, stride and dilation do not apply: a pooling
    step carries its own window and stride. Alpha is pooled the same way.
    """

    kind: str
    size: tuple[int, int]
    stride: tuple[int, int]
    spec: str = ""

    def apply(self, stack: np.ndarray, options: FilterOptions) -> np.ndarray:
        return pool(stack, self.kind, self.size, self.stride)

    def carry(self, array: np.ndarray, options: FilterOptions) -> np.ndarray:
        return pool(array, self.kind, self.size, self.stride)

    def coverage(self, weights: np.ndarray, options: FilterOptions) -> np.ndarray:
        return pool(weights, self.kind, self.size, self.stride)


def pool(
    array: np.ndarray, kind: str, size: tuple[int, int], stride: tuple[int, int]
) -> np.ndarray:
    """Pool the last two axes of ``array`` (``kind`` is ``maxpool`` or ``avgpool``)."""
    h, w = array.shape[-2:]
    if size[0] > h or size[1] > w:
        raise UsageError(
            f"{kind} window {size[0]}x{size[1]} is larger than the image ({h}x{w}); "
            "use a smaller size"
        )
    windows = np.lib.stride_tricks.sliding_window_view(array, size, axis=(-2, -1))
    windows = windows[..., :: stride[0], :: stride[1], :, :]
    reduce = np.max if kind == "maxpool" else np.mean
    return reduce(windows, axis=(-2, -1)).astype(array.dtype, copy=False)

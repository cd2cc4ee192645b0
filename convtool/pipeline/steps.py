"""The steps of a filter chain: what one ``-k SPEC`` becomes, and how it is parsed.

A step is a convolution with a kernel, a gradient magnitude from a pair of derivative
kernels, or a pooling. Every convolving step goes through the same engine call, so
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
from convtool.errors import KernelError, UsageError, excerpt
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


class Step(Protocol):
    """One link of the chain: maps a (C, H, W) stack, and alpha alongside it."""

    spec: str

    def apply(self, stack: np.ndarray, options: FilterOptions) -> np.ndarray: ...

    def carry(self, array: np.ndarray, options: FilterOptions) -> np.ndarray: ...

    def coverage(self, weights: np.ndarray, options: FilterOptions) -> np.ndarray: ...


def _filter(stack: np.ndarray, kernel: Kernel, options: FilterOptions) -> np.ndarray:
    if options.normalize:
        kernel = kernel.normalized()
    _check_weights_fit(kernel, stack.dtype)
    run = engine.correlate if options.correlate else engine.convolve
    out = run(stack, kernel, **options.engine_args())
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
    so valid/full crops and pads match the colour channels pixel for pixel.
    """
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
    if gx is image or np.shares_memory(gx, image):
        gx = gx.copy()
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


# ---------------------------------------------------------------------------- parsing


STEP_MAIN_PARAMETER = {"grad": "op", "maxpool": "size", "avgpool": "size"}


def parse_step(spec: str) -> Step:
    """Turn one ``-k`` spec into a step: ``grad:OP``, ``maxpool:N``, ``avgpool:N`` or a kernel."""
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in STEP_MAIN_PARAMETER:
        return ConvolveStep(get_kernel(spec), spec=spec)
    args = _step_args(spec, rest, STEP_MAIN_PARAMETER[name])
    if name == "grad":
        return _parse_gradient(spec, args)
    return _parse_pool(spec, name, args)


def _step_args(spec: str, text: str, main: str) -> dict[str, str]:
    """``a=1,b=2`` or one positional value for the main parameter, then ``key=value``s."""
    args: dict[str, str] = {}
    for index, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
        key, eq, value = part.partition("=")
        if not eq:
            if index:
                raise KernelError(f"expected key=value, got {part!r} (in {spec!r})")
            key, value = main, part
        key = key.strip().lower()
        if key in args:
            raise KernelError(f"parameter {key!r} given twice (in {spec!r})")
        args[key] = value.strip().lower()
    return args


def _parse_gradient(spec: str, args: dict[str, str]) -> GradientStep:
    unknown = set(args) - {"op", "norm"}
    if unknown:
        raise KernelError(f"grad takes op and norm, not {', '.join(sorted(unknown))} (in {spec!r})")
    op = args.get("op", "sobel")
    if op not in GRADIENT_OPERATORS:
        raise KernelError(
            f"grad operator must be one of {', '.join(GRADIENT_OPERATORS)}, got {op!r}"
        )
    norm = args.get("norm", "l2")
    if norm not in GRADIENT_NORMS:
        raise KernelError(f"grad norm must be one of {', '.join(GRADIENT_NORMS)}, got {norm!r}")
    kx, ky = (get_kernel(name) for name in GRADIENT_OPERATORS[op])
    return GradientStep(kx, ky, norm, spec=spec)


def _parse_pair(text: str, what: str, spec: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:  # (int() refuses thousands of digits with a ValueError too)
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1 or max(values) > engine.MAX_STEP:
        raise KernelError(
            f"{what} must be a whole number from 1 to {engine.MAX_STEP:,} or HxW, "
            f"got {excerpt(text)} (in {excerpt(spec)})"
        )
    return (values[0], values[-1])


def _parse_pool(spec: str, kind: str, args: dict[str, str]) -> PoolStep:
    unknown = set(args) - {"size", "stride"}
    if unknown:
        raise KernelError(
            f"{kind} takes size and stride, not {', '.join(sorted(unknown))} (in {spec!r})"
        )
    size = _parse_pair(args.get("size", "2"), "pool size", spec)
    stride = _parse_pair(args["stride"], "pool stride", spec) if "stride" in args else size
    return PoolStep(kind, size, stride, spec=spec)


def step_entries() -> list[tuple[str, str, str, str]]:
    """The steps that are not kernels, as rows of ``convtool kernels``."""
    return [
        (
            "grad:OP",
            "2 kernels",
            f"op={'|'.join(GRADIENT_OPERATORS)} (sobel), norm={'|'.join(GRADIENT_NORMS)} (l2)",
            "gradient magnitude from a pair of derivative kernels",
        ),
        ("maxpool:N", "NxN", "size=2, stride=size", "max over windows, no padding"),
        ("avgpool:N", "NxN", "size=2, stride=size", "mean over windows, no padding"),
    ]


def parse_steps(specs: list[str]) -> list[Step]:
    """Parse a chain of ``-k`` specs; an empty chain is a usage error."""
    if not specs:
        raise UsageError("no kernel given; add at least one -k SPEC (see `convtool kernels`)")
    return [parse_step(spec) for spec in specs]

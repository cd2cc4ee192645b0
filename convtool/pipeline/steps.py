"""The steps of a filter chain: what one ``-k SPEC`` becomes (parsing: :mod:`.parsing`).

A step is a convolution with a kernel, a gradient magnitude from a pair of derivative
kernels, or a pooling (a layer mixing channels is in :mod:`.layers`). Every convolving step goes through the same engine call, so
``--padding``, ``--stride``, ``--dilation`` and ``--correlate`` mean the same thing for
all of them. Pooling has its own window and stride and no padding, as PyTorch's
``max_pool2d`` / ``avg_pool2d``.

Arrays here are channel-first stacks ``(C, H, W)``. Each step also moves arrays it does
not filter with its geometry, without mixing their pixels: channels left alone
(:meth:`Step.carry`) and alpha (:meth:`Step.carry_alpha`, the same but pooled by a
pooling step); and it gives the alpha coverage that ``--alpha weighted`` divides by
(:meth:`Step.coverage`). Those geometries come from the engine's one window arithmetic
(:func:`convtool.engine.carry`), so they cannot drift from the filtered channels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from convtool import engine
from convtool.choices import AlphaMode, values
from convtool.errors import UsageError
from convtool.kernels import Kernel
from convtool.padding import Padding, parse_padding

GRADIENT_OPERATORS = {
    "sobel": ("sobel-x", "sobel-y"),
    "prewitt": ("prewitt-x", "prewitt-y"),
    "scharr": ("scharr-x", "scharr-y"),
    "roberts": ("roberts-cross1", "roberts-cross2"),
}
GRADIENT_NORMS = ("l2", "l1", "max")
POOL_KINDS = ("maxpool", "avgpool")
ALPHA_MODES = values(AlphaMode)
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


def check_steps_fit(steps, options: FilterOptions) -> None:
    """Refuse what the options make meaningless, in the units the user typed.

    A kernel origin (``@origin=ROW,COL``, a file's ``origin:``, ImageMagick's ``+X+Y``)
    picks the centre tap; ``valid`` and ``full`` output where the whole kernel fits, so
    they have no centre to move.
    """
    if options.padding.keeps_size:
        return
    for step in steps:
        for kernel in step.kernels():
            if kernel.origin != (0, 0):
                row, column = kernel.centre
                raise UsageError(
                    f"kernel {kernel.name} puts its centre at row {row}, column {column} "
                    f"(counted from 0), which --padding {options.padding.value} does not use "
                    "(its output is where the whole kernel fits); leave the origin out or "
                    "use a same-size padding"
                )


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

    @property
    def spec(self) -> str:
        """The ``-k`` text the step came from."""
        ...

    def apply(self, stack: np.ndarray, options: FilterOptions) -> np.ndarray: ...

    def kernels(self) -> tuple[Kernel, ...]: ...

    def carry(self, array: np.ndarray, options: FilterOptions) -> np.ndarray: ...

    def carry_alpha(self, array: np.ndarray, options: FilterOptions) -> np.ndarray: ...

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


def carry(array: np.ndarray, shape, origin, options: FilterOptions) -> np.ndarray:
    """Move ``array`` (alpha, or channels left unfiltered) as filtering with a kernel of
    ``shape`` and ``origin`` moves the filtered channels, without mixing its pixels:
    :func:`convtool.engine.carry`, whose geometry is the filter's own window arithmetic.
    A transposed step inserts pixels, which a carried array has no values for: refused.
    """
    if options.transposed:
        raise UsageError(
            "--transposed inserts pixels, so alpha or channels left unfiltered cannot be "
            "carried along; use --alpha filter (alpha filtered like a colour channel) and "
            "--channels all"
        )
    args = {k: v for k, v in options.engine_args().items() if k not in ("method", "threads")}
    shaped = np.zeros(shape)  # only the shape matters (zeros: the weights are still checked)
    return engine.carry(array, shaped, convolve=not options.correlate, origin=origin, **args)


@dataclass(frozen=True)
class ConvolveStep:
    """Convolve (or correlate) every channel with one kernel."""

    kernel: Kernel
    spec: str = ""

    def apply(self, stack: np.ndarray, options: FilterOptions) -> np.ndarray:
        return _filter(stack, self.kernel, options)

    def kernels(self) -> tuple[Kernel, ...]:
        return (self.kernel,)

    def carry(self, array: np.ndarray, options: FilterOptions) -> np.ndarray:
        return carry(array, self.kernel.shape, self.kernel.origin, options)

    carry_alpha = carry

    def coverage(self, weights: np.ndarray, options: FilterOptions) -> np.ndarray:
        return _coverage(weights, self.kernel, options)

    def apply_uint8(
        self, pixels: np.ndarray, options: FilterOptions, work_dtype=None
    ) -> np.ndarray | None:
        """See :func:`apply_uint8`."""
        kernel = self.kernel.normalized() if options.normalize else self.kernel
        if pixels.dtype != np.uint8 or kernel.offset or options.transposed:
            return None
        if work_dtype is not None:
            _check_weights_fit(kernel, np.dtype(work_dtype))  # as the float path refuses
        run = engine.correlate if options.correlate else engine.convolve
        return run(
            pixels,
            kernel,
            **options.engine_args(),
            out_dtype=np.uint8,
            channel_axis=-1,
            work_dtype=work_dtype,
        )


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

    def __post_init__(self) -> None:
        if self.kx.shape != self.ky.shape or self.kx.origin != self.ky.origin:
            raise UsageError(
                f"gradient kernels {self.kx.name} and {self.ky.name} differ in shape or "
                "origin; their results would not line up"
            )

    def apply(self, stack: np.ndarray, options: FilterOptions) -> np.ndarray:
        gx = _filter(stack, self.kx, options)
        gy = _filter(stack, self.ky, options)
        return combine_gradients(gx, gy, self.norm)

    def kernels(self) -> tuple[Kernel, ...]:
        return (self.kx, self.ky)

    def carry(self, array: np.ndarray, options: FilterOptions) -> np.ndarray:
        return carry(array, self.kx.shape, self.kx.origin, options)

    carry_alpha = carry

    def coverage(self, weights: np.ndarray, options: FilterOptions) -> np.ndarray:
        return _coverage(weights, self.kx, options)


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
    step carries its own window and stride. Alpha is pooled the same way; channels left
    unfiltered take the value at each window's centre (index ``size // 2``), the anchor
    a correlation with a kernel of the window's size would have under ``valid``.
    """

    kind: str
    size: tuple[int, int]
    stride: tuple[int, int]
    spec: str = ""

    def apply(self, stack: np.ndarray, options: FilterOptions) -> np.ndarray:
        return pool(stack, self.kind, self.size, self.stride)

    def kernels(self) -> tuple[Kernel, ...]:
        return ()

    def carry(self, array: np.ndarray, options: FilterOptions) -> np.ndarray:
        window = np.ones(self.size)
        return engine.carry(
            array, window, convolve=False, padding=Padding.VALID, stride=self.stride
        )

    def carry_alpha(self, array: np.ndarray, options: FilterOptions) -> np.ndarray:
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


# ----------------------------------------------------------------------------- uint8 -> uint8


def apply_uint8(
    steps, pixels: np.ndarray, options: FilterOptions, work_dtype=None
) -> np.ndarray | None:
    """8-bit samples through ``steps`` straight to 8-bit results, or None for the float path.

    For a single convolving step (no kernel offset) on uint8 ``(H, W, C)`` pixels: the
    result rounded half to even and clipped to 0..255, which is what writing the float
    path's result to an 8-bit file with ``--range clip`` (the default) gives. The engine
    computes it in integers, without a float image, when the kernel is small integers
    times a power-of-two or odd scale (bound: :mod:`convtool.engine.integer`), else in
    float64 and rounds; with ``work_dtype`` (float32 or float64) it computes in that dtype
    and rounds each band: the float path's own bytes, without its float image (and never
    with the integer kernels). None for anything else (several steps, gradient magnitudes,
    pooling, transposed convolution, non-uint8 samples): the caller keeps the float path.
    """
    steps = tuple(steps)
    if len(steps) != 1 or not isinstance(steps[0], ConvolveStep):
        return None
    return steps[0].apply_uint8(pixels, options, work_dtype)

"""Applying a chain of steps to an image's channels, with alpha and channel selection.

:class:`Chain` holds the parsed steps (:mod:`convtool.steps`), the shared options and the
iteration count; it filters an image's colour channels in one stack ``(C, H, W)`` and
moves alpha along with the same geometry (cropped, padded, strided or pooled), or
filters it, or uses it to weight the colour (``--alpha``). Every frame of an animation
(or page of a TIFF) gets the same chain. A ``progress`` callback follows a long run
(see :data:`Progress`); the chain never draws anything itself. The step names are
re-exported here, so ``from convtool.pipeline import parse_steps`` keeps working; which
channels are filtered, and the luma transform, are :mod:`convtool.pipeline.channels`'.

The module stays whole past 400 lines: it is one idea, a :class:`Chain` and how it applies
itself (to pixels, to every frame, as a filter bank, on the 8-bit route), and about a
quarter of it is the public class's numpydoc sections and doctested examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from convtool.engine import observe_bands
from convtool.errors import ImageReadError, UsageError
from convtool.pipeline.channels import (
    RGB_TO_YCBCR,
    YCBCR_TO_RGB,
    mix_channels,
    parse_channels,
)
from convtool.pipeline.filters import gradient_magnitude
from convtool.pipeline.layers import LayerStep
from convtool.pipeline.parsing import parse_step, parse_steps, step_entries, with_layer_options
from convtool.pipeline.steps import (
    ALPHA_MODES,
    GRADIENT_NORMS,
    GRADIENT_OPERATORS,
    MAX_ITERATIONS,
    POOL_KINDS,
    ConvolveStep,
    FilterOptions,
    GradientStep,
    PoolStep,
    Step,
    apply_uint8,
    check_steps_fit,
    check_transposable,
    combine_gradients,
    pool,
)

# The steps are re-exported: the pipeline is where callers look for them.
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
    "LayerStep",
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
    "with_layer_options",
]


Progress = Callable[[float, int], None]
"""``progress(done, total)``: work units done (fractions as the engine's bands finish) of
``total``, one unit a step, per iteration, per frame. Called on the filtering thread."""


class _Ticker:
    """Turns band and step completions into calls of a :data:`Progress`, never backwards."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress, self.total = progress, max(1, total)
        self.unit, self.done = 0, 0.0

    def band(self, done: int, total: int) -> None:
        value = self.unit + done / max(1, total)
        if value > self.done:
            self.done = value
            self.progress(value, self.total)

    def step_done(self) -> None:
        self.unit += 1
        self.done = float(self.unit)
        self.progress(self.done, self.total)


@dataclass(frozen=True)
class Chain:
    """A parsed chain of steps, how to apply them, and how many times.

    What ``convtool filter -k ... -k ...`` runs, as a value: :meth:`apply` filters pixels,
    :meth:`apply_to` an :class:`convtool.images.Image` with every frame.

    Parameters
    ----------
    steps : sequence of steps
        What to apply, in order: :func:`~convtool.pipeline.parse_steps` of ``-k`` specs
        (a kernel, ``grad:``, pooling, a layer) or step objects.
    options : FilterOptions
        How every convolving step is applied: padding, ``cval``, stride, dilation,
        correlation or convolution, normalising, method, threads, transposed.
    iterations : int
        How many times the whole chain runs (1 to ``MAX_ITERATIONS``).
    alpha_mode : {"carry", "weighted", "filter"}
        Alpha moved with the same geometry, unfiltered; colour filtered premultiplied by
        alpha (no dark fringes at transparent edges); or alpha filtered as a channel.
    channels : "all", "luma" or tuple of int
        ``"luma"`` filters the BT.601 luminance of an RGB image and keeps its colour (to
        sharpen without colour fringes); a tuple picks channel indices. Channels not picked
        are carried with the same geometry, unfiltered.
    stack : bool
        A filter bank: each step is applied to the input on its own (``iterations`` times)
        instead of after the previous one, and the results are put side by side as
        channels, step by step: for C channels and n steps, channel ``i*C + c`` is channel
        c filtered by step i (``C`` being a layer step's output channels for that step).
        Alpha comes from the first step.

    Raises
    ------
    convtool.errors.UsageError
        ``iterations`` out of range, an unknown ``alpha_mode``, steps that cannot be
        transposed or do not fit the options, ``stack`` without steps.

    Examples
    --------
    >>> import numpy as np
    >>> from convtool.pipeline import Chain, FilterOptions, parse_steps
    >>> ones = Chain(parse_steps(["[1 1]"]), FilterOptions(padding="zero", correlate=True))
    >>> pixels, alpha = ones.apply(np.array([[0.0, 1.0, 0.0, 0.0]])[..., None])
    >>> pixels[..., 0].tolist(), alpha
    ([[0.0, 1.0, 1.0, 0.0]], None)
    >>> twice = Chain(ones.steps, ones.options, iterations=2)
    >>> twice.apply(np.array([[0.0, 1.0, 0.0, 0.0]])[..., None])[0][..., 0].tolist()
    [[0.0, 1.0, 2.0, 1.0]]
    >>> bank = Chain(parse_steps(["sobel-x", "sobel-y"]), stack=True)
    >>> bank.stack_sizes(3), bank.apply(np.zeros((4, 4, 3)))[0].shape
    ([('sobel-x', 3), ('sobel-y', 3)], (4, 4, 6))
    >>> Chain(ones.steps, iterations=0)
    Traceback (most recent call last):
    ...
    convtool.errors.UsageError: --iterations must be a whole number from 1 to 1000, got 0
    """

    steps: tuple = field(default_factory=tuple)
    options: FilterOptions = field(default_factory=FilterOptions)
    iterations: int = 1
    alpha_mode: str = "carry"
    channels: str | tuple[int, ...] = "all"
    stack: bool = False

    def __post_init__(self) -> None:
        if int(self.iterations) != self.iterations or not 1 <= self.iterations <= MAX_ITERATIONS:
            raise UsageError(
                f"--iterations must be a whole number from 1 to {MAX_ITERATIONS}, "
                f"got {self.iterations}"
            )
        if self.alpha_mode not in ALPHA_MODES:
            raise UsageError(
                f"--alpha must be one of {', '.join(ALPHA_MODES)}, got {self.alpha_mode!r}"
            )
        object.__setattr__(self, "steps", tuple(self.steps))
        if isinstance(self.channels, str):
            object.__setattr__(self, "channels", parse_channels(self.channels))
        check_transposable(self.steps, self.options)
        check_steps_fit(self.steps, self.options)
        if self.stack and not self.steps:
            raise UsageError("--stack needs at least one -k step")

    def apply(
        self,
        pixels: np.ndarray,
        alpha: np.ndarray | None = None,
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Filter ``pixels`` (H, W, C) and move ``alpha`` (H, W) along; returns both.

        Channels are filtered as planes: pixels that are the (H, W, C) view of (C, H, W)
        planes, as :func:`convtool.images.read_image` gives them, are used without a copy,
        and the result is such a view too.

        Parameters
        ----------
        pixels : numpy.ndarray
            (H, W, C) values in any scale.
        alpha : numpy.ndarray, optional
            (H, W) opacity, handled as ``alpha_mode`` says.
        progress : callable, optional
            Told how far the work is, band by band (see :data:`Progress`).

        Returns
        -------
        (numpy.ndarray, numpy.ndarray or None)
            The filtered (H', W', C') pixels, unclipped, and alpha with the same geometry
            (None without alpha).

        Raises
        ------
        convtool.errors.ImageReadError
            NaN or infinity in the pixels or alpha: they would spread past the kernel's
            window (a running sum or an FFT carries them on), so they are refused.
        convtool.errors.UsageError
            A ``channels`` pick the image does not have, steps of a bank that give
            different sizes.

        Examples
        --------
        >>> import numpy as np
        >>> from convtool.pipeline import Chain, FilterOptions, parse_steps
        >>> blur = Chain(parse_steps(["box:3"]), FilterOptions(padding="edge"))
        >>> pixels, alpha = blur.apply(np.array([[0.0, 3.0, 6.0]])[..., None], np.ones((1, 3)))
        >>> pixels[..., 0].tolist(), alpha.tolist()
        ([[1.0, 3.0, 5.0]], [[1.0, 1.0, 1.0]])
        >>> blur.apply(np.array([[np.nan, 1.0]])[..., None])
        Traceback (most recent call last):
        ...
        convtool.errors.ImageReadError: the image has NaN or infinite pixel values, which cannot be filtered; replace them first (e.g. with 0)
        """
        ticker = self._ticker(progress, 1)
        return self._apply(pixels, alpha, None, ticker)

    def _ticker(self, progress: Progress | None, frames: int) -> _Ticker | None:
        if progress is None:
            return None
        return _Ticker(progress, frames * self.iterations * len(self.steps))

    def _apply(
        self,
        pixels: np.ndarray,
        alpha: np.ndarray | None,
        source: str | None,
        ticker: _Ticker | None = None,
        finite: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if self.stack:
            return self._apply_stack(pixels, alpha, source, ticker, finite)
        if not finite:
            _require_finite(pixels, alpha, source)
        stack = np.moveaxis(pixels, -1, 0)
        luma = self.channels == "luma" and stack.shape[0] == 3
        if luma:
            stack = mix_channels(RGB_TO_YCBCR, stack)
        picked = self._picked(stack.shape[0], luma)
        kept = [c for c in range(stack.shape[0]) if c not in picked]
        everything = len(picked) == stack.shape[0]  # the common case: no copy to pick
        filtered, alpha = self._run(stack if everything else stack[list(picked)], alpha, ticker)
        if kept and filtered.shape[0] != len(picked):
            raise UsageError(
                "a layer kernel changes the number of channels, so channels cannot be left "
                "unfiltered; use --channels all"
            )
        if kept:
            carried = stack[kept]
            for _ in range(self.iterations):
                for step in self.steps:
                    carried = step.carry(carried, self.options)
            out = np.empty((stack.shape[0], *filtered.shape[1:]), filtered.dtype)
            out[list(picked)], out[kept] = filtered, carried
            filtered = out
        if luma:
            filtered = mix_channels(YCBCR_TO_RGB, filtered)
        # the (H, W, C) view of the filtered planes: writing reads them band by band
        return np.moveaxis(filtered, 0, -1), alpha

    def _apply_stack(
        self,
        pixels: np.ndarray,
        alpha: np.ndarray | None,
        source: str | None,
        ticker: _Ticker | None = None,
        finite: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Each step on its own, the results side by side as channels (see the class)."""
        results: list[np.ndarray] = []
        first_alpha = None
        for step in self.steps:
            single = dataclasses.replace(self, steps=(step,), stack=False)
            filtered, moved = single._apply(pixels, alpha, source, ticker, finite)
            if results and filtered.shape[:2] != results[0].shape[:2]:
                first = results[0].shape
                raise UsageError(
                    f"--stack needs steps that give one size: {self.steps[0].spec} gives "
                    f"{first[0]}x{first[1]}, {step.spec} gives "
                    f"{filtered.shape[0]}x{filtered.shape[1]} (kernels of other sides under "
                    "valid or full padding?)"
                )
            if not results:
                first_alpha = moved
            results.append(filtered)
        return np.concatenate(results, axis=-1), first_alpha

    def stack_sizes(self, channels: int) -> list[tuple[str, int]]:
        """For ``stack=True``: each step's spec and how many channels it adds, in order."""
        sizes = []
        for step in self.steps:
            count = channels
            if isinstance(step, LayerStep):
                count = step.output_channels(channels, self.options)
            sizes.append((step.spec, count))
        return sizes

    def _picked(self, count: int, luma: bool) -> tuple[int, ...]:
        if self.channels == "all" or (self.channels == "luma" and count == 1):
            return tuple(range(count))
        if luma:
            return (0,)
        if isinstance(self.channels, str):  # "luma": "all" returned above
            raise UsageError(f"--channels luma needs a grey or RGB image, not {count} channels")
        missing = [c for c in self.channels if c >= count]
        if missing:
            raise UsageError(
                f"--channels picks channel {missing[0]} but the image has {count} channel(s)"
            )
        return self.channels

    def _run(
        self, stack: np.ndarray, alpha: np.ndarray | None, ticker: _Ticker | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The steps, N times, over a (C, H, W) stack, with alpha handled by ``alpha_mode``."""
        alpha_in_stack = alpha is not None and self.alpha_mode == "filter"
        if alpha is not None and alpha_in_stack:
            stack = np.concatenate([stack, alpha[None]], axis=0)
            alpha = None
        weights: np.ndarray | None = None
        if alpha is not None and self.alpha_mode == "weighted":
            # alpha's value scale (1, 255, 65535) cancels in the final division
            stack, weights = stack * alpha, alpha[None]
        for _ in range(self.iterations):
            for step in self.steps:
                with observe_bands(ticker.band if ticker is not None else None):
                    stack = step.apply(stack, self.options)
                    if weights is not None:
                        weights = step.coverage(weights, self.options)
                    if alpha is not None:
                        alpha = step.carry_alpha(alpha, self.options)
                if ticker is not None:
                    ticker.step_done()
        if weights is not None:
            stack = _unpremultiply(stack, weights)
        if alpha_in_stack:
            stack, alpha = stack[:-1], stack[-1]
        return stack, alpha

    def apply_uint8(
        self, pixels: np.ndarray, alpha: np.ndarray | None = None, work_dtype=None
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """8-bit ``pixels`` (H, W, C) and ``alpha`` to 8-bit results for ``--range clip``, or
        None when this chain needs the float path (see :func:`steps.apply_uint8`: one
        convolving step; here also one iteration, every channel, alpha absent or carried).
        ``work_dtype``: compute in that float dtype and round band by band (the float
        path's bytes); None: the exact integer kernels where they apply."""
        if pixels.dtype != np.uint8 or self.iterations != 1 or self.channels != "all":
            return None
        if alpha is not None and (alpha.dtype != np.uint8 or self.alpha_mode != "carry"):
            return None
        # filtered as the rows lie in memory (H, W*C): no copy changes the layout
        filtered = apply_uint8(self.steps, pixels, self.options, work_dtype)
        if filtered is None:
            return None
        if alpha is not None:  # a one-tap kernel moves alpha exactly: rounding changes nothing
            step = self.steps[0]
            alpha = np.clip(np.rint(step.carry(alpha, self.options)), 0, 255).astype(np.uint8)
        return filtered, alpha

    def apply_to(self, image, progress: Progress | None = None):
        """Filter an :class:`convtool.images.Image`-like object, every frame; returns a new one.

        An image of an integer depth (8, 16, 32: values read from integers) is finite by
        construction, so only float images are checked for NaN and infinity (two passes
        over the pixels that integer images are spared).

        Parameters
        ----------
        image : convtool.images.Image
            Pixels, alpha and the other frames (``frames``), each filtered as :meth:`apply`
            filters them.
        progress : callable, optional
            Told how far the work is, over every frame (see :data:`Progress`).

        Returns
        -------
        convtool.images.Image
            A copy with the filtered pixels, alpha and frames; depth, format and metadata
            kept.

        Raises
        ------
        convtool.errors.ImageReadError, convtool.errors.UsageError
            As :meth:`apply` raises them (messages name the image's ``source``).

        Examples
        --------
        >>> import numpy as np
        >>> from convtool.images import Image
        >>> from convtool.pipeline import Chain, FilterOptions, parse_steps
        >>> mean = Chain(parse_steps(["[1 1]/2"]), FilterOptions(padding="valid"))
        >>> filtered = mean.apply_to(Image(np.array([[0.0, 10.0, 20.0]]), depth=8))
        >>> filtered.pixels[..., 0].tolist(), filtered.depth
        ([[5.0, 15.0]], 8)
        """
        source = getattr(image, "source", None)
        frames = list(getattr(image, "frames", None) or ())
        ticker = self._ticker(progress, 1 + len(frames))
        finite = getattr(image, "depth", "float") in (8, 16, 32)
        pixels, alpha = self._apply(image.pixels, image.alpha, source, ticker, finite)
        if not frames:
            return dataclasses.replace(image, pixels=pixels, alpha=alpha)
        filtered = []
        for frame in frames:
            frame_pixels, frame_alpha = self._apply(
                frame.pixels, frame.alpha, source, ticker, finite
            )
            filtered.append(dataclasses.replace(frame, pixels=frame_pixels, alpha=frame_alpha))
        return dataclasses.replace(image, pixels=pixels, alpha=alpha, frames=filtered)


def _require_finite(pixels: np.ndarray, alpha: np.ndarray | None, source: str | None) -> None:
    for what, array in (("pixel", pixels), ("alpha", alpha)):
        if array is None or array.dtype.kind != "f" or array.size == 0:
            continue
        # min and max carry NaN and infinity along without an image-size temporary
        if not (np.isfinite(np.min(array)) and np.isfinite(np.max(array))):
            hint = " (or, for values beyond float32, use --precision double)"
            raise ImageReadError(
                f"the image has NaN or infinite {what} values, which cannot be filtered; "
                f"replace them first (e.g. with 0){hint if array.dtype == np.float32 else ''}",
                path=source,
            )


def _unpremultiply(stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Divide premultiplied results by the filtered alpha; fully transparent stays 0.

    Where the filtered alpha is (near) zero there is no colour to recover; those pixels
    become 0 rather than inf or a bleed of hidden colour.
    """
    tiny = np.finfo(stack.dtype).eps * max(1.0, float(np.max(np.abs(weights), initial=0.0)))
    safe = np.abs(weights) > tiny
    out = np.zeros_like(stack)
    np.divide(stack, weights, out=out, where=safe)
    return out

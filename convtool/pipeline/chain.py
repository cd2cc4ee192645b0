"""Applying a chain of steps to an image's channels, with alpha and channel selection.

:class:`Chain` holds the parsed steps (:mod:`convtool.steps`), the shared options and the
iteration count; it filters an image's colour channels in one stack ``(C, H, W)`` and
moves alpha along with the same geometry (cropped, padded, strided or pooled), or
filters it, or uses it to weight the colour (``--alpha``). Every frame of an animation
(or page of a TIFF) gets the same chain. A ``progress`` callback follows a long run
(see :data:`Progress`); the chain never draws anything itself. The step names are
re-exported here, so ``from convtool.pipeline import parse_steps`` keeps working.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from convtool.engine import observe_bands
from convtool.errors import ImageReadError, UsageError
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

CHANNEL_NAMES = {"r": 0, "g": 1, "b": 2}

# ITU-R BT.601 full-range RGB -> YCbCr (as JPEG), without the +128 offset: in floating
# point the chroma planes stay signed, and the exact matrix inverse brings RGB back.
RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)  # fmt: skip
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)

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


def mix_channels(matrix: np.ndarray, stack: np.ndarray) -> np.ndarray:
    """``matrix @ stack`` over the channels of a (3, H, W) stack, pixel by pixel.

    Elementwise multiply-adds in a fixed order rather than a matrix product: BLAS blocks a
    product differently for different image sizes, so a band of rows would not get the
    bytes of the whole image (streaming relies on it).
    """
    weights = matrix.astype(stack.dtype)
    out = np.empty_like(stack)
    tmp = np.empty_like(stack[0])
    for i, row in enumerate(weights):
        np.multiply(stack[0], row[0], out=out[i])
        for j in range(1, len(row)):
            np.multiply(stack[j], row[j], out=tmp)
            np.add(out[i], tmp, out=out[i])
    return out


def parse_channels(text: str) -> str | tuple[int, ...]:
    """``all``, ``luma``, or channel names/indices like ``R,G`` or ``0,2``."""
    key = text.strip().lower()
    if key in ("all", "luma", "y"):
        return "luma" if key == "y" else key
    picked = []
    for part in (p.strip() for p in key.split(",")):
        if part in CHANNEL_NAMES:
            picked.append(CHANNEL_NAMES[part])
        elif part.isdigit():
            picked.append(int(part))
        else:
            raise UsageError(
                f"--channels takes all, luma, or channels like R,G or 0,2; got {text!r}"
            )
    if len(set(picked)) != len(picked):
        raise UsageError(f"--channels names a channel twice: {text!r}")
    return tuple(sorted(picked))


@dataclass(frozen=True)
class Chain:
    """A parsed chain of steps, how to apply them, and how many times.

    ``channels`` is ``"all"``, ``"luma"`` (filter the BT.601 luminance of an RGB image
    and keep its colour, e.g. to sharpen without colour fringes) or a tuple of channel
    indices; channels not picked are carried with the same geometry, unfiltered.

    ``stack=True`` makes a filter bank: each step is applied to the input on its own
    (``iterations`` times) instead of after the previous one, and the results are put side
    by side as channels, step by step: for C channels and n steps, channel ``i*C + c`` is
    channel c filtered by step i (``C`` being a layer step's output channels for that step).
    Alpha comes from the first step.
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

        Pixels and alpha must be finite: NaN or infinity would spread past the kernel's
        window (a running sum or an FFT carries it on), so they are refused.
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

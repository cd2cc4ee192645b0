"""Range mapping: from float results to the values an output depth holds.

Results stay floating point, unclipped, in their source's value scale until they are
written; :func:`output_samples` then maps them into the output depth's range
(:func:`map_range`: ``clip``, ``abs``, ``offset`` or ``rescale``), changes scale between 8
and 16 bits, rounds half to even and casts — band by band of rows, straight into the
interleaved layout encoders take (:class:`Samples`), so the float image is never copied
whole. No file formats here: see :mod:`convtool.images`.
"""

from __future__ import annotations

import numpy as np

from convtool.choices import RangeMode, values
from convtool.errors import UsageError

__all__ = ["MAX_VALUES", "RANGE_MODES", "Samples", "finite_span", "map_range", "output_samples"]

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
    _check_mode(mode)
    x = np.asarray(pixels)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    if mode == "rescale" and span is None:
        span = finite_span(x)
    out = np.empty_like(x) if x is pixels else x
    return _mapped(x, mode, max_value, span, out)


def _check_mode(mode: str) -> None:
    if mode not in RANGE_MODES:
        raise UsageError(f"range mode must be one of {', '.join(RANGE_MODES)}; got {mode!r}")


def _mapped(
    x: np.ndarray,
    mode: str,
    max_value: float,
    span: tuple[float, float] | None,
    out: np.ndarray,
) -> np.ndarray:
    """``map_range`` of ``x`` into ``out`` (same shape, float; may be ``x`` itself)."""
    if mode == "abs":
        x = np.abs(x, out=out)
    elif mode == "offset":
        x = np.add(x, (max_value + 1) / 2 if max_value > 1 else max_value / 2, out=out)
    elif mode == "rescale":
        low, high = span  # type: ignore[misc]
        if high == low:
            out[...] = 0
            return out
        x = np.multiply(np.subtract(x, low, out=out), max_value / (high - low), out=out)
    # fmax/fmin rather than clip: NaN becomes 0 (fmax returns the non-NaN argument).
    np.fmax(x, 0.0, out=out)
    return np.fmin(out, max_value, out=out)


def finite_span(x: np.ndarray) -> tuple[float, float]:
    """The minimum and maximum of the finite values of *x* ((0, 0) if there are none)."""
    span = _finite_range(x)
    return span if span is not None else (0.0, 0.0)


def _finite_range(x: np.ndarray) -> tuple[float, float] | None:
    """The least and the greatest finite value of ``x``; None if there is none."""
    low, high = float(np.nanmin(x, initial=np.inf)), float(np.nanmax(x, initial=-np.inf))
    if np.isfinite(low) and np.isfinite(high):
        return low, high
    finite = x[np.isfinite(x)]  # rare: infinities present (or nothing finite at all)
    return (float(finite.min()), float(finite.max())) if finite.size else None


class Samples:
    """What an encoder writes: colour (and alpha, last) mapped for the output depth.

    ``rows(r0, r1)`` maps, rounds and casts output rows ``r0..r1-1`` now and returns them
    interleaved, shape ``(r1 - r0, W, C)`` with ``C`` counting alpha: an encoder that
    writes bands (PNG) never holds the mapped image whole, and the float image is read
    band by band in whatever layout it has (channel planes after filtering). ``whole()``
    is ``rows(0, H)``. Integer depths give uint8, uint16 or uint32; ``"float"`` gives the
    colour's float type (alpha cast to it), raw or range-mapped. Every value is computed
    with the same operations, in the same float type, as :func:`map_range` applied to the
    whole image would, so banding changes no pixel.
    """

    def __init__(
        self,
        pixels: np.ndarray,
        alpha: np.ndarray | None,
        source_depth: int | str,
        depth: int | str,
        range_mode: str | None,
        span: tuple[float, float] | None = None,
    ) -> None:
        if range_mode is not None:
            _check_mode(range_mode)
        self.depth = depth
        self.has_alpha = alpha is not None
        self._planes = np.moveaxis(np.asarray(pixels), -1, 0)  # (C, H, W), a view
        self._alpha = None if alpha is None else np.asarray(alpha)
        channels, height, width = self._planes.shape
        self.shape = (height, width, channels + self.has_alpha)
        alpha_factor = _alpha_factor(source_depth, depth)
        if depth == "float":
            known = MAX_VALUES.get(source_depth) if isinstance(source_depth, int) else None
            scale = known or 1.0
            # colour raw, or mapped into the source's own scale; alpha is opacity, clipped
            self._colour = _Recipe.floats(self._planes.dtype, 1.0, range_mode, scale)
            self.dtype = self._colour.dtype
            if self._alpha is not None:
                mode = None if range_mode is None else "clip"
                self._alpha_recipe = _Recipe.floats(self._alpha.dtype, alpha_factor, mode, 1.0)
        else:
            self.dtype = np.dtype(_INT_DTYPES[depth])  # type: ignore[index, arg-type]
            max_value = MAX_VALUES[depth]  # type: ignore[index]
            factor = _rescale_factor(source_depth, depth)
            mode = range_mode or "clip"
            self._colour = _Recipe.integers(self._planes.dtype, depth, factor, mode, max_value)
            if self._alpha is not None:
                self._alpha_recipe = _Recipe.integers(
                    self._alpha.dtype, depth, alpha_factor, "clip", max_value
                )
        if self._colour.mode == "rescale":
            factor = self._colour.factor
            if span is None:
                span = self._rescale_span()
            elif factor != 1.0:  # a span shared by frames is in the values' own scale
                span = (span[0] * factor, span[1] * factor)
            self._colour.span = span

    @classmethod
    def of(cls, samples: np.ndarray) -> Samples:
        """Samples already mapped and cast: ``(H, W, C)`` integers, written as they are."""
        self = cls.__new__(cls)
        array = np.asarray(samples)
        self.depth = 16 if array.dtype.itemsize == 2 else 8
        self.has_alpha, self._alpha = False, None  # alpha, if any, is among the channels
        self._planes = np.moveaxis(array, -1, 0)
        self.shape, self.dtype = array.shape, array.dtype
        self._colour = _Recipe(array.dtype, 1.0, None, 0, False, array.dtype)
        return self

    def _rescale_span(self) -> tuple[float, float]:
        """The minimum and maximum that ``rescale`` maps, over all channels.

        Taken after the 8 ↔ 16-bit factor, as the values are mapped, band by band: a
        pass over the planes, never a second image.
        """
        recipe = self._colour
        low, high = np.inf, -np.inf
        channels, height, width = self._planes.shape
        step = max(1, _SPAN_ELEMENTS // (channels * width))
        for start in range(0, height, step):
            band = self._planes[:, start : start + step]
            if band.dtype != recipe.work:
                band = band.astype(recipe.work)
            if recipe.factor != 1.0:
                band = band * recipe.factor
            span = _finite_range(band)
            if span is not None:
                low, high = min(low, span[0]), max(high, span[1])
        return (float(low), float(high)) if low <= high else (0.0, 0.0)

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows ``r0..r1-1`` mapped, rounded and cast, interleaved: ``(r1 - r0, W, C)``."""
        if self._unchanged_rows():  # (the 8-bit route's results: written as they are)
            return np.moveaxis(self._planes[:, r0:r1], 0, -1)
        height, width, channels = self.shape
        out = np.empty((r1 - r0, width, channels), self.dtype)
        colour = self._planes.shape[0]
        self._fill(r0, r1, out[:, :, :colour], out[:, :, colour] if self.has_alpha else None)
        return out

    def _unchanged_rows(self) -> bool:
        """Whether rows are the pixels as they are: interleaved samples already of the
        output type that the mapping would copy unchanged (in range: clip does nothing;
        no factor; no alpha to interleave). Their rows are then views, with no copy."""
        recipe = self._colour
        if self.has_alpha or recipe.factor != 1.0 or self._planes.dtype != self.dtype:
            return False
        if self.dtype.kind not in "ui" or recipe.mode not in (None, "clip"):
            return False
        return self._planes.strides[0] == self._planes.itemsize  # channels interleaved

    def whole(self) -> np.ndarray:
        """All rows (``rows(0, H)``), for encoders that take the image at once."""
        return self.rows(0, self.shape[0])

    def split(self) -> tuple[np.ndarray, np.ndarray | None]:
        """All rows as (colour (H, W, C), alpha (H, W) or None), each its own array.

        Raw float colour is the input array itself, as no value changes.
        """
        height, width, channels = self.shape
        colour_channels = self._planes.shape[0]
        alpha = None if self._alpha is None else np.empty((height, width), self.dtype)
        if self._colour.identity:
            colour = np.moveaxis(self._planes, 0, -1)
            self._fill(0, height, None, alpha)
        else:
            colour = np.empty((height, width, colour_channels), self.dtype)
            self._fill(0, height, colour, alpha)
        return colour, alpha

    def _fill(self, r0: int, r1: int, colour: np.ndarray | None, alpha: np.ndarray | None) -> None:
        """Map rows ``r0..r1-1`` into *colour* (n, W, C) and *alpha* (n, W), any strides
        (None: not that one)."""
        width = self.shape[1]
        # a few rows at a time: the float scratch stays in cache between the passes
        step = max(1, _CHUNK_ELEMENTS // width)
        scratch: dict[np.dtype, np.ndarray] = {}
        source_alpha = self._alpha if alpha is not None else None
        for start in range(r0, r1, step):
            stop = min(start + step, r1)
            here = slice(start - r0, stop - r0)
            if colour is not None:
                for c in range(self._planes.shape[0]):
                    self._colour.apply(self._planes[c, start:stop], colour[here, :, c], scratch)
            if alpha is not None and source_alpha is not None:
                self._alpha_recipe.apply(source_alpha[start:stop], alpha[here], scratch)


# Elements (all channels) of one band whose minimum and maximum rescale reads at a time.
_SPAN_ELEMENTS = 1 << 20

# Elements of one channel mapped at a time (256 KiB of float32): small enough to stay in
# cache through the four passes (factor or mode, clip, round, cast), big enough that the
# per-call overhead is noise.
_CHUNK_ELEMENTS = 1 << 16


class _Recipe:
    """How one array (colour or alpha) becomes output values: the steps of output_samples."""

    def __init__(self, work, factor, mode, max_value, rounds, dtype) -> None:
        self.work = np.dtype(work)  # the float type the arithmetic runs in
        self.factor, self.mode, self.max_value = factor, mode, max_value
        self.rounds, self.dtype = rounds, np.dtype(dtype)
        self.span: tuple[float, float] | None = None

    @classmethod
    def integers(cls, dtype, depth, factor, mode, max_value) -> _Recipe:
        # float32 holds 8/16-bit values exactly; 32-bit outputs need float64 to round right
        work = np.float64 if depth == 32 or np.dtype(dtype).kind != "f" else dtype
        return cls(work, factor, mode, max_value, True, _INT_DTYPES[depth])

    @classmethod
    def floats(cls, dtype, factor, mode, max_value) -> _Recipe:
        # raw float output keeps the values' type; map_range computes non-floats in float64
        kind = np.dtype(dtype).kind
        work = dtype if kind == "f" or (mode is None and factor == 1.0) else np.float64
        return cls(work, factor, mode, max_value, False, work)

    @property
    def identity(self) -> bool:
        """Whether the values are written as they are (raw float output)."""
        return self.factor == 1.0 and self.mode is None and not self.rounds

    def apply(self, values: np.ndarray, out: np.ndarray, scratch: dict) -> None:
        """Map ``values`` (a few rows of one channel) into ``out`` (a strided view)."""
        if self.factor == 1.0 and self.mode is None:
            out[...] = values
            return
        integers = values.dtype == self.dtype and self.dtype.kind in "ui"
        if integers and self.factor == 1.0 and self.mode == "clip":
            out[...] = values  # integers of the output type: in range, nothing to round
            return
        buffer = scratch.get(self.work)
        if buffer is None or buffer.size < values.size:
            buffer = scratch[self.work] = np.empty(values.size, self.work)
        x = buffer[: values.size].reshape(values.shape)
        source = values
        if values.dtype != self.work:
            x[...] = values  # exact: every input type widens into the work type
            source = x
        if self.factor != 1.0:
            np.multiply(source, self.factor, out=x)
            source = x
        if self.mode is not None:
            _mapped(source, self.mode, self.max_value, self.span, x)
        elif source is not x:
            x[...] = source
        if self.rounds:
            np.rint(x, out=x)  # round half to even; in range, no NaN
        out[...] = x


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
    share them. Alpha is opacity (:func:`_alpha_factor`) and only ever clipped. The whole
    arrays; :class:`Samples` maps the same values band by band.
    """
    return Samples(pixels, alpha, source_depth, depth, range_mode, span).split()


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

"""Where a step's windows lie, cell by cell, taken from the engine's own geometry.

Everything here is derived from :func:`convtool.engine.plan.axis` (output ``j`` reads input
``stride*j + offset + a*dilation``) and :func:`convtool.engine.bands.source_positions` (which
pixel a padded position copies), the same two facts the engine filters with, so a picture or
an explanation built from a :class:`Line` shows the cells the engine reads.

A **forward** line (a convolution, correlation or pooling) slides over the padded input:
grid coordinates are input positions, negative or past the end for padding. A **transposed**
line slides over the input with ``stride-1`` zeros inserted between its pixels and
``span-1`` zeros on each side (the picture of conv_arithmetic): grid coordinate ``u`` is
input pixel ``u / stride`` when ``u`` is a multiple of the stride, else an inserted zero;
output ``i`` sums the windows ending at every scattered position that the border folds
onto ``i`` (one window, except near the border of edge, reflect, symmetric and wrap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convtool.engine.bands import source_positions
from convtool.engine.plan import Axis, axis, correlation_form
from convtool.engine.transposed import forward_axes, transposed_shape
from convtool.padding import Padding

INPUT, PADDING, INSERTED = "input", "padding", "inserted"


@dataclass(frozen=True)
class Line:
    """One axis of one step: the grid its windows slide over, and the windows of each output.

    ``forward`` is the engine's axis of the correlation (for a transposed line: of the
    forward step whose transpose it is, on the output's side); ``centre`` is where the
    kernel's centre lies in a forward window (``span // 2 + origin``, correlation form).
    """

    forward: Axis
    padding: Padding
    transposed: bool
    centre: int

    @property
    def span(self) -> int:
        return self.forward.span

    @property
    def inputs(self) -> int:
        """Pixels along this axis of the step's input."""
        return self.forward.size if self.transposed else self.forward.n

    @property
    def outputs(self) -> int:
        """Pixels along this axis of the step's output."""
        return self.forward.n if self.transposed else self.forward.size

    def grid(self) -> np.ndarray:
        """The coordinates of every cell a window can cover, in order."""
        ax = self.forward
        if self.transposed:
            return np.arange(-(ax.span - 1), (ax.size - 1) * ax.stride + ax.span)
        first = min(ax.offset, 0)
        last = max(ax.n, ax.offset + ax.reach)
        return np.arange(first, last)

    def sources(self, coordinates) -> np.ndarray:
        """The input pixel each coordinate reads, or -1 (a constant, or an inserted zero)."""
        u = np.asarray(coordinates, dtype=np.int64)
        ax = self.forward
        if self.transposed:
            pixel = (u >= 0) & (u <= (ax.size - 1) * ax.stride) & (u % ax.stride == 0)
            return np.where(pixel, u // ax.stride, -1)
        return source_positions(u, ax.n, self.padding)

    def kinds(self, coordinates) -> list[str]:
        """``input``, ``padding`` or ``inserted`` for each coordinate."""
        u = np.asarray(coordinates, dtype=np.int64)
        ax = self.forward
        if self.transposed:
            inside = (u >= 0) & (u <= (ax.size - 1) * ax.stride)
            return [
                (INPUT if v % ax.stride == 0 else INSERTED) if ok else PADDING
                for v, ok in zip(u, inside, strict=True)
            ]
        return [INPUT if 0 <= v < ax.n else PADDING for v in u]

    def starts(self, j: int) -> list[int]:
        """The first coordinate of each window that output ``j`` sums (see the module)."""
        ax = self.forward
        if not self.transposed:
            return [ax.stride * j + ax.offset]
        length = (ax.size - 1) * ax.stride + ax.span  # the scattered line, before folding
        t = np.arange(length)
        folded = source_positions(t + ax.offset, ax.n, self.padding)
        return [int(v) - (ax.span - 1) for v in t[folded == j]]

    def taps(self) -> np.ndarray:
        """Offsets of the kernel's taps inside a window (multiples of the dilation)."""
        return np.arange(self.forward.taps) * self.forward.dilation

    def anchor(self, j: int) -> int:
        """The input pixel output ``j`` comes from: the one under the kernel's centre tap
        (a transposed line: the input pixel at or before that cell); may lie in padding."""
        ax = self.forward
        if not self.transposed:
            return ax.stride * j + ax.offset + self.centre
        # the transposed window reads the weights backwards: its centre cell is j - offset - centre
        return (j - ax.offset - self.centre) // ax.stride


@dataclass(frozen=True)
class StepGeometry:
    """Both axes of one step, and the weights as a window multiplies them, in 2-D."""

    rows: Line
    cols: Line
    weights: np.ndarray  # (taps_h, taps_w): what multiplies the window's tap cells, in order

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.rows.inputs, self.cols.inputs)

    @property
    def output_shape(self) -> tuple[int, int]:
        return (self.rows.outputs, self.cols.outputs)

    def placed_weights(self) -> np.ndarray:
        """The weights on the (span_h, span_w) window, dilated taps placed, 0 between."""
        out = np.zeros((self.rows.span, self.cols.span))
        out[np.ix_(self.rows.taps(), self.cols.taps())] = self.weights
        return out

    def tap_mask(self) -> np.ndarray:
        """True on the window's tap cells, False on the gaps a dilation leaves."""
        mask = np.zeros((self.rows.span, self.cols.span), dtype=bool)
        mask[np.ix_(self.rows.taps(), self.cols.taps())] = True
        return mask


def convolution_geometry(
    input_shape,
    weights,
    *,
    padding: Padding,
    stride: int,
    dilation: int,
    origin=(0, 0),
    correlate: bool,
    transposed: bool = False,
) -> StepGeometry:
    """The geometry of one engine call (``correlate``/``convolve`` or their transposes)."""
    weights = np.asarray(weights, dtype=np.float64)
    strides, dilations = (stride, stride), (dilation, dilation)
    applied, origin = correlation_form(weights, origin, dilations, not correlate)
    spans = [(k - 1) * dilation + 1 for k in weights.shape]
    if transposed:
        n_shape = transposed_shape(
            input_shape, weights.shape, padding=padding, stride=stride, dilation=dilation
        )
        axes = forward_axes(
            tuple(input_shape), n_shape, applied.shape, dilations, strides, origin, padding
        )
        window_weights = applied[::-1, ::-1]  # the scatter, read as a window, runs backwards
    else:
        row_axis, col_axis = (
            axis(n, k, dilation, stride, o, padding)
            for n, k, o in zip(input_shape, applied.shape, origin, strict=True)
        )
        axes = row_axis, col_axis
        window_weights = applied
    # the centre's place in a forward window (valid and full take no origin: it is 0 there)
    centres = [span // 2 + o for span, o in zip(spans, origin, strict=True)]
    rows, cols = (Line(ax, padding, transposed, c) for ax, c in zip(axes, centres, strict=True))
    return StepGeometry(rows, cols, window_weights)


def pool_geometry(input_shape, size, stride) -> StepGeometry:
    """The geometry of a pooling step: windows of ``size`` every ``stride``, no padding."""
    axes = tuple(
        axis(n, k, 1, s, 0, Padding.VALID)
        for n, k, s in zip(input_shape, size, stride, strict=True)
    )
    rows, cols = (Line(ax, Padding.VALID, False, ax.span // 2) for ax in axes)
    return StepGeometry(rows, cols, np.full(tuple(size), 1.0 / (size[0] * size[1])))

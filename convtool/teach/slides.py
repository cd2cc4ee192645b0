"""What each frame of ``convtool animate`` shows: the grid, the window, the output so far.

The frames follow conv_arithmetic (Dumoulin & Visin): the (padded) input grid on the left
with the kernel's taps over it, the output on the right filling in pixel by pixel, one frame
per output pixel and a last frame with the whole result. The cells and windows come from
:mod:`convtool.teach.geometry` (the engine's geometry) and the output values from the step's
own ``apply``, so the picture is what ``filter`` computes. A transposed step is drawn as
conv_arithmetic draws it: the direct convolution over the input with zeros inserted and
``span-1`` zeros around. Drawing is :mod:`convtool.images.animation`'s business (Pillow).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convtool.errors import UsageError
from convtool.padding import Padding
from convtool.pipeline import ConvolveStep, FilterOptions, PoolStep
from convtool.teach.geometry import PADDING, StepGeometry, convolution_geometry, pool_geometry

# One frame per output pixel: beyond this many the GIF is too long to watch (and to make).
MAX_FRAMES = 2500


@dataclass(frozen=True)
class Frame:
    """One frame: the windows on the grid (tap cells and their span boxes), outputs shown."""

    taps: tuple[tuple[int, int], ...]  # (row, col) grid indices under a kernel tap
    boxes: tuple[tuple[int, int, int, int], ...]  # (row0, col0, row1, col1) inclusive
    weights: tuple[float, ...]  # the weight over each tap cell, in the order of ``taps``
    filled: int  # output pixels shown, in row-major order
    current: tuple[int, int] | None  # the output pixel being computed


@dataclass(frozen=True)
class Slides:
    """Everything the frames show, as numbers and names (no pixels)."""

    values: np.ndarray  # (GH, GW) the value in each grid cell
    kinds: tuple[tuple[str, ...], ...]  # input / padding / inserted per grid cell
    inside: tuple[int, int, int, int]  # grid (row0, col0, row1, col1) of the input itself
    output: np.ndarray  # (OH, OW) the step's result
    frames: tuple[Frame, ...]
    blank: bool  # a blank grid (--size): cells in colours of their kind, no values
    title: str


def build_slides(plane: np.ndarray, step, options: FilterOptions, *, blank: bool = False) -> Slides:
    """The slides of one convolving or pooling ``step`` over a 2-D ``plane``."""
    plane = np.asarray(plane, dtype=np.float64)
    if plane.ndim != 2:
        raise UsageError(f"animate draws one 2-D plane, got shape {plane.shape}")
    geometry, title = _geometry(plane.shape, step, options)
    output = step.apply(plane[None], options)[0].astype(np.float64)
    count = output.size + 1
    if count > MAX_FRAMES:
        raise UsageError(
            f"{output.shape[0]}x{output.shape[1]} output pixels make {count} frames, more than "
            f"{MAX_FRAMES}; animate a smaller input (or use --stride)"
        )
    rows, cols = geometry.rows, geometry.cols
    grid_r, grid_c = rows.grid(), cols.grid()
    fill = options.cval if options.padding is Padding.CONSTANT and not rows.transposed else 0.0
    if isinstance(step, PoolStep):
        fill = 0.0
    sr, sc = rows.sources(grid_r), cols.sources(grid_c)
    values = np.full((grid_r.size, grid_c.size), fill)
    ok = np.outer(sr >= 0, sc >= 0)
    values[ok] = plane[np.ix_(sr[sr >= 0], sc[sc >= 0])].ravel()
    kr, kc = rows.kinds(grid_r), cols.kinds(grid_c)
    kinds = tuple(tuple(_cell_kind(a, b) for b in kc) for a in kr)
    inside = _inside(
        grid_r, grid_c, rows.transposed, plane.shape, rows.forward.stride, cols.forward.stride
    )

    frames = []
    for index in range(output.size):
        i, j = divmod(index, output.shape[1])
        frames.append(_frame(geometry, grid_r[0], grid_c[0], i, j, index + 1))
    frames.append(Frame((), (), (), output.size, None))
    return Slides(values, kinds, inside, output, tuple(frames), blank, title)


def _geometry(shape, step, options: FilterOptions) -> tuple[StepGeometry, str]:
    if isinstance(step, PoolStep):
        if options.transposed:
            raise UsageError("pooling has no transpose; leave out --transposed")
        size, stride = step.size, step.stride
        title = f"{step.kind} {size[0]}x{size[1]}, stride {stride[0]}"
        return pool_geometry(shape, size, stride), title
    if not isinstance(step, ConvolveStep):
        raise UsageError(
            f"animate draws one kernel or pooling step; {step.spec!r} is not one "
            "(for a gradient, animate its kernels: -k sobel-x, -k sobel-y)"
        )
    kernel = step.kernel.normalized() if options.normalize else step.kernel
    geometry = convolution_geometry(
        shape,
        kernel.weights,
        padding=options.padding,
        stride=options.stride,
        dilation=options.dilation,
        origin=kernel.origin,
        correlate=options.correlate,
        transposed=options.transposed,
    )
    kh, kw = kernel.shape
    what = "transposed " if options.transposed else ""
    what += "correlation" if options.correlate else "convolution"
    title = f"{what} {kh}x{kw}, padding {options.padding.value}, stride {options.stride}"
    if options.dilation > 1:
        title += f", dilation {options.dilation}"
    return geometry, title


def _frame(geometry: StepGeometry, first_r: int, first_c: int, i: int, j: int, filled: int):
    rows, cols = geometry.rows, geometry.cols
    tr, tc = rows.taps(), cols.taps()
    taps, boxes, weights = [], [], []
    for r0 in rows.starts(i):
        for c0 in cols.starts(j):
            boxes.append(
                (
                    r0 - first_r,
                    c0 - first_c,
                    r0 - first_r + rows.span - 1,
                    c0 - first_c + cols.span - 1,
                )
            )
            for a, dr in enumerate(tr):
                for b, dc in enumerate(tc):
                    taps.append((r0 + dr - first_r, c0 + dc - first_c))
                    weights.append(float(geometry.weights[a, b]))
    return Frame(tuple(taps), tuple(boxes), tuple(weights), filled, (i, j))


def _cell_kind(row_kind: str, col_kind: str) -> str:
    if PADDING in (row_kind, col_kind):
        return PADDING
    return row_kind if row_kind != "input" else col_kind


def _inside(grid_r, grid_c, transposed: bool, shape, sr: int, sc: int):
    """Grid indices of the input's own cells (for a transposed step: the upsampled input)."""
    last_r = (shape[0] - 1) * sr if transposed else shape[0] - 1
    last_c = (shape[1] - 1) * sc if transposed else shape[1] - 1
    return (int(-grid_r[0]), int(-grid_c[0]), int(last_r - grid_r[0]), int(last_c - grid_c[0]))

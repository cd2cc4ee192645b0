"""What shape a chain makes: the (height, width) of each step's and the chain's result.

Known before filtering, from the engine's own window arithmetic
(:func:`convtool.engine.memory.axis_or_none`, :func:`convtool.engine.transposed_shape`), so
that an output format's size limit is checked before the work and the memory model
(:mod:`convtool.pipeline.memory`) prices the arrays each step makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from convtool.engine.memory import axis_or_none
from convtool.padding import parse_padding

__all__ = ["call_shape", "output_shape", "step_shape", "transposed_call_shape"]


def step_shape(step, options, height: int, width: int) -> tuple[int, int]:
    """The (height, width) one step of a chain makes of a height × width stack."""
    from convtool.pipeline.steps import GradientStep, PoolStep

    if isinstance(step, PoolStep):
        return (
            (height - step.size[0]) // step.stride[0] + 1,
            (width - step.size[1]) // step.stride[1] + 1,
        )
    kernel: Any
    if isinstance(step, GradientStep):
        kernel = step.kx
    elif hasattr(step, "kernel"):
        kernel = step.kernel
    elif hasattr(step, "layer"):  # a layer: its taps move over the image as a kernel's do
        kernel = _Taps(tuple(step.layer.shape), (0, 0))
    else:
        return height, width  # a step of the caller's own: assumed to keep the size
    if options.transposed:
        return transposed_call_shape(kernel, options, height, width)
    return call_shape(kernel, options, height, width)


@dataclass(frozen=True)
class _Taps:
    """A kernel's geometry alone (a layer's): what the shape of a step depends on."""

    shape: tuple[int, int]
    origin: tuple[int, int]


def output_shape(chain, height: int, width: int) -> tuple[int, int]:
    """The (height, width) of what ``chain`` makes of a height × width image.

    Known before filtering, so that an output format's size limit (GIF, JPEG) is checked
    before the work rather than by the encoder after it. A filter bank (``--stack``)
    applies each step to the image on its own: its outputs have the first one's size.
    """
    banks = [[step] for step in chain.steps] if getattr(chain, "stack", False) else [chain.steps]
    h, w = height, width
    for steps in banks[:1]:
        for _ in range(chain.iterations):
            for step in steps:
                h, w = step_shape(step, chain.options, h, w)
    return h, w


def transposed_call_shape(kernel, options, height: int, width: int) -> tuple[int, int]:
    """The (height, width) a transposed engine call with ``kernel`` makes of height × width."""
    from convtool import engine

    return engine.transposed_shape(
        (height, width),
        kernel.shape,
        padding=options.padding,
        stride=options.stride,
        dilation=options.dilation,
    )


def call_shape(kernel, options, height: int, width: int) -> tuple[int, int]:
    """The (height, width) one engine call with ``kernel`` and ``options`` makes of height × width."""
    padding = parse_padding(options.padding)
    axes = (
        axis_or_none(n, k, options.dilation, options.stride, o, padding)
        for n, k, o in zip((height, width), kernel.shape, kernel.origin, strict=True)
    )
    rows, cols = (0 if axis is None else axis.size for axis in axes)
    return rows, cols

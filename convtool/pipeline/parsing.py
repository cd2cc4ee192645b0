"""Parsing ``-k`` specs into steps: ``grad:OP``, ``maxpool:N``, ``avgpool:N``, layer files, kernels.

One grammar for the steps that are not kernels (``NAME:VALUE,key=value``); anything else is
a kernel spec (:func:`convtool.kernels.get_kernel`), except a ``.npy`` file of a 3-D or 4-D
array, which is a layer (:class:`convtool.pipeline.layers.LayerStep`).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from convtool.errors import UnknownKernelError, UsageError, excerpt
from convtool.kernels import LayerKernel, get_kernel, read_bias_file, read_layer_file
from convtool.kernels.builders import kernel_names
from convtool.kernels.params import Param, parse_params
from convtool.pipeline.layers import LayerStep
from convtool.pipeline.steps import (
    GRADIENT_NORMS,
    GRADIENT_OPERATORS,
    ConvolveStep,
    GradientStep,
    PoolStep,
    Step,
)

# The steps' parameters, declared as the kernels' are (kernels.params.Param): one grammar
# (kernels.params.parse_params) parses both, and the `kernels` listing rows come from here.
_POOL_SIDE_LIMIT = 1 << 16
GRAD_OP = Param("op", "choice", "sobel", "the derivative pair", choices=tuple(GRADIENT_OPERATORS))
GRAD_NORM = Param("norm", "choice", "l2", "how gx and gy combine", choices=tuple(GRADIENT_NORMS))
POOL_SIZE = Param("size", "size", 2, "the window, N or HxW", low=1, high=_POOL_SIDE_LIMIT)
POOL_STRIDE = Param(
    "stride", "size", None, "the step between windows", low=1, high=_POOL_SIDE_LIMIT, auto="size"
)


@dataclass(frozen=True)
class StepSpec:
    """A step that is not a kernel, as named in ``-k``: its parameters and its listing row."""

    name: str
    params: tuple[Param, ...]
    usage: str  # how the listing names it, e.g. "grad:OP"
    size: str
    description: str

    def row(self) -> tuple[str, str, str, str]:
        """The step's row of ``convtool kernels``: name, size, parameters, description."""
        described = []
        for param in self.params:
            if param.kind == "choice":
                described.append(f"{param.name}={'|'.join(map(str, param.choices))} "
                                 f"({param.default})")  # fmt: skip
            else:
                described.append(param.describe())
        return (self.usage, self.size, ", ".join(described), self.description)


STEPS = {
    spec.name: spec
    for spec in (
        StepSpec("grad", (GRAD_OP, GRAD_NORM), "grad:OP", "2 kernels",
                 "gradient magnitude from a pair of derivative kernels"),
        StepSpec("maxpool", (POOL_SIZE, POOL_STRIDE), "maxpool:N", "NxN",
                 "max over windows, no padding"),
        StepSpec("avgpool", (POOL_SIZE, POOL_STRIDE), "avgpool:N", "NxN",
                 "mean over windows, no padding"),
    )
}  # fmt: skip


def parse_step(spec: str) -> Step:
    """Turn one ``-k`` spec into a step: ``grad:OP``, ``maxpool:N``, ``avgpool:N``, a layer file
    (``.npy``, 3-D or 4-D) or a kernel."""
    name, colon, rest = spec.strip().partition(":")
    name = name.strip().lower()
    declared = STEPS.get(name)
    if declared is None:
        layer = read_layer_file(spec.strip())
        if layer is not None:
            return LayerStep(layer, spec=spec)
        try:
            return ConvolveStep(get_kernel(spec), spec=spec)
        except UnknownKernelError as err:
            raise UnknownKernelError(_unknown_name(err.name), name=err.name) from None
    args = parse_params(name, declared.params, rest if colon and rest.strip() else None)
    values = {p.name: args.get(p.name, p.check(p.default, name)) for p in declared.params}
    if name == "grad":
        kx, ky = (get_kernel(kernel) for kernel in GRADIENT_OPERATORS[values["op"]])
        return GradientStep(kx, ky, values["norm"], spec=spec)
    size = values["size"]
    return PoolStep(name, size, values["stride"] or size, spec=spec)


def _unknown_name(name: str) -> str:
    """The message for a name that is neither a kernel nor a step: the nearest, or all."""
    close = difflib.get_close_matches(name, [*kernel_names(), *STEPS], 3, 0.6)
    if close:
        return f"unknown kernel or step {excerpt(name)}; did you mean {' or '.join(close)}?"
    steps = ", ".join(entry[0] for entry in step_entries())
    return (
        f"unknown kernel or step {excerpt(name)}; kernels: {', '.join(kernel_names())}; "
        f"steps: {steps} (see `convtool kernels`)"
    )


def step_entries() -> list[tuple[str, str, str, str]]:
    """The steps that are not kernels, as rows of ``convtool kernels`` (from their Params)."""
    return [spec.row() for spec in STEPS.values()]


def parse_steps(specs: list[str]) -> list[Step]:
    """Parse a chain of ``-k`` specs; an empty chain is a usage error."""
    if not specs:
        raise UsageError("no kernel given; add at least one -k SPEC (see `convtool kernels`)")
    return [parse_step(spec) for spec in specs]


def with_layer_options(steps: list[Step], groups: list[int], biases: list[str]) -> list[Step]:
    """``steps`` with ``--groups`` and ``--bias`` given to their layer steps, in order.

    The i-th value goes to the i-th layer step; a single ``--groups`` value goes to all of
    them. Values without a layer step to take them are refused, not dropped.
    """
    layers = [i for i, step in enumerate(steps) if isinstance(step, LayerStep)]
    if (groups or biases) and not layers:
        flag = "--groups" if groups else "--bias"
        raise UsageError(
            f"{flag} applies to layer kernels (-k a .npy of 3-D or 4-D weights); none was given"
        )
    if len(groups) > 1 and len(groups) != len(layers):
        raise UsageError(
            f"--groups was given {len(groups)} times for {len(layers)} layer kernel(s); give "
            "one value for all, or one per layer kernel in order"
        )
    if len(biases) > len(layers):
        raise UsageError(
            f"--bias was given {len(biases)} times but there are {len(layers)} layer kernel(s)"
        )
    out = list(steps)
    for n, index in enumerate(layers):
        step = out[index]
        assert isinstance(step, LayerStep)  # `layers` indexes the layer steps
        layer = step.layer
        group = groups[0] if len(groups) == 1 else (groups[n] if groups else None)
        bias = read_bias_file(biases[n]) if n < len(biases) else layer.bias
        changed = LayerKernel(layer.weights, layer.name, bias, group if group else layer.groups)
        out[index] = dataclasses.replace(step, layer=changed)
    return out

"""Parsing ``-k`` specs into steps: ``grad:OP``, ``maxpool:N``, ``avgpool:N``, layer files, kernels.

One grammar for the steps that are not kernels (``NAME:VALUE,key=value``); anything else is
a kernel spec (:func:`convtool.kernels.get_kernel`), except a ``.npy`` file of a 3-D or 4-D
array, which is a layer (:class:`convtool.pipeline.layers.LayerStep`).
"""

from __future__ import annotations

import dataclasses
import difflib

from convtool import engine
from convtool.errors import KernelError, UnknownKernelError, UsageError, excerpt
from convtool.kernels import LayerKernel, get_kernel, read_bias_file, read_layer_file
from convtool.kernels.builders import kernel_names
from convtool.pipeline.layers import LayerStep
from convtool.pipeline.steps import (
    GRADIENT_NORMS,
    GRADIENT_OPERATORS,
    ConvolveStep,
    GradientStep,
    PoolStep,
    Step,
)

STEP_MAIN_PARAMETER = {"grad": "op", "maxpool": "size", "avgpool": "size"}


def parse_step(spec: str) -> Step:
    """Turn one ``-k`` spec into a step: ``grad:OP``, ``maxpool:N``, ``avgpool:N``, a layer file
    (``.npy``, 3-D or 4-D) or a kernel."""
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in STEP_MAIN_PARAMETER:
        layer = read_layer_file(spec.strip())
        if layer is not None:
            return LayerStep(layer, spec=spec)
        try:
            return ConvolveStep(get_kernel(spec), spec=spec)
        except UnknownKernelError as err:
            raise UnknownKernelError(_unknown_name(err.name), name=err.name) from None
    args = _step_args(spec, rest, STEP_MAIN_PARAMETER[name])
    if name == "grad":
        return _parse_gradient(spec, args)
    return _parse_pool(spec, name, args)


def _unknown_name(name: str) -> str:
    """The message for a name that is neither a kernel nor a step: the nearest, or all."""
    close = difflib.get_close_matches(name, [*kernel_names(), *STEP_MAIN_PARAMETER], 3, 0.6)
    if close:
        return f"unknown kernel or step {excerpt(name)}; did you mean {' or '.join(close)}?"
    steps = ", ".join(entry[0] for entry in step_entries())
    return (
        f"unknown kernel or step {excerpt(name)}; kernels: {', '.join(kernel_names())}; "
        f"steps: {steps} (see `convtool kernels`)"
    )


def _step_args(spec: str, text: str, main: str) -> dict[str, str]:
    """``a=1,b=2`` or one positional value for the main parameter, then ``key=value``s."""
    args: dict[str, str] = {}
    for index, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
        key, eq, value = part.partition("=")
        if not eq:
            if index:
                raise KernelError(f"expected key=value, got {excerpt(part)} (in {excerpt(spec)})")
            key, value = main, part
        key = key.strip().lower()
        if key in args:
            raise KernelError(f"parameter {excerpt(key)} given twice (in {excerpt(spec)})")
        args[key] = value.strip().lower()
    return args


def _parse_gradient(spec: str, args: dict[str, str]) -> GradientStep:
    unknown = set(args) - {"op", "norm"}
    if unknown:
        raise KernelError(
            f"grad takes op and norm, not {', '.join(sorted(unknown))} (in {excerpt(spec)})"
        )
    op = args.get("op", "sobel")
    if op not in GRADIENT_OPERATORS:
        raise KernelError(
            f"grad operator must be one of {', '.join(GRADIENT_OPERATORS)}, got {excerpt(op)}"
        )
    norm = args.get("norm", "l2")
    if norm not in GRADIENT_NORMS:
        raise KernelError(
            f"grad norm must be one of {', '.join(GRADIENT_NORMS)}, got {excerpt(norm)}"
        )
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
            f"{kind} takes size and stride, not {', '.join(sorted(unknown))} (in {excerpt(spec)})"
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
        layer = out[index].layer
        group = groups[0] if len(groups) == 1 else (groups[n] if groups else None)
        bias = read_bias_file(biases[n]) if n < len(biases) else layer.bias
        changed = LayerKernel(layer.weights, layer.name, bias, group if group else layer.groups)
        out[index] = dataclasses.replace(out[index], layer=changed)
    return out

"""Kernels as data: the Kernel value, builders, the shipped text kernels, specs, composition, file
formats, and multi-channel layer weights."""

from __future__ import annotations

from convtool.kernels.layers import LayerKernel, read_bias_file, read_layer_file
from convtool.kernels.specs import (
    MAX_KERNEL_SIDE,
    Kernel,
    KernelEntry,
    Param,
    binomial,
    box,
    compose,
    dog,
    gaussian,
    get_kernel,
    identity,
    kirsch,
    laplacian,
    list_kernels,
    log,
    parse_kernel_spec,
    read_kernel_file,
    sharpen,
    unsharp,
)

__all__ = [
    "MAX_KERNEL_SIDE",
    "Kernel",
    "LayerKernel",
    "read_layer_file",
    "read_bias_file",
    "KernelEntry",
    "Param",
    "get_kernel",
    "parse_kernel_spec",
    "read_kernel_file",
    "compose",
    "list_kernels",
    "identity",
    "box",
    "gaussian",
    "binomial",
    "laplacian",
    "sharpen",
    "kirsch",
    "log",
    "dog",
    "unsharp",
]

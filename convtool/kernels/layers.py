"""Multi-channel kernels: the weights of a convolutional layer, as PyTorch lays them out.

A ``.npy`` file holding a 4-D array ``(C_out, C_in/groups, kh, kw)`` is a layer: output
channel ``o`` (in group ``g = o // (C_out/groups)``) is the sum over the group's input
channels ``g*C_in/groups + c`` of each channel filtered with ``weights[o, c]``, plus
``bias[o]``; exactly ``torch.nn.functional.conv2d(x, weights, bias, groups=groups)`` under
``--correlate``. A 3-D array ``(C_in, kh, kw)`` is one output channel mixing all inputs,
``(1, C_in, kh, kw)``. ``groups = C_in`` with ``C_in/groups = 1`` is a depthwise layer; a
``(C_out, C_in, 1, 1)`` layer after it makes the depthwise-separable pair.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
from dataclasses import dataclass

import numpy as np

from convtool.errors import KernelError, UsageError
from convtool.kernels import files as kernel_files
from convtool.kernels import formats as fmt
from convtool.kernels.value import Kernel

__all__ = ["LayerKernel", "read_bias_file", "read_layer_file"]


@dataclass(frozen=True, eq=False)
class LayerKernel:
    """Immutable layer weights ``(C_out, C_in/groups, kh, kw)`` (float64), bias and groups.

    ``groups=None`` infers the groups from the input's channels (``C_in / weights.shape[1]``,
    the one value that fits); a transposed layer, whose input has C_out channels, takes
    ``groups`` as given (default 1).
    """

    weights: np.ndarray
    name: str = "layer"
    bias: np.ndarray | None = None
    groups: int | None = None

    def __post_init__(self) -> None:
        set_field = functools.partial(object.__setattr__, self)
        w = np.array(self.weights, dtype=np.float64)
        if w.ndim == 3:
            w = w[np.newaxis]
        if w.ndim != 4 or 0 in w.shape:
            raise KernelError(
                f"{self.name}: layer weights are (C_in, kh, kw) or (C_out, C_in/groups, kh, kw), "
                f"got shape {np.shape(self.weights)}"
            )
        fmt.check_side(w.shape[2], w.shape[3], f"{self.name}'s kernels")
        if not np.isfinite(w).all():
            raise KernelError(f"{self.name}: layer weights must be finite (no NaN or infinity)")
        w.setflags(write=False)
        set_field("weights", w)
        if self.bias is not None:
            bias = np.array(self.bias, dtype=np.float64).ravel()
            if not np.isfinite(bias).all():
                raise KernelError(f"{self.name}: the bias must be finite")
            bias.setflags(write=False)
            set_field("bias", bias)
        if self.groups is not None:
            if isinstance(self.groups, bool) or int(self.groups) != self.groups or self.groups < 1:
                raise UsageError(f"--groups must be a whole number ≥ 1, got {self.groups!r}")
            set_field("groups", int(self.groups))
            if w.shape[0] % self.groups:
                raise UsageError(
                    f"{self.name}: {w.shape[0]} output channels do not split into "
                    f"{self.groups} groups"
                )

    @property
    def shape(self) -> tuple[int, int]:
        """The side of each 2-D kernel (kh, kw)."""
        return self.weights.shape[2:]

    @property
    def out_channels(self) -> int:
        return self.weights.shape[0]

    def groups_for(self, channels: int, transposed: bool = False) -> int:
        """The groups of this layer on an input of ``channels`` (checked), as described above."""
        c_out, per_group = self.weights.shape[:2]
        shape = "x".join(str(s) for s in self.weights.shape)
        if transposed:
            groups = self.groups or 1
            if channels != c_out:
                raise UsageError(
                    f"{self.name} (weights {shape}) transposed takes {c_out} channels, "
                    f"the step gets {channels}"
                )
        else:
            groups = self.groups or max(1, channels // per_group)
            if channels != groups * per_group:
                wanted = f"{groups * per_group}" if self.groups else f"a multiple of {per_group}"
                raise UsageError(
                    f"{self.name} (weights {shape}) takes {wanted} input channels, the step "
                    f"gets {channels}; C_in/groups is the weights' second axis"
                )
            if c_out % groups:
                raise UsageError(
                    f"{self.name} (weights {shape}): {c_out} output channels do not split "
                    f"into {groups} groups"
                )
        expected = groups * per_group if transposed else c_out
        if self.bias is not None and self.bias.size != expected:
            raise UsageError(
                f"{self.name}: the bias has {self.bias.size} values, the layer makes "
                f"{expected} channels"
            )
        return groups

    def normalized(self) -> LayerKernel:
        """Each output channel's weights (all its input channels together) normalised as
        :meth:`Kernel.normalized` does one kernel: divided by the sum, or for a zero-sum
        filter positives to 1 and negatives to -1."""
        kw = self.weights.shape[3]
        # one definition of normalising: each output filter as one (C_in/groups*kh, kw) Kernel
        filters = [
            Kernel(f.reshape(-1, kw), f"{self.name}[{o}]").normalized().weights.reshape(f.shape)
            for o, f in enumerate(self.weights)
        ]
        return LayerKernel(np.stack(filters), f"{self.name}@scale=!", self.bias, self.groups)

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.weights.shape)
        bias = ", bias" if self.bias is not None else ""
        groups = f", groups={self.groups}" if self.groups else ""
        return f"LayerKernel({self.name!r}, {shape}{bias}{groups})"


def read_layer_file(path: str | os.PathLike) -> LayerKernel | None:
    """The layer in a ``.npy`` file of a 3-D or 4-D array; None for any other file."""
    where = os.fspath(path)
    if not where.lower().endswith(".npy") or not os.path.isfile(where):
        return None
    data = kernel_files.read_file_bytes(where)
    if len(data) > kernel_files.MAX_FILE_BYTES:
        raise KernelError(
            f"larger than {kernel_files.MAX_FILE_BYTES // 2**20} MB; not a kernel file", path=where
        )
    try:
        array = kernel_files.load_npy_array(data)
    except KernelError as exc:
        raise KernelError(str(exc), path=where) from None
    if array.ndim not in (3, 4):
        return None
    if max(array.shape[-2:]) > fmt.MAX_KERNEL_SIDE:
        fmt.check_side(*array.shape[-2:])
    try:
        return LayerKernel(array, where)
    except KernelError as exc:
        raise KernelError(str(exc), path=where) from None


_NUMBER_TOKEN = re.compile(r"[^\s,;\[\]]+")
MAX_BIAS_VALUES = 1 << 16  # one per output channel; more is no bias file


def read_bias_file(path: str | os.PathLike) -> np.ndarray:
    """A bias: one number per output channel, from a ``.npy`` file (1-D) or a text file.

    At most :data:`MAX_BIAS_VALUES` values, counted before any is converted; a message
    quotes no more of the file than a mistyped number (see :mod:`convtool.kernels.formats`).
    """
    where = os.fspath(path)
    data = kernel_files.read_file_bytes(where, "bias file")
    try:
        with fmt.reading_a_file():
            values = _bias_values(data)
    except KernelError as exc:
        raise KernelError(str(exc), path=where) from None
    return values


def _bias_values(data: bytes) -> np.ndarray:
    if len(data) > kernel_files.MAX_FILE_BYTES:
        raise KernelError(f"larger than {kernel_files.MAX_FILE_BYTES // 2**20} MB; not a bias file")
    if data.startswith(b"\x93NUMPY"):
        values = kernel_files.load_npy_array(data)
        if values.ndim > 1 and max(values.shape) != values.size:
            raise KernelError(f"a bias is 1-D, got an array of shape {values.shape}")
        values = values.ravel()
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise KernelError("not a bias file (neither .npy nor UTF-8 text)") from None
        found = [
            m.group() for m in itertools.islice(_NUMBER_TOKEN.finditer(text), MAX_BIAS_VALUES + 1)
        ]
        if len(found) > MAX_BIAS_VALUES:
            raise KernelError(f"more than {MAX_BIAS_VALUES:,} values; not a bias file")
        numbers = [fmt.parse_number(t, f"bias, value {i}") for i, t in enumerate(found, 1)]
        values = np.array(numbers, dtype=np.float64)
    if values.size == 0:
        raise KernelError("the bias file holds no numbers")
    if values.size > MAX_BIAS_VALUES:
        raise KernelError(f"more than {MAX_BIAS_VALUES:,} values; not a bias file")
    if not np.isfinite(values).all():
        raise KernelError("the bias must be finite (no NaN or infinity)")
    return values

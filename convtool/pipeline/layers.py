"""The layer step: a multi-channel kernel mixing channels as a convolutional layer does.

``-k weights.npy`` with a 3-D or 4-D array (see :class:`convtool.kernels.LayerKernel`)
becomes a :class:`LayerStep`. Each (output, input) channel pair is one engine call with the
chain's padding, stride, dilation and ``--correlate`` choice, so under ``--correlate`` the
step equals ``torch.nn.functional.conv2d(x, w, bias, stride, padding, dilation, groups)``
for the matching padding (PyTorch's ``padding=K//2`` is ``zero`` for odd sides, ``0`` is
``valid``, ``K-1`` is ``full``; its ``padding_mode`` reflect, replicate and circular are
``reflect``, ``edge`` and ``wrap``). Under ``--transposed`` it is the adjoint, as
``conv_transpose2d(y, w, bias, stride, 0, 0, groups, dilation)`` is of ``conv2d``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convtool.errors import UsageError
from convtool.kernels import Kernel, LayerKernel
from convtool.pipeline.steps import FilterOptions, carry, engine_call


@dataclass(frozen=True)
class LayerStep:
    """Mix the channels of a (C, H, W) stack with a layer's weights (and add its bias)."""

    layer: LayerKernel
    spec: str = ""

    def apply(self, stack: np.ndarray, options: FilterOptions) -> np.ndarray:
        layer = self.layer.normalized() if options.normalize else self.layer
        groups = layer.groups_for(stack.shape[0], options.transposed)
        weights = layer.weights
        c_out, per_group = weights.shape[:2]
        out_per_group = c_out // groups
        run, args = engine_call(options), options.engine_args()
        planes: dict[int, np.ndarray] = {}
        for o in range(c_out):
            g = o // out_per_group
            for c in range(per_group):
                source, target = (
                    (o, g * per_group + c) if options.transposed else (g * per_group + c, o)
                )
                result = run(stack[source], weights[o, c], **args)
                if target in planes:
                    planes[target] += result
                else:
                    planes[target] = result.copy() if np.shares_memory(result, stack) else result
        out = np.stack([planes[t] for t in sorted(planes)])
        if layer.bias is not None:
            out += layer.bias.astype(out.dtype)[:, None, None]
        return out

    def kernels(self) -> tuple[Kernel, ...]:
        return ()  # a layer's planes have no origin to check

    def carry(self, array: np.ndarray, options: FilterOptions) -> np.ndarray:
        return carry(array, self.layer.shape, (0, 0), options)

    carry_alpha = carry

    def coverage(self, weights: np.ndarray, options: FilterOptions) -> np.ndarray:
        raise UsageError(
            f"--alpha weighted cannot weight {self.layer.name}: a layer mixes channels, so no "
            "one alpha coverage fits its outputs; use --alpha carry or filter"
        )

    def output_channels(self, channels: int, options: FilterOptions) -> int:
        """Channels out of this step for ``channels`` in."""
        if options.transposed:
            return self.layer.groups_for(channels, True) * self.layer.weights.shape[1]
        self.layer.groups_for(channels)
        return self.layer.out_channels

"""Transposed convolution: the adjoint of a padded, strided, dilated correlation or convolution.

``correlate_transposed(y, w, padding=P, stride=S, dilation=D)`` is the transpose (adjoint) of
``x ↦ correlate(x, w, padding=P, stride=S, dilation=D)``, so that for every x and y of
matching shapes ``<correlate(x), y> == <x, correlate_transposed(y)>``. It is computed from the
forward step's own geometry (:func:`convtool.engine.plan.axis`) in three moves:

1. **scatter**: every input pixel ``y[j]`` adds ``w[a] * y[j]`` at position ``S*j + a*D`` of a
   line of ``(m-1)*S + K`` positions (``K = (k-1)*D + 1``, the dilated side): that is the
   engine's ``full`` convolution of ``y`` with ``S-1`` zeros inserted between its pixels. This
   line is PyTorch's ``conv_transpose2d(y, w, stride=S, dilation=D)`` (``padding=0``).
2. **place**: position ``t`` of the line is input position ``t + offset`` of the forward step
   (``Axis.offset``: 0 for valid, ``-(K-1)`` for full, ``-(K//2 + origin)`` for the others).
3. **fold**: what the forward step read from padding is given back to the pixel it was copied
   from (:func:`convtool.engine.bands.source_positions`): added to it for edge, reflect,
   symmetric and wrap, dropped for zero, valid and full (constant padding with a non-zero
   value is affine, not linear, and has no transpose).

The output side per axis (for an input of ``m``) is, by default, ``m*S`` for the same-size
paddings (a stride upsamples), ``(m-1)*S + K`` for ``valid`` (no cropping) and
``(m-1)*S - K + 2`` for ``full`` (``K-1`` cropped at each end); ``output_shape`` picks any other
side ``n`` whose forward step gives back ``m``. In PyTorch's terms the result is
``conv_transpose2d(y, w, stride=S, dilation=D, padding=p, output_padding=q)`` with
``p = -offset`` and ``q = n - ((m-1)*S - 2p + K)`` when ``0 <= q < max(S, D)`` (valid: ``p = 0``;
full: ``p = K-1``; zero padding with an odd side: ``p = K//2``, ``q = S-1``), the ``--correlate``
weights as written; the convolution (default) flips them, as the forward step does.
"""

from __future__ import annotations

import numpy as np

from convtool.engine.api import _filter
from convtool.engine.arguments import (
    as_image,
    as_kernel,
    as_pair,
)
from convtool.engine.bands import FILLED, source_positions
from convtool.engine.plan import Axis, axis, check_origin, correlation_form
from convtool.errors import UsageError
from convtool.padding import Padding, parse_padding

__all__ = ["convolve_transposed", "correlate_transposed", "transposed_shape"]


def correlate_transposed(
    image,
    kernel,
    *,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    output_shape=None,
    method: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    """The transpose (adjoint) of :func:`convtool.engine.correlate` with the same arguments.

    Maps the last two axes of ``image`` (the forward step's output, m per axis) to the forward
    step's input (n per axis: see :func:`transposed_shape`; ``output_shape=(H, W)`` chooses
    another n that the forward step maps back to m). With ``padding="valid"`` it equals
    ``torch.nn.functional.conv_transpose2d(image, kernel, stride=S, dilation=D)``. ``cval`` must
    be 0: a constant border of another value is not linear and has no transpose.

    >>> correlate_transposed(np.ones((1, 2)), [[1, 2, 1]], padding="valid", stride=2).tolist()
    [[1.0, 2.0, 2.0, 2.0, 1.0]]
    """
    return _transposed(
        image, kernel, False, padding, cval, stride, dilation, origin, output_shape, method, threads
    )


def convolve_transposed(
    image,
    kernel,
    *,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    output_shape=None,
    method: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    """The transpose (adjoint) of :func:`convtool.engine.convolve` with the same arguments.

    Equal to :func:`correlate_transposed` with the kernel flipped and the origin mirrored, as
    ``convolve`` relates to ``correlate``. Arguments as for :func:`correlate_transposed`.
    """
    return _transposed(
        image, kernel, True, padding, cval, stride, dilation, origin, output_shape, method, threads
    )


def transposed_shape(
    shape, kernel_shape, *, padding: Padding | str, stride=1, dilation=1
) -> tuple[int, int]:
    """The default output side of a transposed step on an input of ``shape`` (last two axes).

    ``m*S`` for the same-size paddings, ``(m-1)*S + K`` for valid, ``(m-1)*S - K + 2`` for full.
    """
    padding = parse_padding(padding)
    stride, dilation = as_pair(stride, "stride"), as_pair(dilation, "dilation")
    m = tuple(shape)[-2:]
    spans = [(k - 1) * d + 1 for k, d in zip(kernel_shape, dilation, strict=True)]
    rows, cols = (
        _default_side(mi, span, s, padding) for mi, span, s in zip(m, spans, stride, strict=True)
    )
    return rows, cols


def _default_side(m: int, span: int, s: int, padding: Padding) -> int:
    if padding is Padding.VALID:
        return (m - 1) * s + span
    if padding is Padding.FULL:
        n = (m - 1) * s - span + 2
        if n < 1:
            raise UsageError(
                f"the transpose of full padding crops {span - 1} from each end of {(m - 1) * s + span} "
                "and leaves nothing; use a larger input, a smaller kernel or another --padding"
            )
        return n
    return m * s


def forward_axes(
    m_shape, n_shape, weights_shape, dilation, stride, origin, padding: Padding
) -> tuple[Axis, Axis]:
    """The forward step's axes on an input of ``n_shape``, checked to give back ``m_shape``."""
    row_axis, col_axis = (
        axis(n, k, d, s, o, padding)
        for n, k, d, s, o in zip(n_shape, weights_shape, dilation, stride, origin, strict=True)
    )
    axes = row_axis, col_axis
    for ax, m, name in zip(axes, m_shape, ("rows", "columns"), strict=True):
        if ax.size != m:
            raise UsageError(
                f"output side {ax.n} ({name}) does not come back to {m} under the forward step "
                f"(it gives {ax.size}); choose a side that does"
            )
    return axes


def _transposed(
    image, kernel, flip, padding, cval, stride, dilation, origin, output_shape, method, threads
):
    """Validate as the forward step does, then scatter, place and fold (see the module)."""
    x = as_image(image)
    weights, _, kernel_origin = as_kernel(kernel)
    padding = parse_padding(padding)
    stride, dilation = as_pair(stride, "stride"), as_pair(dilation, "dilation")
    origin = as_pair(kernel_origin if origin is None else origin, "origin", minimum=None)
    try:
        cval = float(cval)
    except (TypeError, ValueError):
        raise UsageError(f"cval must be a number, got {cval!r}") from None
    if padding is Padding.CONSTANT and cval != 0:
        raise UsageError(
            f"constant padding with cval={cval:g} is affine, not linear: it has no transpose; "
            "use cval=0 (or --padding zero)"
        )
    spans = [(k - 1) * d + 1 for k, d in zip(weights.shape, dilation, strict=True)]
    check_origin(origin, spans, padding)
    weights, origin = correlation_form(weights, origin, dilation, flip)
    m_shape = x.shape[-2:]
    if output_shape is None:
        n_shape = tuple(
            _default_side(m, span, s, padding)
            for m, span, s in zip(m_shape, spans, stride, strict=True)
        )
    else:
        n_shape = as_pair(output_shape, "output_shape")
    rows, cols = forward_axes(m_shape, n_shape, weights.shape, dilation, stride, origin, padding)

    up = np.zeros(
        x.shape[:-2] + tuple((m - 1) * s + 1 for m, s in zip(m_shape, stride, strict=True)),
        dtype=x.dtype if x.dtype.kind == "f" else np.float64,
    )
    up[..., :: stride[0], :: stride[1]] = x
    # scatter = full convolution with the weights as the forward step correlates with them
    line = _filter(up, weights, True, Padding.FULL, 0.0, 1, dilation, (0, 0), method, threads, None)
    line = fold(line, rows, padding, -2)
    return np.ascontiguousarray(fold(line, cols, padding, -1))  # (one copy for two crops)


def fold(line: np.ndarray, ax: Axis, padding: Padding, where: int) -> np.ndarray:
    """Give each position of the scattered ``line`` (along axis ``where``) back to its pixel.

    Position ``t`` is input position ``t + ax.offset``; inside it is that pixel, outside it is
    added to the pixel the padding copied (or dropped where the padding was a constant).
    Slices along ``where`` keep the arrays' memory order (a moved axis would copy strided).
    """
    length = line.shape[where]

    def along(index) -> tuple:
        key = [slice(None)] * line.ndim
        key[where] = index
        return tuple(key)

    shape = list(line.shape)
    shape[where] = ax.n
    first, last = max(0, -ax.offset), min(length, ax.n - ax.offset)  # the inside, in t
    covered = first + ax.offset == 0 and last + ax.offset == ax.n  # every pixel has a t
    if covered and padding in FILLED:
        return line[along(slice(first, last))]  # a crop, nothing to fold: a view
    if covered and first == 0 and last == length:
        out = line  # nothing to crop; the border folds onto it in place
    else:
        out = np.zeros(shape, dtype=line.dtype)
        if first < last:
            out[along(slice(first + ax.offset, last + ax.offset))] = line[along(slice(first, last))]
    outside = np.r_[0:first, max(last, first) : length]
    targets = source_positions(outside + ax.offset, ax.n, padding)
    for t, target in zip(outside, targets, strict=True):
        if target >= 0:
            out[along(int(target))] += line[along(int(t))]
    return out

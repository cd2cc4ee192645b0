"""The public filtering functions: convolve, correlate (and their transposes), gradient_magnitude.

They are the engine's (:mod:`convtool.engine`) with two things a caller coming from OpenCV,
Pillow or scikit-image expects:

- a kernel may be a spec string (``"box:3"``, ``"gaussian:sigma=2"``, ``"[1 2 1]/4"``), a
  kernel file path, a :class:`~convtool.kernels.Kernel` or a 2-D array, everywhere a kernel
  is taken (:func:`as_kernel`, the one place that turns them into something the engine runs);
- ``channel_axis``, as in scikit-image: ``None`` (default) filters the last two axes, any
  leading axes being a stack (``(C, H, W)``); ``channel_axis=-1`` filters each channel of
  an ``(H, W, C)`` array such as ``np.asarray(pil_image)`` and returns ``(H', W', C)``.

Without ``channel_axis``, an array of 3 or more dimensions whose last axis has 1 to 4
entries is refused with a :class:`~convtool.errors.UsageError`: it is almost always a
picture with grey, grey+alpha, RGB or RGBA channels last (as Pillow, OpenCV and
:func:`convtool.read_image` give them), whose width and channels would silently be filtered
together. Say what the axes are: ``channel_axis=-1`` for ``(H, W, C)``, or
``channel_axis=0`` for a stack of images that really are at most 4 pixels wide (any leading
axis gives the same result as the default). An error rather than a warning: a warning goes
unseen in a notebook loop, and the result it would accompany is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from operator import index
from typing import Any

import numpy as np

from convtool import engine
from convtool.errors import UsageError
from convtool.kernels import Kernel, get_kernel
from convtool.padding import Padding
from convtool.pipeline.steps import GRADIENT_OPERATORS, combine_gradients

__all__ = [
    "as_kernel",
    "convolve",
    "convolve_transposed",
    "correlate",
    "correlate_transposed",
    "gradient_magnitude",
]

# Trailing axis sizes taken for channels (grey, grey+alpha, RGB, RGBA) without channel_axis.
CHANNEL_COUNTS = (1, 2, 3, 4)

KernelLike = Kernel | str | os.PathLike | np.ndarray | Any


def as_kernel(kernel: KernelLike) -> Any:
    """What the engine runs for any kernel a caller may pass.

    A spec string or a path becomes a :class:`Kernel` (:func:`convtool.get_kernel`); a
    Kernel, an array-like or an object with ``.weights`` goes to the engine as it is (it
    checks them, and takes factors and origin from a Kernel).
    """
    if isinstance(kernel, str | os.PathLike | bytes | bytearray):
        return get_kernel(kernel)
    return kernel


def _on_channels(
    function: Callable[..., np.ndarray],
    image,
    kernel: KernelLike,
    channel_axis: int | None,
    **options: Any,
) -> np.ndarray:
    """``function`` (an engine call) of ``image`` with the channels first, laid out back after.

    The one path of :func:`correlate`, :func:`convolve` and their transposes: the kernel in
    any form (:func:`as_kernel`), ``channel_axis`` (:func:`_channels_first`), and the
    engine's own keyword arguments passed through as given.
    """
    x, restore = _channels_first(image, channel_axis)
    if function in _INTERLEAVED and channel_axis is not None and x.ndim >= 3:
        source = np.asarray(image)
        if index(channel_axis) % source.ndim == source.ndim - 1:  # (..., H, W, C)
            # the engine filters interleaved rows as they lie: no transpose in or out
            return function(source, as_kernel(kernel), channel_axis=-1, **options)
    return restore(function(x, as_kernel(kernel), **options))


# The engine calls that filter (..., H, W, C) images in their own layout (channel_axis=-1).
_INTERLEAVED = (engine.correlate, engine.convolve)


def correlate(
    image,
    kernel: KernelLike,
    *,
    channel_axis: int | None = None,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    method: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    """Correlate ``image`` with ``kernel`` as written (OpenCV's ``filter2D``, PyTorch's ``conv2d``).

    ``out[i, j] = sum_ab w[a, b] * x[i - cy + a*dy, j - cx + b*dx]`` with the centre
    ``c = K//2 + origin`` on the dilated side ``K``.

    Parameters
    ----------
    image : array_like
        The pixels: ``(H, W)``, a stack ``(..., H, W)``, or channels along ``channel_axis``.
    kernel : str, Kernel, path or array_like
        A spec (``"box:3"``), a :class:`Kernel`, a kernel file or a 2-D array.
    channel_axis : int, optional
        ``None`` filters the last two axes; an index filters every channel along that axis
        (``-1`` for ``(H, W, C)``). Without it, a last axis of 1 to 4 entries in an array of
        3 or more dimensions is refused (see the module's text).
    padding, cval, stride, dilation, origin, method, threads
        As :func:`convtool.engine.correlate` takes them: the border mode
        (:class:`convtool.Padding`), the value outside for ``constant``, the step between
        outputs, the space between taps, the kernel's centre offset, how to compute
        (``auto``, ``direct``, ``separable``, ``fft``) and the threads to use.

    Returns
    -------
    numpy.ndarray
        Floating point results, unclipped, in the image's layout.

    Raises
    ------
    convtool.UsageError
        An unknown padding mode or method, a kernel spec that does not parse, a kernel
        larger than a ``valid`` image.

    Examples
    --------
    >>> correlate(np.ones((4, 5, 3)), "box:3", channel_axis=-1).shape
    (4, 5, 3)
    >>> correlate(np.arange(5.0)[None], "[0 1 1]", padding="zero").tolist()
    [[1.0, 3.0, 5.0, 7.0, 4.0]]
    """
    return _on_channels(
        engine.correlate, image, kernel, channel_axis,
        padding=padding, cval=cval, stride=stride, dilation=dilation, origin=origin,
        method=method, threads=threads,
    )  # fmt: skip


def convolve(
    image,
    kernel: KernelLike,
    *,
    channel_axis: int | None = None,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    method: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    """Convolve ``image`` with ``kernel`` (true convolution: flipped, as ``scipy.ndimage``).

    Equal to :func:`correlate` with the kernel rotated by 180° and the origin mirrored as
    scipy.ndimage.convolve mirrors it, so an impulse yields the kernel as written.

    Parameters
    ----------
    image, kernel, channel_axis, padding, cval, stride, dilation, origin, method, threads
        As for :func:`correlate`.

    Returns
    -------
    numpy.ndarray
        Floating point results, unclipped, in the image's layout.

    Raises
    ------
    convtool.UsageError
        As :func:`correlate` raises it.

    Examples
    --------
    >>> convolve(np.eye(1, 5, 2), "[1 2 3]", padding="zero").tolist()  # an impulse
    [[0.0, 1.0, 2.0, 3.0, 0.0]]
    """
    return _on_channels(
        engine.convolve, image, kernel, channel_axis,
        padding=padding, cval=cval, stride=stride, dilation=dilation, origin=origin,
        method=method, threads=threads,
    )  # fmt: skip


def correlate_transposed(
    image,
    kernel: KernelLike,
    *,
    channel_axis: int | None = None,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    output_shape=None,
    method: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    """The transpose (adjoint) of :func:`correlate` with the same arguments.

    :func:`convtool.engine.correlate_transposed` with kernels in any form and
    ``channel_axis`` as for :func:`correlate`; ``output_shape`` is the (H, W) of the result.
    """
    return _on_channels(
        engine.correlate_transposed, image, kernel, channel_axis,
        padding=padding, cval=cval, stride=stride, dilation=dilation, origin=origin,
        output_shape=output_shape, method=method, threads=threads,
    )  # fmt: skip


def convolve_transposed(
    image,
    kernel: KernelLike,
    *,
    channel_axis: int | None = None,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    output_shape=None,
    method: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    """The transpose (adjoint) of :func:`convolve` with the same arguments (see
    :func:`correlate_transposed`)."""
    return _on_channels(
        engine.convolve_transposed, image, kernel, channel_axis,
        padding=padding, cval=cval, stride=stride, dilation=dilation, origin=origin,
        output_shape=output_shape, method=method, threads=threads,
    )  # fmt: skip


def gradient_magnitude(
    image,
    operator: str | tuple[KernelLike, KernelLike] = "sobel",
    *,
    norm: str = "l2",
    correlate: bool = False,
    channel_axis: int | None = None,
    **engine_options,
) -> np.ndarray:
    """Gradient magnitude of ``image`` from a pair of derivative kernels.

    Parameters
    ----------
    image : array_like
        The pixels, as :func:`correlate` takes them.
    operator : str or (kernel, kernel)
        ``sobel``, ``prewitt``, ``scharr`` or ``roberts`` (its two diagonal kernels), or a
        pair ``(kx, ky)`` of kernels in any form :func:`correlate` takes.
    norm : {"l2", "l1", "max"}
        How the two derivatives combine: ``sqrt(gx² + gy²)``, ``|gx| + |gy|`` or the larger.
    correlate : bool
        Apply the kernels as written instead of flipped.
    channel_axis : int, optional
        As for :func:`correlate`.
    **engine_options
        ``padding``, ``cval``, ``stride``, ``dilation``, ``method``, ``threads``: given to
        both derivative filters.

    Returns
    -------
    numpy.ndarray
        The magnitude, non-negative, in the image's layout.

    Raises
    ------
    convtool.UsageError
        An unknown operator or norm, or options :func:`correlate` refuses.

    Examples
    --------
    >>> gradient_magnitude(np.eye(4), "prewitt", padding="edge").shape
    (4, 4)
    >>> float(gradient_magnitude(np.ones((5, 5)), "sobel").max())  # flat: no gradient
    0.0
    """
    kx, ky = _gradient_pair(operator)
    x, restore = _channels_first(image, channel_axis)
    run = engine.correlate if correlate else engine.convolve
    gx = run(x, kx, **engine_options)
    if np.shares_memory(gx, x):  # combined in place below: never into the caller's array
        gx = gx.copy()
    return restore(combine_gradients(gx, run(x, ky, **engine_options), norm))


def _gradient_pair(operator: Any) -> tuple[Any, Any]:
    if isinstance(operator, str):
        if operator not in GRADIENT_OPERATORS:
            raise UsageError(
                f"gradient operator must be one of {', '.join(GRADIENT_OPERATORS)} or a pair "
                f"(kx, ky) of kernels, got {operator!r}"
            )
        x_name, y_name = GRADIENT_OPERATORS[operator]
        return get_kernel(x_name), get_kernel(y_name)
    try:
        kx, ky = operator
    except (TypeError, ValueError):
        raise UsageError(
            f"gradient operator must be a name ({', '.join(GRADIENT_OPERATORS)}) or a pair "
            f"(kx, ky) of kernels, got {type(operator).__name__}"
        ) from None
    return as_kernel(kx), as_kernel(ky)


def _channels_first(
    image, channel_axis: int | None
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """``image`` with its channel axis first (the engine filters the last two axes), and the
    function that puts the result's channel axis back where it was."""
    x = np.asarray(image)
    if channel_axis is None:
        if x.ndim >= 3 and x.shape[-1] in CHANNEL_COUNTS:
            raise UsageError(
                f"image of shape {x.shape} looks like (H, W, C) channels: the last two axes "
                "(width and channels) would be filtered together; pass channel_axis=-1 to "
                "filter each channel, or channel_axis=0 if the last two axes are the image"
            )
        return x, lambda out: out
    try:
        if isinstance(channel_axis, bool):
            raise TypeError
        axis = index(channel_axis)
    except TypeError:
        raise UsageError(f"channel_axis must be an integer or None, got {channel_axis!r}") from None
    if x.ndim < 3:
        raise UsageError(
            f"channel_axis={axis} needs an image of at least 3 dimensions (channels and "
            f"2 image axes), got shape {x.shape}; leave channel_axis out for one channel"
        )
    if not -x.ndim <= axis < x.ndim:
        raise UsageError(f"channel_axis={axis} is out of range for an image of shape {x.shape}")
    axis %= x.ndim
    return np.moveaxis(x, axis, 0), lambda out: np.ascontiguousarray(np.moveaxis(out, 0, axis))

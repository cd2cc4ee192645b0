"""Memory limits: estimate a filter's peak memory and refuse work that would not fit.

Filtering a large image with a large kernel can need several times the image's size:
the engine's output, its bands of padded rows, an FFT's spectra, a gradient's two
derivatives, the copy that is written. Left alone, the system's OOM killer ends such a
run without a word. :func:`check_memory` estimates the peak first and raises
:class:`~convtool.errors.ResourceLimitError` with a one-line message when it is above the
memory available::

    image = images.read_image(path)
    limits.check_memory(chain, image)        # before chain.apply_to(image)

The estimate is an upper bound built from the engine's own sizing rules (output, bands of
padded rows at most one image in size all together, but at least 1.5 kernel spans tall;
FFT transforms rounded up to 2·3·5-smooth sizes, the kernel's spectrum made in float64),
checked against measured allocations in ``tests/test_limits.py``. What is available, and
the refusal itself, are :mod:`convtool.resources`' (shared with ``match`` and ``compare``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from convtool.padding import Padding, parse_padding
from convtool.resources import (
    HEADROOM,
    MEMORY_ENV,
    available_memory,
    check_fits,
    format_bytes,
    parse_bytes,
)

__all__ = [
    "HEADROOM",
    "MEMORY_ENV",
    "available_memory",
    "chain_peak_bytes",
    "check_fits",
    "check_memory",
    "engine_peak_bytes",
    "estimate_peak_bytes",
    "format_bytes",
    "output_shape",
    "parse_bytes",
]

# The engine's band sizing (convtool/engine.py, fftconv.py, bands.py), mirrored here; the
# tests compare the estimate with what the engine really allocates.
_BAND_ELEMENTS = 1 << 18
_DIRECT_COPIES = 3
_FFT_COPIES = 6
_FFT_MIN_HEIGHT = 128
_RUNNING_MAX_BAND = 256


# ---------------------------------------------------------------------------- one engine call


@dataclass(frozen=True)
class _Geometry:
    """One axis of an engine call: output length, padded buffer length, kernel span."""

    size: int  # output samples, after the stride
    buffer: int  # input samples a band buffer holds along this axis (padding included)
    span: int  # the kernel's side once dilated


def _geometry(n: int, taps: int, dilation: int, stride: int, origin: int, padding: Padding):
    span = (taps - 1) * dilation + 1
    if padding is Padding.VALID:
        offset, length = 0, n - span + 1
    elif padding is Padding.FULL:
        offset, length = -(span - 1), n + span - 1
    else:
        offset, length = -(span // 2 + origin), n
    size = max(0, -(-length // stride))
    reach = stride * (max(size, 1) - 1) + span
    buffer = max(n, offset + reach) - min(offset, 0)
    return _Geometry(size, buffer, span)


def next_fast_len(n: int) -> int:
    """The smallest 2·3·5-smooth number ≥ n (scipy.fft.next_fast_len for real transforms)."""
    if n <= 1:
        return 1
    best = 1 << (n - 1).bit_length()  # a power of two ≥ n
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35
            while candidate < n:
                candidate *= 2
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


def engine_peak_bytes(
    channels: int,
    height: int,
    width: int,
    kernel_shape: tuple[int, int],
    *,
    itemsize: int = 4,
    separable: bool = False,
    padding: Padding | str = Padding.REFLECT,
    stride: int | tuple[int, int] = 1,
    dilation: int | tuple[int, int] = 1,
    origin: tuple[int, int] = (0, 0),
    method: str = "auto",
    threads: int | None = None,
) -> int:
    """Bytes one ``engine.correlate``/``convolve`` call allocates at its peak, input excluded.

    That is its output plus the bands of padded rows the worker threads hold at once (and,
    for the FFT, the kernel's spectrum and its float64 making). ``method="auto"`` is
    resolved as the engine resolves it; ``separable`` says whether the kernel is rank 1.
    """
    padding = parse_padding(padding)
    sy, sx = _pair(stride)
    dy, dx = _pair(dilation)
    rows = _geometry(height, kernel_shape[0], dy, sy, origin[0], padding)
    cols = _geometry(width, kernel_shape[1], dx, sx, origin[1], padding)
    if rows.size == 0 or cols.size == 0:
        return 0  # the engine refuses it (valid padding with a kernel larger than the image)
    method = _resolve_method(method, kernel_shape, separable, (height, width))
    workers = max(1, threads or os.cpu_count() or 1)
    output = channels * rows.size * cols.size * itemsize
    if method == "fft":
        return output + _fft_bytes(channels, height, width, rows, cols, sy, itemsize, workers)
    wanted = _BAND_ELEMENTS // (channels * cols.buffer)
    if method == "separable" and kernel_shape[0] > 1:
        wanted = max(wanted, min(rows.span, _RUNNING_MAX_BAND))
    band = _band_rows(channels, height, width, rows, cols, sy, wanted, workers, _DIRECT_COPIES)
    band = min(band, rows.size)
    in_flight = min(workers, -(-rows.size // band))
    buffer = channels * (sy * (band - 1) + rows.span) * cols.buffer * itemsize
    setup = _toeplitz_bytes(kernel_shape, rows, cols, (sy, sx), (dy, dx), method, itemsize)
    return output + in_flight * _DIRECT_COPIES * buffer + setup


def _toeplitz_bytes(kernel_shape, rows, cols, stride, dilation, method, itemsize) -> int:
    """The Toeplitz matrices of the 1-D passes, held for the whole call (an upper bound).

    A separable kernel has a pass per axis; a direct one a pass per kernel row (or
    column), each of which may be a product if its taps need enough ufunc passes.
    """
    from convtool.engine import passes
    from convtool.engine.plan import Axis, tuning

    tuned = tuning()
    bytes_along = []
    for taps, geometry, s, d in zip(kernel_shape, (rows, cols), stride, dilation, strict=True):
        axis = Axis(0, taps, d, s, 0, geometry.size)
        if taps > 1 and passes.uses_matmul(2 * taps, axis, tuned):
            bytes_along.append(passes.toeplitz_bytes(axis, tuned, itemsize))
        else:
            bytes_along.append(0)
    if method == "separable":
        return sum(bytes_along)
    # kernel rows are passes along the columns, and kernel columns along the rows
    return max(kernel_shape[0] * bytes_along[1], kernel_shape[1] * bytes_along[0])


def _fft_bytes(channels, height, width, rows, cols, stride, itemsize, workers) -> int:
    tall = next_fast_len(max(_FFT_MIN_HEIGHT, 4 * rows.span))
    wanted = max(1, (tall - rows.span) // stride + 1)
    band = _band_rows(channels, height, width, rows, cols, stride, wanted, workers, _FFT_COPIES)
    fft_h = next_fast_len(stride * (band - 1) + rows.span)
    fft_w = next_fast_len(cols.buffer)
    half = fft_h * (fft_w // 2 + 1)  # complex values in one real transform's spectrum
    # The kernel's spectrum: dilated float64 weights, a zero-padded float64 copy and its
    # complex128 transform, then the working-precision copy that stays.
    setup = rows.span * cols.span * 8 + fft_h * fft_w * 8 + half * 16
    spectrum = half * 2 * itemsize
    kept_rows = min(band, rows.size)
    buffer = channels * (stride * (kept_rows - 1) + rows.span) * cols.buffer * itemsize
    # Per band at once: its rows, their zero-padded copy, the product spectrum, the inverse.
    per_band = buffer + channels * (2 * fft_h * fft_w * itemsize + half * 2 * itemsize)
    in_flight = min(workers, -(-rows.size // band))
    return setup + spectrum + in_flight * per_band


def _band_rows(channels, height, width, rows, cols, stride, wanted, workers, copies) -> int:
    """Output rows per band, as the engine's ``_band_within_budget`` picks them."""
    per_row = channels * cols.buffer * copies * workers
    budget = max(_BAND_ELEMENTS * copies * workers, channels * height * width)
    fitting = (budget // per_row - rows.span) // stride + 1
    floor = rows.span // 2 // stride
    return max(1, floor, min(wanted, fitting))


def _resolve_method(method: str, kernel_shape, separable: bool, image_shape) -> str:
    if method != "auto":
        return method
    from convtool import engine

    return engine.choose_method(tuple(kernel_shape), separable, image_shape)


def _pair(value) -> tuple[int, int]:
    if isinstance(value, tuple | list):
        return int(value[0]), int(value[1])
    return int(value), int(value)


# ---------------------------------------------------------------------------- a chain


def estimate_peak_bytes(
    shape: tuple[int, int],
    channels: int,
    dtype,
    kernel_shapes: Iterable,
    method: str = "auto",
    *,
    padding: Padding | str = Padding.REFLECT,
    stride: int = 1,
    dilation: int = 1,
    iterations: int = 1,
    threads: int | None = None,
    alpha: bool = False,
) -> int:
    """Peak bytes to filter an image of ``shape`` (H, W) with kernels applied in turn.

    Includes the image itself (``channels`` colour channels of ``dtype``, plus alpha), the
    working copy, each engine call (:func:`engine_peak_bytes`) and the result that is
    written. ``kernel_shapes``: (rows, columns) pairs, or kernels (anything with
    ``.weights``), whose separability is then looked at; bare shapes count as not
    separable, which for ``method="auto"`` is the costlier case.
    """
    from convtool.pipeline.chain import Chain, FilterOptions
    from convtool.pipeline.steps import ConvolveStep

    steps = [ConvolveStep(_as_kernel(k)) for k in kernel_shapes]
    options = FilterOptions(
        padding=padding, stride=stride, dilation=dilation, method=method, threads=threads
    )
    chain = Chain(steps=steps, options=options, iterations=iterations)
    return chain_peak_bytes(
        chain, shape[0], shape[1], channels, itemsize=np.dtype(dtype).itemsize, alpha=alpha
    )


def _as_kernel(item):
    from convtool.kernels import Kernel

    if hasattr(item, "weights"):
        return item
    rows, cols = item
    # A shape stands for a kernel that is not rank 1: an identity-like corner tap.
    weights = np.zeros((rows, cols))
    weights[0, 0] = 1.0
    if rows > 1 and cols > 1:
        weights[-1, -1] = weights[0, -1] = 1.0
    return Kernel(weights, f"{rows}x{cols}")


def chain_peak_bytes(
    chain, height: int, width: int, channels: int, *, itemsize: int = 4, alpha: bool = False
) -> int:
    """Peak bytes to read-and-hold, filter with ``chain`` and write one image.

    Follows :meth:`convtool.pipeline.Chain.apply` array by array: the image as read (kept
    until its result is written), the working (C, H, W) copy, for each step of each
    iteration its input, the engine call and what alpha needs alongside, then the
    result's (H, W, C) copy and what writing it takes (a range-mapped copy, the integer
    samples, Pillow's copy, the encoded bytes).
    """
    from convtool.pipeline.steps import GradientStep, PoolStep

    options = chain.options
    threads = options.threads
    held = height * width * (channels + alpha) * itemsize
    luma = chain.channels == "luma" and channels == 3
    picked = 1 if luma else _picked_count(chain.channels, channels)
    kept = channels - picked
    filtered = picked + (1 if alpha and chain.alpha_mode == "filter" else 0)
    weighted = alpha and chain.alpha_mode == "weighted"
    carried_alpha = alpha and chain.alpha_mode != "filter"

    plane = height * width * itemsize
    peak = held + plane * (channels * (2 if luma else 1) + filtered + (1 if weighted else 0))
    h, w = height, width
    for _ in range(chain.iterations):
        for step in chain.steps:
            stack_in = filtered * h * w * itemsize
            side = plane * kept  # unfiltered channels carried alongside
            nh, nw = step_shape(step, options, h, w)
            if isinstance(step, PoolStep):
                work = 2 * filtered * nh * nw * itemsize
                extra = (1 + weighted) * 2 * nh * nw * itemsize if alpha else 0
            elif not isinstance(step, GradientStep) and not hasattr(step, "kernel"):
                # a step of the caller's own: counted as one same-size result per channel
                work = 2 * filtered * h * w * itemsize
                extra = 0
            else:
                kernel = step.kx if isinstance(step, GradientStep) else step.kernel
                call = _engine_call(kernel, options, itemsize, threads)
                work = call(filtered, h, w)
                if isinstance(step, GradientStep):
                    work += filtered * nh * nw * itemsize  # gx is held while gy is made
                extra = (carried_alpha + weighted) * call(1, h, w) if alpha else 0
                extra += call(kept, h, w) if kept else 0
            track = (carried_alpha + weighted) * h * w * itemsize if alpha else 0
            peak = max(peak, held + stack_in + side + track + work + extra)
            h, w = nh, nw
    result = channels * h * w * itemsize
    alpha_out = h * w * itemsize if alpha else 0
    finish = held + result * (2 + luma) + alpha_out
    # Writing: the range-mapped copy, integer samples (up to 32-bit), Pillow's image (4 bytes
    # a pixel for RGB(A) and grey+alpha) and the encoded bytes, buffered whole for stdout.
    samples = (channels + alpha) * h * w
    write = held + result + alpha_out + samples * (itemsize + 4 + 2) + 4 * h * w
    return max(peak, finish, write)


def step_shape(step, options, height: int, width: int) -> tuple[int, int]:
    """The (height, width) one step of a chain makes of a height × width stack."""
    from convtool.pipeline.steps import GradientStep, PoolStep

    if isinstance(step, PoolStep):
        return (
            (height - step.size[0]) // step.stride[0] + 1,
            (width - step.size[1]) // step.stride[1] + 1,
        )
    if isinstance(step, GradientStep):
        return _output_shape(step.kx, options, height, width)
    if hasattr(step, "kernel"):
        return _output_shape(step.kernel, options, height, width)
    return height, width  # a step of the caller's own: assumed to keep the size


def output_shape(chain, height: int, width: int) -> tuple[int, int]:
    """The (height, width) of what ``chain`` makes of a height × width image.

    Known before filtering, so that an output format's size limit (GIF, JPEG) is checked
    before the work rather than by the encoder after it.
    """
    for _ in range(chain.iterations):
        for step in chain.steps:
            height, width = step_shape(step, chain.options, height, width)
    return height, width


def _picked_count(channels_option, channels: int) -> int:
    if channels_option in ("all", "luma"):
        return channels
    return len([c for c in channels_option if c < channels]) or channels


def _engine_call(kernel, options, itemsize: int, threads: int | None):
    from convtool import engine

    separable = kernel.factors is not None or (
        options.method in ("auto", "separable")
        and engine.separable_factors(kernel.weights) is not None
    )

    def call(channels: int, height: int, width: int) -> int:
        return engine_peak_bytes(
            channels,
            height,
            width,
            kernel.shape,
            itemsize=itemsize,
            separable=separable,
            padding=options.padding,
            stride=options.stride,
            dilation=options.dilation,
            origin=kernel.origin,
            method=options.method,
            threads=threads,
        )

    return call


def _output_shape(kernel, options, height: int, width: int) -> tuple[int, int]:
    return tuple(
        _geometry(n, k, options.dilation, options.stride, o, options.padding).size
        for n, k, o in zip((height, width), kernel.shape, kernel.origin, strict=True)
    )


# ---------------------------------------------------------------------------- the machine


def check_memory(
    chain, image, *, available: int | None = None, held: bool = True, share: int = 1
) -> int:
    """Raise ResourceLimitError if filtering ``image`` with ``chain`` would not fit in memory.

    ``image``: an :class:`~convtool.images.Image` (its pixels, alpha and ``source`` name).
    ``available``: bytes (default :func:`available_memory`; None there skips the check).
    ``held``: the image is already in memory (read), so it is not counted again.
    ``share``: how many images are filtered at once (a batch's worker processes); each
    may use that share of the memory. Returns the estimate in bytes.
    """
    height, width, channels = image.pixels.shape
    itemsize = image.pixels.dtype.itemsize
    alpha = image.alpha is not None
    need = chain_peak_bytes(chain, height, width, channels, itemsize=itemsize, alpha=alpha)
    if held:
        need -= height * width * (channels + alpha) * itemsize
    hint = "a smaller image or kernel, a smaller --dilation, fewer --iterations"
    if itemsize > 4:
        hint += ", --precision single"
    check_fits(
        need,
        f"filtering this {width}×{height} image",
        hint,
        path=getattr(image, "source", None),
        available=available,
        share=share,
    )
    return need

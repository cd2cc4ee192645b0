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
checked against measured allocations in ``tests/test_limits.py``. One engine call's
bytes are :mod:`convtool.engine.memory`'s; what is available, and the refusal itself, are
:mod:`convtool.resources`' (shared with ``match`` and ``compare``).

What shape each step makes is worked out in :mod:`convtool.pipeline.shapes`. An image
filtered band by band needs memory for its bands, not for the image:
:mod:`convtool.pipeline.stream_memory` prices those. Both are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from convtool.engine.memory import engine_peak_bytes, next_fast_len
from convtool.padding import Padding, parse_padding
from convtool.pipeline.shapes import call_shape, output_shape, step_shape, transposed_call_shape
from convtool.pipeline.stream_memory import STREAM_BAND_BYTES, stream_band_rows, stream_peak_bytes
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
    "STREAM_BAND_BYTES",
    "available_memory",
    "chain_peak_bytes",
    "check_fits",
    "check_memory",
    "engine_peak_bytes",
    "estimate_peak_bytes",
    "format_bytes",
    "frame_held_bytes",
    "next_fast_len",
    "output_shape",
    "parse_bytes",
    "step_shape",
    "stream_band_rows",
    "stream_peak_bytes",
]

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

    steps = tuple(ConvolveStep(_as_kernel(k)) for k in kernel_shapes)
    options = FilterOptions(
        padding=parse_padding(padding),
        stride=stride,
        dilation=dilation,
        method=method,
        threads=threads,
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
    samples, Pillow's copy, the encoded bytes). A transposed step counts its zero-inserted
    input; a filter bank (``stack``) runs each step on the image and holds the results.
    """
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
    stacked = 0  # --stack: the results of the steps done so far, held for the final stack
    for index, step_of_bank in enumerate(chain.steps if chain.stack else [None]):
        if chain.stack:
            if index:
                stacked += channels * h * w * itemsize
            h, w = height, width
        peak, h, w = _run_peak(
            chain,
            [step_of_bank] if chain.stack else chain.steps,
            peak,
            held + stacked,
            filtered,
            kept,
            weighted,
            carried_alpha,
            alpha,
            plane,
            itemsize,
            threads,
            h,
            w,
        )
    banks = len(chain.steps) if chain.stack else 1
    result = channels * banks * h * w * itemsize + stacked
    alpha_out = h * w * itemsize if alpha else 0
    finish = held + result * (2 + luma) + alpha_out
    # Writing: the range-mapped copy, integer samples (up to 32-bit), Pillow's image (4 bytes
    # a pixel for RGB(A) and grey+alpha) and the encoded bytes, buffered whole for stdout.
    samples = (channels * banks + alpha) * h * w
    write = held + result + alpha_out + samples * (itemsize + 4 + 2) + 4 * h * w
    return max(peak, finish, write)


def _run_peak(
    chain,
    steps,
    peak,
    held,
    filtered,
    kept,
    weighted,
    carried_alpha,
    alpha,
    plane,
    itemsize,
    threads,
    h,
    w,
):
    """The peak over ``steps`` applied ``chain.iterations`` times, and the final size."""
    from convtool.pipeline.steps import GradientStep, PoolStep

    options = chain.options
    for _ in range(chain.iterations):
        for step in steps:
            stack_in = filtered * h * w * itemsize
            side = plane * kept  # unfiltered channels carried alongside
            if isinstance(step, PoolStep):
                nh = (h - step.size[0]) // step.stride[0] + 1
                nw = (w - step.size[1]) // step.stride[1] + 1
                work = 2 * filtered * nh * nw * itemsize
                extra = (1 + weighted) * 2 * nh * nw * itemsize if alpha else 0
            elif not isinstance(step, GradientStep) and not hasattr(step, "kernel"):
                # a step of the caller's own: counted as one same-size result per channel
                nh, nw = h, w
                work = 2 * filtered * h * w * itemsize
                extra = 0
            elif options.transposed:
                kernel = step.kernel
                call = _engine_call(kernel, options, itemsize, threads)
                nh, nw = transposed_call_shape(kernel, options, h, w)
                # the zero-inserted input, the engine's full convolution of it, the fold
                uh, uw = (h - 1) * options.stride + 1, (w - 1) * options.stride + 1
                work = call(filtered, uh, uw) + filtered * (uh * uw + nh * nw) * itemsize
                extra = 0  # transposed steps carry no alpha nor unfiltered channels
            else:
                kernel = step.kx if isinstance(step, GradientStep) else step.kernel
                call = _engine_call(kernel, options, itemsize, threads)
                work = call(filtered, h, w)
                nh, nw = call_shape(kernel, options, h, w)
                if isinstance(step, GradientStep):
                    work += filtered * nh * nw * itemsize  # gx is held while gy is made
                extra = (carried_alpha + weighted) * call(1, h, w) if alpha else 0
                extra += call(kept, h, w) if kept else 0
            track = (carried_alpha + weighted) * h * w * itemsize if alpha else 0
            peak = max(peak, held + stack_in + side + track + work + extra)
            h, w = nh, nw
    return peak, h, w


def frame_held_bytes(
    chain, height: int, width: int, channels: int, *, itemsize: int = 4, alpha: bool = False
) -> int:
    """Bytes one more frame of an animation (or page) holds while the others are filtered.

    Frames are read together, filtered one by one and written together: each extra frame
    adds its pixels as read, its result, and its share of writing (the integer samples and
    the encoder's 8-bit copy), on top of the one frame being filtered.
    """
    from convtool.pipeline.steps import GradientStep, PoolStep

    h, w = height, width
    for _ in range(chain.iterations):
        for step in chain.steps:
            if isinstance(step, PoolStep):
                h = (h - step.size[0]) // step.stride[0] + 1
                w = (w - step.size[1]) // step.stride[1] + 1
            elif isinstance(step, GradientStep) or hasattr(step, "kernel"):
                kernel = step.kx if isinstance(step, GradientStep) else step.kernel
                h, w = call_shape(kernel, chain.options, h, w)
    layers = channels + alpha
    return (height * width + h * w) * layers * itemsize + h * w * layers * (4 + 2)


def _picked_count(channels_option, channels: int) -> int:
    if channels_option in ("all", "luma"):
        return channels
    return len([c for c in channels_option if c < channels]) or channels


def _engine_call(kernel, options, itemsize: int, threads: int | None):
    from convtool import engine

    factors = kernel.factors
    if factors is None and options.method in ("auto", "separable"):
        factors = engine.separable_factors(kernel.weights)
    separable = factors is not None

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
            column_factor=None if factors is None else factors[0],
        )

    return call


def check_memory(
    chain,
    image,
    *,
    available: int | None = None,
    held: bool = True,
    share: int = 1,
    itemsize: int | None = None,
) -> int:
    """Raise ResourceLimitError if filtering ``image`` with ``chain`` would not fit in memory.

    ``image``: an :class:`~convtool.images.Image` (its pixels, alpha and ``source`` name).
    ``available``: bytes (default :func:`available_memory`; None there skips the check).
    ``held``: the image is already in memory (read), so it is not counted again.
    ``share``: how many images are filtered at once (a batch's worker processes); each
    may use that share of the memory. Every frame of an animation (or page) counts
    (:func:`frame_held_bytes` for each after the first). ``itemsize``: the bytes of a
    working sample, when the pixels are not in that type yet (8-bit samples kept for the
    integer kernels may still go the float path). Returns the estimate in bytes.
    """
    height, width, channels = image.pixels.shape
    itemsize = image.pixels.dtype.itemsize if itemsize is None else itemsize
    alpha = image.alpha is not None
    need = chain_peak_bytes(chain, height, width, channels, itemsize=itemsize, alpha=alpha)
    frames = list(getattr(image, "frames", None) or ())
    for frame in frames:
        h, w = frame.pixels.shape[:2]
        need += frame_held_bytes(chain, h, w, channels, itemsize=itemsize, alpha=alpha)
    if held:  # every frame as read
        pixels = height * width + sum(f.pixels.shape[0] * f.pixels.shape[1] for f in frames)
        need -= pixels * (channels + alpha) * itemsize
    hint = "a smaller image or kernel, a smaller --dilation, fewer --iterations"
    if chain.options.transposed and chain.options.stride > 1:
        hint += ", a smaller --stride (a transposed step grows the image by it)"
    if itemsize > 4:
        hint += ", --precision single"
    size = f"{width}×{height} image" + (f" ({1 + len(frames)} frames)" if frames else "")
    if frames:
        hint += ", --frames first"
    hint += ", or a tiled TIFF, zarr or .npy copy of it, which convtool filters band by band"
    check_fits(
        need,
        f"filtering this {size}",
        hint,
        path=getattr(image, "source", None),
        available=available,
        share=share,
    )
    return need

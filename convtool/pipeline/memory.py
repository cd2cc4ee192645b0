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
checked against measured allocations in ``tests/test_limits.py``. Available memory is
``MemAvailable`` from ``/proc/meminfo`` (else ``os.sysconf``), capped by a cgroup memory
limit when one is set; the environment variable ``CONVTOOL_MAX_MEMORY`` overrides it
(``8G``, ``512M``, bytes; ``0`` turns the check off).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

import numpy as np

from convtool._system import cpu_count
from convtool.engine import bands, passes, plan
from convtool.errors import ResourceLimitError, UsageError
from convtool.padding import Padding, parse_padding

__all__ = [
    "MEMORY_ENV",
    "available_memory",
    "chain_peak_bytes",
    "check_memory",
    "engine_peak_bytes",
    "estimate_peak_bytes",
    "format_bytes",
    "frame_held_bytes",
]

MEMORY_ENV = "CONVTOOL_MAX_MEMORY"
"""Environment variable: the memory convtool may use (``8G``, ``512M``, bytes; 0 = no check)."""

# Left for Python, the libraries and the encoder's small buffers on top of the estimate.
HEADROOM = 64 << 20

_MEMINFO = "/proc/meminfo"
_CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
    (
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",  # cgroup v1
        "/sys/fs/cgroup/memory/memory.usage_in_bytes",
    ),
)


# ---------------------------------------------------------------------------- one engine call


# The model asks the engine for its geometry and band sizing (engine.plan: axis, tuning,
# band_within_budget; bands.BAND_COPIES, fft.BAND_COPIES and band_rows), so that it cannot
# drift from what the engine allocates; the tests compare the two.


def _axis(n: int, taps: int, dilation: int, stride: int, origin: int, padding: Padding):
    """The engine's :class:`~convtool.engine.plan.Axis`, or None where it refuses the call."""
    try:
        return plan.axis(n, taps, dilation, stride, origin, padding)
    except UsageError:
        return None  # valid padding with a kernel larger than the image


def _plan(rows, cols, kernel_shape, padding: Padding, itemsize: int) -> plan.Plan:
    """The engine's plan of a call, for its sizes only (weights left zero, never run)."""
    col_start = min(cols.offset, 0)
    col_end = max(cols.n, cols.offset + cols.reach)
    return plan.Plan(
        weights=np.zeros(kernel_shape),
        factors=None,
        rows=rows,
        cols=cols,
        padding=padding,
        cval=0.0,
        dtype=np.dtype(np.float32 if itemsize <= 4 else np.float64),
        col_start=col_start,
        col_count=col_end - col_start,
        tuning=plan.tuning(),
    )


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
    column_factor=None,
) -> int:
    """Bytes one ``engine.correlate``/``convolve`` call allocates at its peak, input excluded.

    That is its output plus the bands of padded rows the worker threads hold at once (and,
    for the FFT, the kernel's spectrum and its float64 making). ``method="auto"`` is
    resolved as the engine resolves it; ``separable`` says whether the kernel is rank 1, and
    ``column_factor`` (its column factor, in correlation form) whether the engine sums it by
    running; without it the estimate assumes so (the larger figure).
    """
    padding = parse_padding(padding)
    sy, sx = _pair(stride)
    dy, dx = _pair(dilation)
    rows = _axis(height, kernel_shape[0], dy, sy, origin[0], padding)
    cols = _axis(width, kernel_shape[1], dx, sx, origin[1], padding)
    if rows is None or cols is None or rows.size == 0 or cols.size == 0:
        return 0  # the engine refuses it (valid padding with a kernel larger than the image)
    method = _resolve_method(method, kernel_shape, separable, (height, width))
    workers = max(1, threads or cpu_count())
    output = channels * rows.size * cols.size * itemsize
    call = _plan(rows, cols, kernel_shape, padding, itemsize)
    if method == "fft":
        return output + _fft_bytes(channels, call, itemsize, workers)
    tuned = call.tuning
    wanted = max(1, tuned.band_elements // (channels * call.col_count))
    # The engine makes bands about as tall as the kernel for a box column factor (a running
    # sum); without the factors at hand, assume it does (the larger estimate).
    box = column_factor is None or passes.is_box(np.asarray(column_factor), tuned.box_min_taps)
    if method == "separable" and box:
        wanted = max(wanted, min(rows.span, tuned.running_max_band))
    band = plan.band_within_budget(call, channels, wanted, workers, bands.BAND_COPIES)
    band = min(band, rows.size)
    in_flight = min(workers, -(-rows.size // band))
    buffer = channels * (sy * (band - 1) + rows.span) * call.col_count * itemsize
    return output + in_flight * bands.BAND_COPIES * buffer


def _fft_bytes(channels: int, call: plan.Plan, itemsize: int, workers: int) -> int:
    from convtool.engine import fft  # scipy.fft: imported when an FFT is to run anyway

    rows, cols, stride = call.rows, call.cols, call.rows.stride
    band = plan.band_within_budget(call, channels, fft.band_rows(call), workers, fft.BAND_COPIES)
    fft_h = next_fast_len(stride * (band - 1) + rows.span)
    fft_w = next_fast_len(call.col_count)
    half = fft_h * (fft_w // 2 + 1)  # complex values in one real transform's spectrum
    # The kernel's spectrum: dilated float64 weights, a zero-padded float64 copy and its
    # complex128 transform, then the working-precision copy that stays.
    setup = rows.span * cols.span * 8 + fft_h * fft_w * 8 + half * 16
    spectrum = half * 2 * itemsize
    kept_rows = min(band, rows.size)
    buffer = channels * (stride * (kept_rows - 1) + rows.span) * call.col_count * itemsize
    # Per band at once: its rows, their zero-padded copy, the product spectrum, the inverse.
    per_band = buffer + channels * (2 * fft_h * fft_w * itemsize + half * 2 * itemsize)
    in_flight = min(workers, -(-rows.size // band))
    return setup + spectrum + in_flight * per_band


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
                nh, nw = _transposed_shape(kernel, options, h, w)
                # the zero-inserted input, the engine's full convolution of it, the fold
                uh, uw = (h - 1) * options.stride + 1, (w - 1) * options.stride + 1
                work = call(filtered, uh, uw) + filtered * (uh * uw + nh * nw) * itemsize
                extra = 0  # transposed steps carry no alpha nor unfiltered channels
            else:
                kernel = step.kx if isinstance(step, GradientStep) else step.kernel
                call = _engine_call(kernel, options, itemsize, threads)
                work = call(filtered, h, w)
                nh, nw = _output_shape(kernel, options, h, w)
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
                h, w = _output_shape(kernel, chain.options, h, w)
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


def _transposed_shape(kernel, options, height: int, width: int) -> tuple[int, int]:
    from convtool import engine

    return engine.transposed_shape(
        (height, width),
        kernel.shape,
        padding=options.padding,
        stride=options.stride,
        dilation=options.dilation,
    )


def _output_shape(kernel, options, height: int, width: int) -> tuple[int, int]:
    padding = parse_padding(options.padding)
    axes = (
        _axis(n, k, options.dilation, options.stride, o, padding)
        for n, k, o in zip((height, width), kernel.shape, kernel.origin, strict=True)
    )
    rows, cols = (0 if axis is None else axis.size for axis in axes)
    return rows, cols


# ---------------------------------------------------------------------------- the machine


def available_memory() -> int | None:
    """Bytes this process may still allocate, or None when not known (or not to be checked).

    ``CONVTOOL_MAX_MEMORY`` wins when set (``0``: None, no check). Otherwise the smaller of
    the system's available memory (``MemAvailable``, or free pages from ``os.sysconf``) and
    what a cgroup memory limit leaves.
    """
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text:
        value = parse_bytes(text, MEMORY_ENV)
        return value or None
    known = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    if not known:
        known = [v for v in (_sysconf_available(),) if v is not None]
    return min(known) if known else None


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_bytes(text: str, what: str = "size") -> int:
    """``"8G"``, ``"512M"``, ``"1.5GB"``, ``"4096"`` → bytes (K, M, G, T are powers of 1024)."""
    match = _SIZE.match(text)
    if match is None:
        raise UsageError(f"{what} must be a size like 8G, 512M or a number of bytes, got {text!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


def _meminfo_available() -> int | None:
    try:
        with open(_MEMINFO, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _sysconf_available() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_available() -> int | None:
    for limit_file, usage_file in _CGROUP_FILES:
        try:
            with open(limit_file, encoding="ascii") as f:
                limit = f.read().strip()
            with open(usage_file, encoding="ascii") as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 1 << 60:  # v1 writes a huge number for none
            return None
        return max(0, int(limit) - usage)
    return None


def format_bytes(count: float) -> str:
    """1536 → ``1.5 KB``; 3.2e9 → ``3.0 GB`` (powers of 1024, one decimal)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def check_memory(
    chain, image, *, available: int | None = None, held: bool = True, share: int = 1
) -> int:
    """Raise ResourceLimitError if filtering ``image`` with ``chain`` would not fit in memory.

    ``image``: an :class:`~convtool.images.Image` (its pixels, alpha and ``source`` name).
    ``available``: bytes (default :func:`available_memory`; None there skips the check).
    ``held``: the image is already in memory (read), so it is not counted again.
    ``share``: how many images are filtered at once (a batch's worker processes); each
    may use that share of the memory. Every frame of an animation (or page) counts
    (:func:`frame_held_bytes` for each after the first). Returns the estimate in bytes.
    """
    height, width, channels = image.pixels.shape
    itemsize = image.pixels.dtype.itemsize
    alpha = image.alpha is not None
    need = chain_peak_bytes(chain, height, width, channels, itemsize=itemsize, alpha=alpha)
    frames = list(getattr(image, "frames", None) or ())
    for frame in frames:
        h, w = frame.pixels.shape[:2]
        need += frame_held_bytes(chain, h, w, channels, itemsize=itemsize, alpha=alpha)
    if held:  # every frame as read
        pixels = height * width + sum(f.pixels.shape[0] * f.pixels.shape[1] for f in frames)
        need -= pixels * (channels + alpha) * itemsize
    if available is None:
        available = available_memory()
    if available is not None:
        available //= max(1, share)
    if available is not None and need + HEADROOM > available:
        hint = "a smaller image or kernel, a smaller --dilation, fewer --iterations"
        if itemsize > 4:
            hint += ", --precision single"
        size = f"{width}×{height} image" + (f" ({1 + len(frames)} frames)" if frames else "")
        if frames:
            hint += ", --frames first"
        raise ResourceLimitError(
            f"filtering this {size} needs about {format_bytes(need)} of "
            f"memory, more than the {format_bytes(available)} available; try {hint} "
            f"({MEMORY_ENV}=0 skips this check)",
            path=getattr(image, "source", None),
        )
    return need

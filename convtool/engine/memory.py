"""The engine's own memory model: the bytes one ``correlate``/``convolve`` call allocates.

An upper bound that asks the engine for its geometry and band sizing (``plan.axis``,
``plan.tuning``, ``plan.band_within_budget``, the methods' ``BAND_COPIES``), so that it
cannot drift from what the engine allocates, and counts the Toeplitz matrices of the 1-D
passes; ``tests/test_limits.py`` compares it with measured allocations.
:mod:`convtool.pipeline.memory` adds what a chain holds around the calls; ``match`` uses
it for its correlation.
"""

from __future__ import annotations

import numpy as np

from convtool._system import cpu_count
from convtool.engine import bands, methods, native, passes, plan
from convtool.errors import UsageError
from convtool.padding import Padding, parse_padding

__all__ = ["axis_or_none", "engine_peak_bytes", "next_fast_len"]


# The model asks the engine for its geometry and band sizing (engine.plan: axis, tuning,
# band_within_budget; bands.BAND_COPIES, fft.BAND_COPIES and band_rows), so that it cannot
# drift from what the engine allocates; the tests compare the two.


def axis_or_none(n: int, taps: int, dilation: int, stride: int, origin: int, padding: Padding):
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
    source_itemsize: int | None = None,
) -> int:
    """Bytes one ``engine.correlate``/``convolve`` call allocates at its peak, input excluded.

    That is its output plus the bands of padded rows the worker threads hold at once (and,
    for the FFT, the kernel's spectrum and its float64 making). ``method="auto"`` is
    resolved as the engine resolves it; ``separable`` says whether the kernel is rank 1, and
    ``column_factor`` (its column factor, in correlation form) whether the engine sums it by
    running; without it the estimate assumes so (the larger figure). ``source_itemsize``:
    the image's own sample size, when it differs from the working one (a float32 image
    filtered in float64: the compiled methods then gather bands of it; an 8-bit image they
    read themselves, converting each row as they copy it).
    """
    padding = parse_padding(padding)
    sy, sx = _pair(stride)
    dy, dx = _pair(dilation)
    rows = axis_or_none(height, kernel_shape[0], dy, sy, origin[0], padding)
    cols = axis_or_none(width, kernel_shape[1], dx, sx, origin[1], padding)
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
    if method in ("direct", "separable") and native.module() is not None:
        gathers = source_itemsize not in (None, 1, itemsize)
        return output + _compiled_bytes(channels, call, wanted, workers, itemsize, gathers)
    # The engine makes bands about as tall as the kernel for a box column factor (a running
    # sum); without the factors at hand, assume it does (the larger estimate).
    box = column_factor is None or passes.is_box(np.asarray(column_factor), tuned.box_min_taps)
    if method == "separable" and box:
        wanted = max(wanted, min(rows.span, tuned.running_max_band))
    band = plan.band_within_budget(call, channels, wanted, workers, bands.BAND_COPIES)
    band = min(band, rows.size)
    in_flight = min(workers, -(-rows.size // band))
    buffer = channels * (sy * (band - 1) + rows.span) * call.col_count * itemsize
    setup = _toeplitz_bytes(kernel_shape, rows, cols, method, tuned, itemsize)
    return output + in_flight * bands.BAND_COPIES * buffer + setup


def _compiled_bytes(
    channels: int, call: plan.Plan, wanted: int, workers: int, itemsize: int, gathers: bool
) -> int:
    """The compiled methods' bytes beside the output, per band in flight: the C call's ring of
    padded rows (three banks of the kernel's row span) and row buffers, the padding maps,
    and, if ``gathers``, one gathered band (the image is of another dtype than the plan's).
    An upper bound: the methods split bands evenly over the workers, which only shortens
    them."""
    rows, stride = call.rows, call.rows.stride
    if not gathers:  # the image read in place: taller bands (methods.IN_PLACE_BANDS)
        wanted *= methods.IN_PLACE_BANDS
    band = min(plan.band_within_budget(call, channels, wanted, workers, 1), rows.size)
    read = stride * (band - 1) + rows.span
    buffer = channels * read * call.col_count * itemsize if gathers else 0
    ring = (4 * rows.span + 4) * call.col_count * itemsize
    maps = 8 * (read + call.col_count)
    in_flight = min(workers, -(-rows.size // band))
    return in_flight * (buffer + ring + maps)


def _toeplitz_bytes(kernel_shape, rows, cols, method: str, tuned, itemsize: int) -> int:
    """The Toeplitz matrices of the 1-D passes, held for the whole call (an upper bound).

    A separable kernel has a pass per axis; a direct one a pass per kernel row (or
    column), each of which may be a product if its taps need enough ufunc passes (at
    most two a tap). Their size is bounded by the axis (``passes.matmul_block``), never
    by the stride alone.
    """
    along = [
        passes.toeplitz_bytes(axis, tuned, itemsize)
        if taps > 1 and passes.uses_matmul(2 * taps, axis, tuned)
        else 0
        for taps, axis in zip(kernel_shape, (rows, cols), strict=True)
    ]
    if method == "separable":
        return sum(along)
    # kernel rows are passes along the columns, and kernel columns along the rows
    return max(kernel_shape[0] * along[1], kernel_shape[1] * along[0])


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
    compiled = native.module() is not None
    return plan.choose_method(tuple(kernel_shape), separable, image_shape, compiled)


def _pair(value) -> tuple[int, int]:
    if isinstance(value, tuple | list):
        return int(value[0]), int(value[1])
    return int(value), int(value)

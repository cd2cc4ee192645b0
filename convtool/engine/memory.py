"""The engine's own memory model: the bytes one ``correlate``/``convolve`` call allocates.

The estimate is an upper bound built from the engine's sizing rules (its output, bands of
padded rows at most one image in size all together but at least 1.5 kernel spans tall, the
Toeplitz matrices of its 1-D passes, FFT transforms rounded up to 2·3·5-smooth sizes and
the kernel's spectrum made in float64), checked against measured allocations in
``tests/test_limits.py``. :mod:`convtool.pipeline.memory` adds what a chain holds around
the calls; ``match`` uses it for its correlation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from convtool.engine import passes
from convtool.engine.plan import Axis, choose_method, tuning
from convtool.padding import Padding, parse_padding

__all__ = ["engine_peak_bytes", "geometry", "next_fast_len"]

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


def geometry(n: int, taps: int, dilation: int, stride: int, origin: int, padding: Padding):
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
    rows = geometry(height, kernel_shape[0], dy, sy, origin[0], padding)
    cols = geometry(width, kernel_shape[1], dx, sx, origin[1], padding)
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
    tuned = tuning()
    bytes_along = []
    for taps, geometry, s, d in zip(kernel_shape, (rows, cols), stride, dilation, strict=True):
        axis = Axis(n=0, taps=taps, dilation=d, stride=s, offset=0, size=geometry.size, centre=0)
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
    return choose_method(tuple(kernel_shape), separable, image_shape)


def _pair(value) -> tuple[int, int]:
    if isinstance(value, tuple | list):
        return int(value[0]), int(value[1])
    return int(value), int(value)

"""Exact, fast 2-D correlation and convolution over the last two axes of an array.

Conventions (scipy.ndimage's): output pixel ``i`` of a correlation reads input pixels
``i - c + a*d`` for taps ``a = 0..k-1``, where ``c = K//2 + origin`` is the kernel centre
and ``K = (k-1)*d + 1`` the kernel's side once dilated by ``d``. Convolution is correlation
with the flipped kernel and the mirrored origin (``-origin``, and ``-1`` more on axes of even
``K``), exactly as ``scipy.ndimage.convolve``. ``valid`` reads no padding and shrinks the output
by ``K-1``; ``full`` pads ``K-1`` zeros on each side and grows it by ``K-1``. A stride ``s``
keeps output pixels ``0, s, 2s, ...``.

The work is split into bands of output rows. Each band gathers only its own padded rows
(padding is an index map, the image is never padded as a whole), computes them with one of
the METHODS, and writes into the output; bands run on a thread pool (numpy and scipy.fft
release the GIL). Peak memory is the input, the output and the bands in flight, which are
sized to stay within one more image (see _band_within_budget).
"""

from __future__ import annotations

import operator
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .errors import UsageError
from .padding import Padding, parse_padding

METHODS = ("auto", "direct", "separable", "fft")

# Elements (channels x rows x columns) per band: the fastest of 2^16..2^21 for 3x3 kernels
# on 2048^2 and 4096^2 float32 with two threads (smaller bands lose to per-call overhead).
_BAND_ELEMENTS = 1 << 18
# A matrix product (BLAS) of a 1-D line of taps with a Toeplitz block of _MATMUL_BLOCK
# outputs costs about as much as _PASS_COST ufunc passes over the band (one per nonzero tap,
# one more per multiply by a weight other than +-1); measured on 2048x2048 float32.
_PASS_COST = 5
_MATMUL_BLOCK = 16
# Elements per strip of a ufunc pass (float32: 256 KiB, a quarter of a core's L2).
_STRIP_ELEMENTS = 1 << 16
# Box factors down the rows use running sums from this many taps on, when a band's rows
# hold at least this many values (else the per-row steps cost more than doubling).
_RUNNING_MIN_TAPS = 16
_RUNNING_MIN_WIDTH = 512
_RUNNING_MAX_BAND = 256
# Largest matrix product (multiply-adds) that OpenBLAS runs on the calling thread.
_GEMM_MAX = 1 << 18
# A 1-D factor whose taps agree to this relative tolerance is a box: summed, not multiplied.
_CONSTANT_RTOL = 1e-13
# Separable factors are accepted when the rank-1 residual is below this, relative to max|w|.
_RANK1_RTOL = 1e-12


@dataclass(frozen=True)
class _Axis:
    """Geometry along one axis: output pixel ``j`` reads input ``stride*j + offset + a*dilation``."""

    n: int
    taps: int
    dilation: int
    stride: int
    offset: int
    size: int  # output length, after the stride

    @property
    def span(self) -> int:
        return (self.taps - 1) * self.dilation + 1

    @property
    def reach(self) -> int:
        """Input positions spanned by the kept outputs plus the kernel."""
        return self.stride * (self.size - 1) + self.span


@dataclass(frozen=True)
class _Plan:
    """Everything a band needs, in canonical form (correlation, float weights)."""

    weights: np.ndarray  # (kh, kw), already flipped for convolution
    factors: tuple[np.ndarray, np.ndarray] | None  # (column, row)
    rows: _Axis
    cols: _Axis
    padding: Padding
    cval: float
    dtype: np.dtype
    col_start: int  # first input column held in a band buffer (<= 0)
    col_count: int  # columns in a band buffer (covers the whole image width)


# ----------------------------------------------------------------------------- public API


def correlate(
    image,
    kernel,
    *,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    method: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    """Correlate the last two axes of ``image`` with ``kernel`` (the kernel as written).

    ``out[i, j] = sum_ab w[a, b] * x[i - cy + a*dy, j - cx + b*dx]`` with ``c = K//2 + origin``
    (scipy.ndimage.correlate for the same-size paddings). Float32 and float64 images keep
    their dtype; other images are computed in float64. ``kernel`` is a 2-D array-like (1-D is
    one row) or an object with ``.weights`` and optional ``.factors`` (column, row) and
    ``.origin``; ``origin=None`` takes the kernel's own origin, if any.
    """
    return _filter(image, kernel, False, padding, cval, stride, dilation, origin, method, threads)


def convolve(
    image,
    kernel,
    *,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    method: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    """Convolve the last two axes of ``image`` with ``kernel`` (true convolution, kernel flipped).

    Equal to :func:`correlate` with ``kernel[::-1, ::-1]`` and the origin mirrored as
    scipy.ndimage.convolve mirrors it (``-origin``, minus 1 on axes of even size), so an
    impulse yields the kernel as written. Arguments as for :func:`correlate`.
    """
    return _filter(image, kernel, True, padding, cval, stride, dilation, origin, method, threads)


def separable_factors(weights) -> tuple[np.ndarray, np.ndarray] | None:
    """Return ``(column, row)`` with ``weights == np.outer(column, row)``, or None if not rank 1.

    The candidate factors are the column and the row through the largest weight (the
    cross, or skeleton, factorisation: exact for any rank-1 matrix); they are accepted when
    their product matches every weight within 1e-12 of ``max|weights|``. That residual is
    within a factor ``k`` of the SVD's best rank-1 residual, without LAPACK (whose first
    call costs ~0.3 s). A 1-row or 1-column kernel is always rank 1.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.size == 0:
        return None
    if w.shape[0] == 1:
        return np.ones(1), w[0].copy()
    if w.shape[1] == 1:
        return w[:, 0].copy(), np.ones(1)
    i, j = np.unravel_index(np.argmax(np.abs(w)), w.shape)
    pivot = w[i, j]
    if pivot == 0:
        return np.zeros(w.shape[0]), np.zeros(w.shape[1])
    column, row = w[:, j].copy(), w[i] / pivot
    if np.abs(np.outer(column, row) - w).max() > _RANK1_RTOL * abs(pivot):
        return None
    return column, row


def choose_method(kernel_shape, is_separable: bool, image_shape) -> str:
    """Pick the fastest exact method for a kernel of ``kernel_shape`` (taps) on an image.

    Rank-1 kernels: separable passes (faster than FFT up to ~200x200 taps, and a box costs
    nearly the same at any size). Others: direct while its cost index (kernel lines times
    their length plus the Toeplitz block overhead, the cheaper orientation) is at most
    ``_DIRECT_MAX_COST``, FFT beyond, and direct on tiny images where FFT setup dominates.
    """
    kh, kw = kernel_shape
    if is_separable and kh * kw > 1:
        return "separable"
    height, width = image_shape[-2:]
    cost = min(kh * (kw + 2 * _MATMUL_BLOCK), kw * (kh + 2 * _MATMUL_BLOCK))
    if cost > _DIRECT_MAX_COST and height * width >= _FFT_MIN_PIXELS:
        return "fft"
    return "direct"


# Crossover direct -> fft, measured as CPU time of one thread on 2048x2048 float32 with
# random kernels (Mpix/s, direct vs fft; cost index in brackets): 7x7 147/125 (273),
# 9x9 136/110 (369), 10x10 123/119 (420), 3x101 120/123 (399), 7x31 105/113 (441),
# 31x7 104/89 (441), 11x11 91/97 (473), 13x13 82/111 (585), 21x21 47/86 (1113).
# Separable vs fft (gaussians): 31 285/86, 101 141/64, 151 84/64, 201 66/50.
_DIRECT_MAX_COST = 450
_FFT_MIN_PIXELS = 128 * 128
_FFT_MIN_HEIGHT = 128


# ----------------------------------------------------------------------------- validation


def _filter(image, kernel, flip, padding, cval, stride, dilation, origin, method, threads):
    """Validate the arguments, build the plan and run it over bands of output rows."""
    x = _as_image(image)
    weights, factors, kernel_origin = _as_kernel(kernel)
    padding = parse_padding(padding)
    stride = _pair(stride, "stride")
    dilation = _pair(dilation, "dilation")
    origin = _pair(kernel_origin if origin is None else origin, "origin", minimum=None)
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if threads is not None:
        threads = _integer(threads, "threads")
    try:
        cval = float(cval)
    except (TypeError, ValueError):
        raise UsageError(f"cval must be a number, got {cval!r}") from None
    if padding is Padding.ZERO:
        cval = 0.0

    spans = [(k - 1) * d + 1 for k, d in zip(weights.shape, dilation, strict=True)]
    _check_origin(origin, spans, padding)
    if flip:
        weights = weights[::-1, ::-1]
        factors = None if factors is None else (factors[0][::-1], factors[1][::-1])
        origin = tuple(-o - (1 - span % 2) for o, span in zip(origin, spans, strict=True))

    if method in ("auto", "separable") and factors is None:
        factors = separable_factors(weights)
    if method == "auto":
        method = choose_method(weights.shape, factors is not None, x.shape[-2:])
    if method == "separable" and factors is None:
        raise UsageError("method 'separable' needs a rank-1 kernel; use direct, fft or auto")

    rows, cols = (
        _axis(n, k, d, s, o, padding)
        for n, k, d, s, o in zip(x.shape[-2:], weights.shape, dilation, stride, origin, strict=True)
    )
    dtype = np.dtype(np.float32 if x.dtype.itemsize <= 4 and x.dtype.kind == "f" else np.float64)
    col_start = min(cols.offset, 0)
    col_end = max(cols.n, cols.offset + cols.reach)
    plan = _Plan(weights, factors, rows, cols, padding, cval, dtype, col_start, col_end - col_start)
    if x.size == 0:  # an empty stack of images (a leading axis of length 0)
        out = np.empty((0, rows.size, cols.size), dtype=dtype)
    else:
        out = _run(plan, x.reshape((-1,) + x.shape[-2:]), method, threads)
    out = out.reshape(x.shape[:-2] + out.shape[-2:])
    return out.astype(x.dtype, copy=False) if x.dtype.kind == "f" else out


def _check_origin(origin: tuple[int, int], spans, padding: Padding) -> None:
    """The centre ``span // 2 + origin`` must fall on the (dilated) kernel, as scipy requires."""
    if not padding.keeps_size and origin != (0, 0):
        raise UsageError(
            f"origin {origin} has no meaning with {padding.value} padding; leave it at (0, 0)"
        )
    for o, span, axis in zip(origin, spans, ("rows", "columns"), strict=True):
        if not -(span // 2) <= o <= (span - 1) // 2:
            raise UsageError(
                f"origin {o} on {axis} puts the centre outside a kernel of side {span}; "
                f"allowed {-(span // 2)}..{(span - 1) // 2}"
            )


def _as_image(image) -> np.ndarray:
    x = np.asarray(image)
    if x.ndim < 2:
        raise UsageError(f"image must have at least 2 dimensions (..., H, W), got shape {x.shape}")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise UsageError(f"image is empty: shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise UsageError(f"image must hold real numbers, got dtype {x.dtype}")
    return x


def _as_kernel(kernel):
    """Return (weights float64 (kh, kw), factors or None, origin) from any accepted kernel."""
    weights = getattr(kernel, "weights", kernel)
    try:
        w = np.array(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError(
            f"kernel must be a 2-D array of numbers, got {type(weights).__name__}"
        ) from None
    if w.ndim < 2:  # a scalar is 1x1, a 1-D array one row
        w = w.reshape(1, -1)
    if w.ndim != 2:
        raise UsageError(f"kernel must be 2-D (1-D means one row), got shape {w.shape}")
    if w.size == 0:
        raise UsageError(f"kernel is empty: shape {w.shape}")
    if not np.isfinite(w).all():
        raise UsageError("kernel weights must be finite, got NaN or infinity")
    factors = getattr(kernel, "factors", None)
    if factors is not None:
        column, row = (np.asarray(f, dtype=np.float64).ravel() for f in factors)
        outer = np.outer(column, row)
        if outer.shape != w.shape or np.abs(outer - w).max() > _RANK1_RTOL * np.abs(w).max():
            raise UsageError("kernel factors (column, row) do not multiply to its weights")
        factors = (column, row)
    return w, factors, getattr(kernel, "origin", (0, 0))


def _pair(value, name: str, minimum: int | None = 1) -> tuple[int, int]:
    """An int or a pair of ints as (rows, columns), each at least ``minimum``."""
    items = value if isinstance(value, (tuple, list, np.ndarray)) else (value, value)
    if len(items) != 2:
        raise UsageError(f"{name} must be an integer or a pair of integers, got {value!r}")
    pair = tuple(_integer(v, name, minimum, shown=value) for v in items)
    return pair


def _integer(value, name: str, minimum: int | None = 1, *, shown=None) -> int:
    """``value`` as an int of at least ``minimum`` (bools and fractions refused)."""
    shown = value if shown is None else shown
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise UsageError(
            f"{name} must be an integer or a pair of integers, got {shown!r}"
        ) from None
    if minimum is not None and number < minimum:
        raise UsageError(f"{name} must be at least {minimum}, got {shown!r}")
    return number


def _axis(n: int, k: int, d: int, s: int, origin: int, padding: Padding) -> _Axis:
    span = (k - 1) * d + 1
    if padding is Padding.VALID:
        offset, length = 0, n - span + 1
        if length < 1:
            raise UsageError(
                f"kernel side {span} exceeds the image side {n}: valid padding leaves no output"
            )
    elif padding is Padding.FULL:
        offset, length = -(span - 1), n + span - 1
    else:
        offset, length = -(span // 2 + origin), n
    return _Axis(n, k, d, s, offset, -(-length // s))


# ----------------------------------------------------------------------------- bands


def _run(plan: _Plan, x: np.ndarray, method: str, threads: int | None) -> np.ndarray:
    """Compute all bands of output rows, on a thread pool when there are several."""
    channels = x.shape[0]
    out = np.empty((channels, plan.rows.size, plan.cols.size), dtype=plan.dtype)
    workers = threads or os.cpu_count() or 1
    if method == "fft":
        band, compute = _fft_setup(plan, channels, workers)
    else:
        band = _BAND_ELEMENTS // (channels * plan.col_count)
        if method == "separable" and plan.rows.taps > 1 and _is_box(plan.factors[0]):
            # A running sum down the rows starts each band with a whole window: make
            # bands about as tall as the kernel so that start costs ~1 step per row.
            band = max(band, min(plan.rows.span, _RUNNING_MAX_BAND))
        band = _band_within_budget(plan, channels, band, workers, copies=3)
        compute = _direct_setup(plan) if method == "direct" else _separable_setup(plan)
    starts = range(0, plan.rows.size, band)

    def work(j0: int) -> None:
        j1 = min(j0 + band, plan.rows.size)
        buf = _gather_band(plan, x, j0, j1)
        compute(plan, buf, out[:, j0:j1])

    workers = min(workers, len(starts))
    if workers <= 1:
        for j0 in starts:
            work(j0)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(work, j0) for j0 in starts]:
                future.result()
    return out


def _band_within_budget(plan: _Plan, channels: int, wanted: int, workers: int, copies: int) -> int:
    """Output rows per band: ``wanted``, fewer if all workers' bands would outgrow the image.

    A band holds ``copies`` arrays of its padded input rows; all workers' bands together
    stay within one image-size array, so peak memory is input + output + bands <= 3x the
    image. Bands keep at least half the kernel's height, though: below that, re-reading
    the kernel's rows for each band would cost more than the work itself. So a kernel
    taller than about a tenth of the image may take more.
    """
    rows = plan.rows
    per_row = channels * plan.col_count * copies * workers
    budget = max(_BAND_ELEMENTS * copies * workers, channels * rows.n * plan.cols.n)
    fitting = (budget // per_row - rows.span) // rows.stride + 1
    floor = rows.span // 2 // rows.stride
    return max(1, floor, min(wanted, fitting))


def _extend(index: np.ndarray, n: int, padding: Padding) -> np.ndarray:
    """Map input positions outside ``0..n-1`` to the inside, as scipy.ndimage does (any reach)."""
    if padding is Padding.EDGE:
        return np.clip(index, 0, n - 1)
    if padding is Padding.WRAP:
        return np.mod(index, n)
    if padding is Padding.REFLECT:  # d c b | a b c d | c b a: period 2n-2
        if n == 1:
            return np.zeros_like(index)
        m = np.mod(index, 2 * n - 2)
        return np.where(m >= n, 2 * n - 2 - m, m)
    m = np.mod(index, 2 * n)  # SYMMETRIC, c b a | a b c d | d c b: period 2n
    return np.where(m >= n, 2 * n - 1 - m, m)


def _gather_band(plan: _Plan, x: np.ndarray, j0: int, j1: int) -> np.ndarray:
    """The padded input rows read by output rows ``j0..j1-1``, columns from ``plan.col_start``."""
    rows = plan.rows
    r0 = rows.stride * j0 + rows.offset
    count = rows.stride * (j1 - j0 - 1) + rows.span
    h, w = x.shape[-2:]
    buf = np.empty((x.shape[0], count, plan.col_count), dtype=plan.dtype)
    left = -plan.col_start  # buffer column of input column 0
    right = left + w
    fill = plan.padding in (Padding.ZERO, Padding.CONSTANT, Padding.VALID, Padding.FULL)
    cval = plan.cval if plan.padding is Padding.CONSTANT else 0.0

    inside0, inside1 = max(r0, 0), min(r0 + count, h)
    if inside0 < inside1:
        buf[:, inside0 - r0 : inside1 - r0, left:right] = x[:, inside0:inside1]
    outside = np.r_[0 : max(0, min(count, -r0)), max(0, h - r0) : count]
    if outside.size:
        if fill:
            buf[:, outside, :] = cval
        else:
            buf[:, outside, left:right] = x[:, _extend(outside + r0, h, plan.padding)]
    for pad in (np.arange(0, left), np.arange(right, plan.col_count)):
        if pad.size == 0:
            continue
        if fill:
            buf[:, :, pad[0] : pad[-1] + 1] = cval
        else:
            source = left + _extend(pad - left, w, plan.padding)
            buf[:, :, pad[0] : pad[-1] + 1] = buf[:, :, source]
    return buf


def _tap_slice(axis: _Axis, first: int, tap: int, count: int) -> slice:
    """Positions in a band read by tap ``tap`` of ``count`` kept outputs starting at ``first``."""
    start = first + tap * axis.dilation
    return slice(start, start + axis.stride * (count - 1) + 1, axis.stride)


def _along(array: np.ndarray, dim: int, part: slice) -> np.ndarray:
    """``array`` sliced by ``part`` along ``dim``."""
    index = [slice(None)] * array.ndim
    index[dim] = part
    return array[tuple(index)]


def _accumulate(out: np.ndarray, terms) -> None:
    """``out = sum(w * view for w, view in terms)`` with in-place ufuncs, skipping zero taps."""
    tmp = None
    first = True
    for w, view in terms:
        if w == 0:
            continue
        if first:
            if w == 1:
                np.copyto(out, view)
            else:
                np.multiply(view, w, out=out)
            first = False
        elif w == 1:
            np.add(out, view, out=out)
        elif w == -1:
            np.subtract(out, view, out=out)
        else:
            if tmp is None:
                tmp = np.empty_like(out)
            np.multiply(view, w, out=tmp)
            np.add(out, tmp, out=out)
    if first:
        out.fill(0)


def _is_box(taps: np.ndarray) -> bool:
    """Whether a 1-D factor of more than two taps has (nearly) equal weights."""
    return taps.size > 2 and np.ptp(taps) <= _CONSTANT_RTOL * np.abs(taps).max()


def _ufunc_passes(taps: np.ndarray) -> int:
    """Ufunc passes over the band to apply ``taps`` one by one (adds, and multiplies by w)."""
    nonzero = taps[taps != 0]
    return nonzero.size + np.count_nonzero(np.abs(nonzero) != 1)


def _tiles(
    array: np.ndarray, dim: int, blocks: int, step: int, length: int, chunks: int, width: int
) -> np.ndarray:
    """View (channels, chunks, blocks, rows, columns) of 2-D tiles of a (C, rows, cols) array.

    Tile ``(j, i)`` starts ``i*step`` along ``dim`` and ``j*width`` across it; it is
    ``length`` long along ``dim`` and ``width`` wide across it. Tiles may overlap. Blocks
    vary fastest, so one chunk's blocks reuse each other's rows while they are in cache.
    """
    strides = array.strides
    core = (width, length) if dim == 2 else (length, width)
    return as_strided(
        array,
        (array.shape[0], chunks, blocks) + core,
        (strides[0], width * strides[3 - dim], step * strides[dim]) + strides[1:],
        writeable=True,
    )


class _Pass:
    """A 1-D correlation along one axis (``dim`` 1: rows, 2: columns) of a band, set up once.

    Three ways, by cost on the test machine: a few taps are in-place ufunc passes over
    shifted views; a constant factor (a box) is a running sum down the rows (O(1) per pixel)
    or summed by doubling (O(log taps) passes); other factors are a matrix product with a
    small banded Toeplitz block, which BLAS runs faster than ``_PASS_COST`` ufunc passes
    even counting the block's zeros.
    """

    def __init__(self, taps: np.ndarray, axis: _Axis, dim: int, dtype: np.dtype) -> None:
        self.axis, self.dim = axis, dim
        self.taps = taps.astype(dtype)
        if _is_box(taps):
            self.kind, self.value = "sum", float(taps.mean())
        elif _ufunc_passes(taps) >= _PASS_COST:
            self.kind = "matmul"
            block = _MATMUL_BLOCK
            span = axis.stride * (block - 1) + axis.span
            toeplitz = np.zeros((span, block), dtype=dtype)
            for t, w in enumerate(self.taps):  # a loop over taps, not pixels
                outputs = np.arange(block)
                toeplitz[outputs * axis.stride + t * axis.dilation, outputs] = w
            # Rows pass: block of outputs = toeplitz.T @ rows; columns: columns @ toeplitz.
            self.toeplitz = toeplitz.T.copy() if dim == 1 else toeplitz
        else:
            self.kind = "taps"

    def __call__(self, out: np.ndarray, src: np.ndarray, first: int) -> None:
        """``out`` (count outputs along ``dim``) from ``src``, output 0 reading ``first`` on.

        ``src`` and ``out`` match across ``dim``. Ufunc passes run on strips across ``dim``
        small enough to stay in cache through all their passes.
        """
        if self.kind == "matmul":
            self._matmul(out, src, first)
            return
        src = _along(src, self.dim, slice(first, None))
        if self.dim == 1:  # whole rows: numpy is fastest on long contiguous inner loops
            if self.kind == "sum" and self._running(out):
                self._running_sum(out, src)
            elif self.kind == "sum":
                self._window_sum(out, src)
            else:
                self._taps(out, src)
            return
        strip = max(1, _STRIP_ELEMENTS // (src.shape[0] * src.shape[2]))
        for start in range(0, out.shape[1], strip):
            part = slice(start, start + strip)
            if self.kind == "sum":
                self._window_sum(out[:, part], src[:, part])
            else:
                self._taps(out[:, part], src[:, part])

    def _taps(self, out: np.ndarray, src: np.ndarray) -> None:
        count = out.shape[self.dim]
        _accumulate(
            out,
            (
                (w, _along(src, self.dim, _tap_slice(self.axis, 0, t, count)))
                for t, w in enumerate(self.taps)
            ),
        )

    def _running(self, out: np.ndarray) -> bool:
        """Whether a running sum down the rows pays: unit steps, and rows long enough that
        three vector operations per output row beat log2(taps) passes."""
        axis = self.axis
        return (
            axis.stride == 1
            and axis.dilation == 1
            and axis.taps >= _RUNNING_MIN_TAPS
            and out.shape[0] * out.shape[2] >= _RUNNING_MIN_WIDTH
        )

    def _running_sum(self, out: np.ndarray, src: np.ndarray) -> None:
        """Box sums down the rows: add the row entering the window, drop the one leaving.

        O(1) per pixel whatever the box height. The float64 accumulator drifts by about
        ``rows * 1e-16`` of the window sum over a band, far below the tolerance.
        """
        taps, value = self.taps.size, self.value
        total = src[:, :taps].sum(axis=1, dtype=np.float64)
        np.multiply(total, value, out=out[:, 0])
        for j in range(1, out.shape[1]):  # a loop over rows; each step is vectorised
            np.add(total, src[:, j + taps - 1], out=total)
            np.subtract(total, src[:, j - 1], out=total)
            np.multiply(total, value, out=out[:, j])

    def _matmul(self, out: np.ndarray, src: np.ndarray, first: int) -> None:
        """Toeplitz products over tiles: blocks of outputs along ``dim`` x chunks across it.

        All full tiles go into one stacked matmul; the last partial block and chunk get
        their own. Tiles stay below ``_GEMM_MAX`` multiply-adds, so OpenBLAS keeps each
        product on the calling thread (its own threads would fight the band pool).
        """
        axis, dim, toeplitz = self.axis, self.dim, self.toeplitz
        across = 3 - dim
        src = _along(src, dim, slice(first, None))
        if src.strides[2] != src.itemsize:  # BLAS needs unit steps along the columns
            src = np.ascontiguousarray(src)
        step = _MATMUL_BLOCK * axis.stride  # input positions between two blocks' starts
        whole, rest = divmod(out.shape[dim], _MATMUL_BLOCK)
        chunk = max(1, _GEMM_MAX // toeplitz.size)
        chunks, leftover = divmod(out.shape[across], chunk)
        for blocks, block, start in ((whole, _MATMUL_BLOCK, 0), (int(rest > 0), rest, whole)):
            if not blocks:
                continue
            span = axis.stride * (block - 1) + axis.span
            matrix = toeplitz[:span, :block] if dim == 2 else toeplitz[:block, :span]
            block_src = _along(src, dim, slice(start * step, None))
            block_out = _along(out, dim, slice(start * _MATMUL_BLOCK, None))
            for count, length, offset in (
                (chunks, chunk, 0),
                (int(leftover > 0), leftover, chunks * chunk),
            ):
                if not count:
                    continue
                tiles = _tiles(
                    _along(block_src, across, slice(offset, None)),
                    dim,
                    blocks,
                    step,
                    span,
                    count,
                    length,
                )
                target = _tiles(
                    _along(block_out, across, slice(offset, None)),
                    dim,
                    blocks,
                    block,
                    block,
                    count,
                    length,
                )
                if dim == 2:
                    np.matmul(tiles, matrix, out=target)
                else:
                    np.matmul(matrix, tiles, out=target)

    def _window_sum(self, out: np.ndarray, src: np.ndarray) -> None:
        """Sums of consecutive (dilated) samples by doubling, times the constant weight.

        O(log taps) passes, each vectorised over the whole strip.

        ``sums`` holds windows of ``width`` taps; doubling adds it to itself shifted by
        ``width`` taps. Each set bit of the tap count adds the current windows to the
        result, shifted past the taps already covered. Tree-shaped sums lose no precision.
        """
        dim, taps = self.dim, self.taps.size
        step, gap = self.axis.stride, self.axis.dilation
        last = step * (out.shape[dim] - 1) + 1
        sums, width, covered, bits = src, 1, 0, taps
        spare = None  # two scratch arrays, reused: fresh large arrays would page-fault
        while bits:
            if bits & 1:
                part = _along(sums, dim, slice(covered * gap, covered * gap + last, step))
                if covered:
                    np.add(out, part, out=out)
                else:
                    np.copyto(out, part)
                covered += width
            bits >>= 1
            if bits:  # windows of 2*width taps, only as many as the higher bits read
                length = last + (taps - 2 * width) * gap
                if spare is None:
                    shape = list(src.shape)
                    shape[dim] = length
                    spare = [np.empty(shape, dtype=out.dtype), np.empty(shape, dtype=out.dtype)]
                target = _along(spare[0], dim, slice(0, length))
                np.add(
                    _along(sums, dim, slice(0, length)),
                    _along(sums, dim, slice(width * gap, width * gap + length)),
                    out=target,
                )
                sums = target
                spare.reverse()
                width *= 2
        if self.value != 1:
            np.multiply(out, self.value, out=out)


def _direct_setup(plan: _Plan):
    """Band function for a general kernel: tap by tap, or as one 1-D pass per kernel line.

    Few taps (counting a multiply for each weight other than +-1) go tap by tap: ``out +=
    w[a, b] * shifted band``, in-place ufuncs on strided views. Otherwise each nonzero kernel
    row (or column, whichever needs fewer and shorter products) is a 1-D :class:`_Pass`
    over the band's rows shifted by that row, and the passes are summed.
    """
    rows, cols = plan.rows, plan.cols
    first_col = cols.offset - plan.col_start
    weights = plan.weights.astype(plan.dtype)
    nonzero = weights != 0
    passes = np.count_nonzero(nonzero) + np.count_nonzero(nonzero & (np.abs(weights) != 1))
    by_rows = np.count_nonzero(nonzero.any(axis=1))
    by_cols = np.count_nonzero(nonzero.any(axis=0))
    if passes < _PASS_COST * max(1, min(by_rows, by_cols)):  # (all-zero kernels too)

        def compute(plan: _Plan, buf: np.ndarray, out: np.ndarray) -> None:
            nr, nc = out.shape[-2:]
            row_slices = [_tap_slice(rows, 0, a, nr) for a in range(rows.taps)]
            col_slices = [_tap_slice(cols, first_col, b, nc) for b in range(cols.taps)]
            _accumulate(
                out,
                (
                    (weights[a, b], buf[:, rs, cs])
                    for a, rs in enumerate(row_slices)
                    for b, cs in enumerate(col_slices)
                ),
            )

        return compute

    # Cost of one pass ~ its span plus the block's waste and the sum; a column pass over a
    # strided column selection first copies it (BLAS needs unit steps along columns).
    row_cost = by_rows * (cols.span + 2 * _MATMUL_BLOCK)
    col_cost = by_cols * (rows.span + 2 * _MATMUL_BLOCK + (16 if cols.stride > 1 else 0))
    if row_cost <= col_cost:
        lines = [(a, _Pass(w, cols, 2, plan.dtype)) for a, w in enumerate(plan.weights) if w.any()]
    else:
        lines = [
            (b, _Pass(w, rows, 1, plan.dtype)) for b, w in enumerate(plan.weights.T) if w.any()
        ]

    def compute(plan: _Plan, buf: np.ndarray, out: np.ndarray) -> None:
        nr, nc = out.shape[-2:]
        tmp = np.empty_like(out) if len(lines) > 1 else None
        for i, (line, one_pass) in enumerate(lines):
            target = out if i == 0 else tmp
            if row_cost <= col_cost:
                one_pass(target, buf[:, _tap_slice(rows, 0, line, nr)], first_col)
            else:
                one_pass(target, buf[:, :, _tap_slice(cols, first_col, line, nc)], 0)
            if i:
                np.add(out, tmp, out=out)

    return compute


def _separable_setup(plan: _Plan):
    """Band function for a rank-1 kernel: a column pass over the band, then a row pass.

    Column pass first: it turns the band's ``nr + K - 1`` padded rows into ``nr`` rows, so
    the row pass runs on no more rows than the output has (row-first would filter all
    ``nr + K - 1``), and bands need not be tall to amortise the kernel's height.
    """
    rows, cols = plan.rows, plan.cols
    column, row = plan.factors
    # A single-tap factor is only a scale: fold it into the other pass and skip its pass.
    if rows.taps == 1:
        row, column = row * column[0], None
    elif cols.taps == 1:
        row, column = None, column * row[0]
    row_pass = None if row is None else _Pass(row, cols, 2, plan.dtype)
    column_pass = None if column is None else _Pass(column, rows, 1, plan.dtype)
    first_col = cols.offset - plan.col_start

    def compute(plan: _Plan, buf: np.ndarray, out: np.ndarray) -> None:
        nr, nc = out.shape[-2:]
        if column_pass is None:  # one-row kernel: the row pass reads only the kept rows
            row_pass(out, buf[:, _tap_slice(rows, 0, 0, nr)], first_col)
        elif row_pass is None:  # one-column kernel: the column pass reads the kept columns
            column_pass(out, buf[:, :, _tap_slice(cols, first_col, 0, nc)], 0)
        else:
            mid = np.empty((buf.shape[0], nr, buf.shape[2]), dtype=plan.dtype)
            column_pass(mid, buf, 0)
            row_pass(out, mid, first_col)

    return compute


def _fft_setup(plan: _Plan, channels: int, workers: int):
    """Band height and band function for FFT overlap-save (scipy.fft, imported only here).

    Each band's padded rows are transformed whole (circular convolution); the first ``K-1``
    rows and columns of the result are wrapped around and dropped, the rest is exact.
    """
    import scipy.fft

    rows, cols = plan.rows, plan.cols
    # Transform height ~4 kernel spans: the K-1 overlap rows cost under a third of the work,
    # while a band's spectrum stays a small slice of the image.
    height = scipy.fft.next_fast_len(max(_FFT_MIN_HEIGHT, 4 * rows.span), real=True)
    band = max(1, (height - rows.span) // rows.stride + 1)
    # A band holds its rows, their spectrum and scipy's temporaries: ~6 band-size arrays.
    band = _band_within_budget(plan, channels, band, workers, copies=6)
    height = scipy.fft.next_fast_len(rows.stride * (band - 1) + rows.span, real=True)
    width = scipy.fft.next_fast_len(plan.col_count, real=True)

    dilated = np.zeros((rows.span, cols.span))
    dilated[:: rows.dilation, :: cols.dilation] = plan.weights
    complex_dtype = np.result_type(plan.dtype, np.complex64)
    spectrum = scipy.fft.rfft2(dilated[::-1, ::-1], s=(height, width)).astype(complex_dtype)
    bands = -(-rows.size // band)
    fft_workers = 1 if bands > 1 else workers  # one band: let scipy.fft use the threads
    first_row = rows.span - 1
    first_col = cols.offset - plan.col_start + cols.span - 1

    def compute(plan: _Plan, buf: np.ndarray, out: np.ndarray) -> None:
        nr, nc = out.shape[-2:]
        product = scipy.fft.rfft2(buf, s=(height, width), workers=fft_workers)
        product *= spectrum
        full = scipy.fft.irfft2(product, s=(height, width), workers=fft_workers, overwrite_x=True)
        out[...] = full[:, _tap_slice(rows, first_row, 0, nr), _tap_slice(cols, first_col, 0, nc)]

    return band, compute

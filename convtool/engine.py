"""Exact, fast 2-D correlation and convolution over the last two axes of an array.

Conventions (scipy.ndimage's): output pixel ``i`` of a correlation reads input pixels
``i - c + a*d`` for taps ``a = 0..k-1``, where ``c = K//2 + origin`` is the kernel centre
and ``K = (k-1)*d + 1`` the kernel's side once dilated by ``d``. Convolution is correlation
with the flipped kernel and the mirrored origin (``-origin``, and ``-1`` more on axes of even
``K``), exactly as ``scipy.ndimage.convolve``. ``valid`` reads no padding and shrinks the output
by ``K-1``; ``full`` pads ``K-1`` zeros on each side and grows it by ``K-1``. A stride ``s``
keeps output pixels ``0, s, 2s, ...``. :func:`carry` moves what is not filtered (alpha,
channels left alone) with the same geometry: one function (``_axes``) holds that arithmetic.

The work is split into bands of output rows. Each band gathers only its own padded rows
(padding is an index map, the image is never padded as a whole), computes them with one of
the METHODS (direct and separable: ``bands`` over ``passes``; FFT: ``fftconv``), and writes
into the output; bands run on a thread pool (numpy and scipy.fft release the GIL), each
thread reusing one band's arrays. Peak memory is the input, the output and the bands in
flight, which are sized to stay within one more image (see _band_within_budget).

This module holds the public API, validation, the plan and the scheduling of bands.
"""

from __future__ import annotations

import operator
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import bands, passes
from .errors import UsageError
from .padding import Padding, parse_padding

# Axis, Plan and Tuning are shared with bands, passes and fftconv; they are not public.
__all__ = ["METHODS", "carry", "choose_method", "convolve", "correlate", "separable_factors"]

METHODS = ("auto", "direct", "separable", "fft")

# Sizes measured on the test machine (2048x2048 and 4096x4096 float32, two threads). Both the
# choice of method here and the passes read them: they are set here, once.
# Elements (channels x rows x columns) per band: the fastest of 2^16..2^21 for 3x3 kernels
# (smaller bands lose to per-call overhead).
_BAND_ELEMENTS = 1 << 18
# A matrix product (BLAS) of a 1-D line of taps with a Toeplitz block of _MATMUL_BLOCK
# outputs costs about as much as _PASS_COST ufunc passes over the band (one per nonzero tap,
# one more per multiply by a weight other than +-1).
_PASS_COST = 5
_MATMUL_BLOCK = 16
# Elements per strip of a ufunc pass (float32: 256 KiB, a quarter of a core's L2).
_STRIP_ELEMENTS = 1 << 16
# Box factors down the rows use running sums from this many taps on, when a band's rows
# hold at least this many values (else the per-row steps cost more than doubling).
_RUNNING_MIN_TAPS = 16
# Box factors use those sums only from this many taps on: below it the Toeplitz product is
# faster (4096x4096, 2 threads, Mpix/s, sums vs product: box 15 317 vs 572, 31 118 vs 420,
# 127 106 vs 192, 255 98 vs 94).
_BOX_MIN_TAPS = 192
_RUNNING_MIN_WIDTH = 512
_RUNNING_MAX_BAND = 256
# Largest matrix product (multiply-adds) that OpenBLAS runs on the calling thread.
_GEMM_MAX = 1 << 18
# Separable factors are accepted when the rank-1 residual is below this, relative to max|w|.
_RANK1_RTOL = 1e-12


@dataclass(frozen=True)
class Axis:
    """Geometry along one axis: output pixel ``j`` reads input ``stride*j + offset + a*dilation``.

    ``centre`` is the position in the (dilated) window that sits on the output pixel: the
    kernel's centre tap ``K//2 + origin``, after the flip for convolution. So output pixel
    ``j`` stands on input pixel ``anchor(j) = stride*j + offset + centre`` (``stride*j`` for
    the same-size paddings); :func:`carry` moves unfiltered arrays by it.
    """

    n: int
    taps: int
    dilation: int
    stride: int
    offset: int
    size: int  # output length, after the stride
    centre: int

    @property
    def span(self) -> int:
        return (self.taps - 1) * self.dilation + 1

    def anchors(self) -> np.ndarray:
        """The input pixel each output pixel stands on (outside ``0..n-1`` for ``full``)."""
        return self.stride * np.arange(self.size) + self.offset + self.centre

    @property
    def reach(self) -> int:
        """Input positions spanned by the kept outputs plus the kernel."""
        return self.stride * (self.size - 1) + self.span


@dataclass(frozen=True)
class Tuning:
    """The measured sizes above that the band methods and their 1-D passes read."""

    pass_cost: int
    matmul_block: int
    strip_elements: int
    running_min_taps: int
    box_min_taps: int
    running_min_width: int
    gemm_max: int


@dataclass(frozen=True)
class Plan:
    """Everything a band needs, in canonical form (correlation, float weights)."""

    weights: np.ndarray  # (kh, kw), already flipped for convolution
    factors: tuple[np.ndarray, np.ndarray] | None  # (column, row)
    rows: Axis
    cols: Axis
    padding: Padding
    cval: float
    dtype: np.dtype
    col_start: int  # first input column held in a band buffer (<= 0)
    col_count: int  # columns in a band buffer (covers the whole image width)
    tuning: Tuning


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
    ``.origin``; ``origin=None`` takes the kernel's own origin, if any. The image should be
    finite: a NaN or infinity may spread past the kernel's window on the running-sum and
    FFT paths (:class:`convtool.pipeline.Chain` and the CLI refuse such images).
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


def carry(
    image,
    kernel,
    *,
    convolve: bool = True,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
) -> np.ndarray:
    """Move ``image`` as filtering it with ``kernel`` would, without mixing its pixels.

    The result has the filtered shape, and each output pixel takes the input value it
    stands on: the one under the window's centre, position ``K//2 + origin`` of the kernel
    as written (``K`` its dilated side), in convolution and correlation alike (convolution
    flips the kernel and mirrors the origin, so that position stays on the output pixel).
    That is what alpha and unfiltered channels become beside filtered ones: the same crop
    (``valid``), padding (``full``, whose ring is 0) and stride, from the same window
    arithmetic as :func:`correlate` and :func:`convolve`. Only the kernel's shape and
    origin matter; ``convolve`` says which of the two the geometry is for. The dtype is kept.

    >>> carry(np.arange(5.0)[None], np.ones((1, 2)), padding="valid")  # correlating: 1 2 3 4
    array([[0., 1., 2., 3.]])
    """
    x = _as_image(image)
    weights, _, kernel_origin = _as_kernel(kernel)
    padding = parse_padding(padding)
    cval = 0.0 if padding is Padding.ZERO else _number(cval, "cval")
    rows, cols = _axes(x.shape[-2:], weights.shape, convolve, padding, stride, dilation,
                       kernel_origin if origin is None else origin)  # fmt: skip
    out = x
    for axis, geometry in ((-2, rows), (-1, cols)):
        index = geometry.anchors()
        inside = (index >= 0) & (index < geometry.n)
        if padding in (Padding.ZERO, Padding.CONSTANT, Padding.VALID, Padding.FULL):
            out = np.take(out, np.clip(index, 0, geometry.n - 1), axis=axis)
            if not inside.all():
                outside = (slice(None),) * (out.ndim + axis) + (~inside,)
                out[outside] = cval if padding is Padding.CONSTANT else 0
        else:
            out = np.take(out, bands.extend(index, geometry.n, padding), axis=axis)
    return out


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


# ----------------------------------------------------------------------------- validation


def _filter(image, kernel, flip, padding, cval, stride, dilation, origin, method, threads):
    """Validate the arguments, build the plan and run it over bands of output rows."""
    x = _as_image(image)
    weights, factors, kernel_origin = _as_kernel(kernel)
    padding = parse_padding(padding)
    origin = kernel_origin if origin is None else origin
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if threads is not None:
        threads = _integer(threads, "threads")
    cval = 0.0 if padding is Padding.ZERO else _number(cval, "cval")
    rows, cols = _axes(x.shape[-2:], weights.shape, flip, padding, stride, dilation, origin)
    if flip:
        weights = weights[::-1, ::-1]
        factors = None if factors is None else (factors[0][::-1], factors[1][::-1])

    if method in ("auto", "separable") and factors is None:
        factors = separable_factors(weights)
    if method == "auto":
        method = choose_method(weights.shape, factors is not None, x.shape[-2:])
    if method == "separable" and factors is None:
        raise UsageError("method 'separable' needs a rank-1 kernel; use direct, fft or auto")

    dtype = np.dtype(np.float32 if x.dtype.itemsize <= 4 and x.dtype.kind == "f" else np.float64)
    col_start = min(cols.offset, 0)
    col_end = max(cols.n, cols.offset + cols.reach)
    plan = Plan(
        weights=weights,
        factors=factors,
        rows=rows,
        cols=cols,
        padding=padding,
        cval=cval,
        dtype=dtype,
        col_start=col_start,
        col_count=col_end - col_start,
        tuning=_tuning(),
    )
    if x.size == 0:  # an empty stack of images (a leading axis of length 0)
        out = np.empty((0, rows.size, cols.size), dtype=dtype)
    else:
        out = _run(plan, x.reshape((-1,) + x.shape[-2:]), method, threads)
    out = out.reshape(x.shape[:-2] + out.shape[-2:])
    return out.astype(x.dtype, copy=False) if x.dtype.kind == "f" else out


def _number(value, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, got {value!r}") from None


def _axes(image_shape, kernel_shape, flip: bool, padding: Padding, stride, dilation, origin):
    """The window arithmetic, once: (rows, cols) :class:`Axis` of a filter on an image.

    Filtering (:func:`correlate`, :func:`convolve`) and moving what is not filtered
    (:func:`carry`) both take their geometry from here. Convolution mirrors the origin as
    scipy does (``-origin``, minus 1 on axes of even dilated side).
    """
    stride = _pair(stride, "stride")
    dilation = _pair(dilation, "dilation")
    origin = _pair(origin, "origin", minimum=None)
    spans = [(k - 1) * d + 1 for k, d in zip(kernel_shape, dilation, strict=True)]
    _check_origin(origin, spans, padding)
    if flip:
        origin = tuple(-o - (1 - span % 2) for o, span in zip(origin, spans, strict=True))
    return tuple(
        _axis(n, k, d, s, o, padding)
        for n, k, d, s, o in zip(image_shape, kernel_shape, dilation, stride, origin, strict=True)
    )


def _check_origin(origin: tuple[int, int], spans, padding: Padding) -> None:
    """The centre ``span // 2 + origin`` must fall on the (dilated) kernel, as scipy requires."""
    if not padding.keeps_size and origin != (0, 0):
        centre = tuple(span // 2 + o for o, span in zip(origin, spans, strict=True))
        raise UsageError(
            f"origin {origin} (the centre at row {centre[0]}, column {centre[1]} of the kernel) "
            f"has no meaning with {padding.value} padding, whose output is where the whole "
            "kernel fits; leave the origin out"
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
    if isinstance(weights, str):
        raise UsageError(
            f"the engine takes kernel weights, not a spec like {weights!r}; use "
            "convtool.correlate / convtool.convolve, or convtool.get_kernel first"
        )
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


def _axis(n: int, k: int, d: int, s: int, origin: int, padding: Padding) -> Axis:
    span = (k - 1) * d + 1
    centre = span // 2 + origin
    if padding is Padding.VALID:
        offset, length = 0, n - span + 1
        if length < 1:
            raise UsageError(
                f"kernel side {span} exceeds the image side {n}: valid padding leaves no output; "
                "use a smaller kernel or another --padding"
            )
    elif padding is Padding.FULL:
        offset, length = -(span - 1), n + span - 1
    else:
        offset, length = -centre, n
    return Axis(n, k, d, s, offset, -(-length // s), centre)


def _tuning() -> Tuning:
    """The measured sizes, read at each call (tests shrink them to reach every partial tile)."""
    return Tuning(
        pass_cost=_PASS_COST,
        matmul_block=_MATMUL_BLOCK,
        strip_elements=_STRIP_ELEMENTS,
        running_min_taps=_RUNNING_MIN_TAPS,
        box_min_taps=_BOX_MIN_TAPS,
        running_min_width=_RUNNING_MIN_WIDTH,
        gemm_max=_GEMM_MAX,
    )


# ----------------------------------------------------------------------------- bands


def _run(plan: Plan, x: np.ndarray, method: str, threads: int | None) -> np.ndarray:
    """Compute all bands of output rows, on a thread pool when there are several."""
    channels = x.shape[0]
    out = np.empty((channels, plan.rows.size, plan.cols.size), dtype=plan.dtype)
    workers = threads or os.cpu_count() or 1
    if method == "fft":
        from . import fftconv  # imports scipy.fft (~0.1 s): only when an FFT is asked for

        wanted = fftconv.band_rows(plan)
        band = _band_within_budget(plan, channels, wanted, workers, fftconv.BAND_COPIES)
        bind = fftconv.bind_for(plan, band, workers)
    else:
        wanted = _BAND_ELEMENTS // (channels * plan.col_count)
        if method == "separable" and passes.is_box(plan.factors[0], plan.tuning.box_min_taps):
            # A running sum down the rows starts each band with a whole window: make
            # bands about as tall as the kernel so that start costs ~1 step per row.
            wanted = max(wanted, min(plan.rows.span, _RUNNING_MAX_BAND))
        band = _band_within_budget(plan, channels, wanted, workers, bands.BAND_COPIES)
        bind = bands.direct(plan) if method == "direct" else bands.separable(plan)
    starts = range(0, plan.rows.size, band)
    local = threading.local()  # each thread filters its bands in its own arrays

    def work(j0: int) -> None:
        band_filter = getattr(local, "band_filter", None)
        if band_filter is None:
            band_filter = local.band_filter = bands.BandFilter(plan, bind)
        j1 = min(j0 + band, plan.rows.size)
        # errstate is per thread: overflow to inf is a result here (clipped on writing),
        # not a warning for every band to print on stderr
        with np.errstate(over="ignore", invalid="ignore"):
            band_filter(x, j0, j1, out[:, j0:j1])

    workers = min(workers, len(starts))
    if workers <= 1:
        for j0 in starts:
            work(j0)
    else:
        pool = ThreadPoolExecutor(workers)
        try:
            for future in [pool.submit(work, j0) for j0 in starts]:
                future.result()
        finally:
            # On Ctrl-C (or any error) drop the queued bands instead of computing them all.
            pool.shutdown(wait=True, cancel_futures=True)
    return out


def _band_within_budget(plan: Plan, channels: int, wanted: int, workers: int, copies: int) -> int:
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

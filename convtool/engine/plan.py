"""The plan of one engine call: geometry, method, bands, and the measured constants.

Shared by the methods (``bands``, ``passes``, ``fft``), the scheduler and the memory model,
so each fact (a crossover, a band size, an axis's geometry) is written here once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convtool.errors import UsageError
from convtool.padding import Padding

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

# Largest stride and dilation (the largest 32-bit signed integer, as OpenCV and PyTorch
# take): a stride beyond the image side already keeps one output, a dilation beyond it
# spreads the taps over padding only. Numbers past it are a typo, not a request.
MAX_STEP = 2**31 - 1
# Most threads one call runs: more than any machine has cores, and bounded so that a typo
# cannot ask a thread pool (or scipy.fft) for 10^23 threads.
MAX_THREADS = 1024


@dataclass(frozen=True)
class Axis:
    """Geometry along one axis: output pixel ``j`` reads input ``stride*j + offset + a*dilation``.

    ``centre`` is the position in the (dilated) window that sits on the output pixel: the
    kernel's centre ``K//2 + origin``, after the flip for convolution. So output pixel ``j``
    stands on input pixel ``stride*j + offset + centre`` (``stride*j`` for the same-size
    paddings); :func:`convtool.engine.carry` moves unfiltered arrays by it.
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

    band_elements: int
    running_max_band: int
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
    # Samples per pixel along a row: 1 for channel planes, C for interleaved (H, W*C) rows,
    # whose column padding copies whole pixels (see bands.column_sources).
    col_unit: int = 1


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


def choose_method(kernel_shape, is_separable: bool, image_shape, compiled: bool = False) -> str:
    """Pick the fastest exact method for a kernel of ``kernel_shape`` (taps) on an image.

    Rank-1 kernels: separable passes (faster than FFT up to ~200x200 taps, and a box costs
    nearly the same at any size); but with the compiled float kernels (``compiled``) direct
    taps for kernels of at most ``_COMPILED_DIRECT_MAX`` rows and columns, whose few rows
    cost less read at once than through a row buffer. Others: direct while its cost index
    (kernel lines times their length plus the Toeplitz block overhead, the cheaper
    orientation) is at most ``_DIRECT_MAX_COST``, FFT beyond, and direct on tiny images
    where FFT setup dominates.
    """
    kh, kw = kernel_shape
    if is_separable and kh * kw > 1:
        most_rows, most_cols = _COMPILED_DIRECT_MAX
        if compiled and kh <= most_rows and kw <= most_cols:
            return "direct"
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


# Rank-1 kernels of at most these (rows, columns) run faster by the compiled direct taps than
# by the compiled separable passes: one process, 2048x2048 float32, 2 threads, reflect,
# separable / direct time (min, median of 11): Sobel 3x3 1.10, 0.99; binomial 3x3 1.07,
# 1.14; box 3x3 1.14, 1.07; binomial 3x5 1.16, 1.04; but binomial 5x5 0.91, 0.88; box 5x5
# 0.94, 0.90; Sobel 5x5 1.03, 1.00; binomial 7x7 0.60. The 8-bit kernels keep separable
# (3x3: 0.98-1.07 either way; box 5x5 0.78 and 7x7 0.69 for separable), and so does the
# numpy engine, whose direct 3x3 makes 9 passes over a band to separable's 6.
_COMPILED_DIRECT_MAX = (3, 5)


def check_origin(origin: tuple[int, int], spans, padding: Padding) -> None:
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


def correlation_form(weights: np.ndarray, origin, dilation, flip: bool):
    """The weights and origin that a correlation applies: for a convolution (``flip``) the
    kernel rotated by 180° and the origin mirrored as scipy.ndimage.convolve mirrors it
    (``-origin``, minus 1 more on axes of even dilated side)."""
    if not flip:
        return weights, tuple(origin)
    return weights[::-1, ::-1], _mirrored(origin, weights.shape, dilation)


def _mirrored(origin, kernel_shape, dilation) -> tuple[int, int]:
    spans = [(k - 1) * d + 1 for k, d in zip(kernel_shape, dilation, strict=True)]
    return tuple(-o - (1 - span % 2) for o, span in zip(origin, spans, strict=True))


def axes(
    image_shape, kernel_shape, flip: bool, padding: Padding, stride, dilation, origin
) -> tuple[Axis, Axis]:
    """The window arithmetic, once: the (rows, cols) :class:`Axis` of a filter on an image.

    Filtering (``correlate``, ``convolve``) and moving what is not filtered (``carry``)
    both take their geometry from here. ``stride``, ``dilation`` and ``origin`` are
    (rows, columns) pairs; the origin is checked, and mirrored for a convolution
    (:func:`correlation_form`).
    """
    spans = [(k - 1) * d + 1 for k, d in zip(kernel_shape, dilation, strict=True)]
    check_origin(origin, spans, padding)
    if flip:
        origin = _mirrored(origin, kernel_shape, dilation)
    rows, cols = (
        axis(n, k, d, s, o, padding)
        for n, k, d, s, o in zip(image_shape, kernel_shape, dilation, stride, origin, strict=True)
    )
    return rows, cols


def axis(n: int, k: int, d: int, s: int, origin: int, padding: Padding) -> Axis:
    """One axis of a correlation: output ``j`` reads input ``s*j + offset + a*d``, a = 0..k-1."""
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


def tuning() -> Tuning:
    """The measured sizes, read at each call (tests shrink them to reach every partial tile)."""
    return Tuning(
        band_elements=_BAND_ELEMENTS,
        running_max_band=_RUNNING_MAX_BAND,
        pass_cost=_PASS_COST,
        matmul_block=_MATMUL_BLOCK,
        strip_elements=_STRIP_ELEMENTS,
        running_min_taps=_RUNNING_MIN_TAPS,
        box_min_taps=_BOX_MIN_TAPS,
        running_min_width=_RUNNING_MIN_WIDTH,
        gemm_max=_GEMM_MAX,
    )


def band_within_budget(plan: Plan, channels: int, wanted: int, workers: int, copies: int) -> int:
    """Output rows per band: ``wanted``, fewer if all workers' bands would outgrow the image.

    A band holds ``copies`` arrays of its padded input rows; all workers' bands together
    stay within one image-size array, so peak memory is input + output + bands <= 3x the
    image. Bands keep at least half the kernel's height, though: below that, re-reading
    the kernel's rows for each band would cost more than the work itself. So a kernel
    taller than about a tenth of the image may take more.
    """
    rows = plan.rows
    per_row = channels * plan.col_count * copies * workers
    budget = max(plan.tuning.band_elements * copies * workers, channels * rows.n * plan.cols.n)
    fitting = (budget // per_row - rows.span) // rows.stride + 1
    floor = rows.span // 2 // rows.stride
    return max(1, floor, min(wanted, fitting))

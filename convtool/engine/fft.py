"""FFT overlap-save over bands of output rows, for large non-separable kernels.

Each band's padded rows are transformed whole (a circular convolution); the first ``K-1`` rows
and columns of the result wrap around and are dropped, and the rest is exact. The engine
imports this module, and with it scipy, only when an FFT is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.fft

from convtool.engine.bands import BandMethod

if TYPE_CHECKING:
    from convtool.engine.plan import Axis, Plan

# Arrays of the band's size that one band holds at its peak: its rows, their spectrum and
# scipy's temporaries.
BAND_COPIES = 6
# Smallest transform height (rows).
_MIN_HEIGHT = 128


def band_rows(plan: Plan) -> int:
    """Output rows per band, for transforms about four kernel spans tall.

    The ``K-1`` overlap rows then cost under a third of the work, while a band's spectrum
    stays a small slice of the image.
    """
    rows = plan.rows
    height = scipy.fft.next_fast_len(max(_MIN_HEIGHT, 4 * rows.span), real=True)
    return max(1, (height - rows.span) // rows.stride + 1)


class FFTBands(BandMethod):
    """Bands of ``band`` output rows by overlap-save. The kernel's spectrum is computed here,
    once for all threads; scipy.fft gets the threads when there is a single band."""

    copies = BAND_COPIES

    def __init__(self, plan: Plan, channels: int, workers: int, stop) -> None:
        super().__init__(plan, channels, workers, stop)
        rows, cols = plan.rows, plan.cols
        self.height = scipy.fft.next_fast_len(rows.stride * (self.band - 1) + rows.span, real=True)
        self.width = scipy.fft.next_fast_len(plan.col_count, real=True)
        dilated = np.zeros((rows.span, cols.span))
        dilated[:: rows.dilation, :: cols.dilation] = plan.weights
        complex_dtype = np.result_type(plan.dtype, np.complex64)
        self.spectrum = scipy.fft.rfft2(dilated[::-1, ::-1], s=(self.height, self.width)).astype(
            complex_dtype
        )
        self.fft_workers = 1 if -(-rows.size // self.band) > 1 else workers

    def wanted_rows(self, channels: int) -> int:
        return band_rows(self.plan)

    def views(self, buf: np.ndarray, nr: int):
        rows, cols = self.plan.rows, self.plan.cols
        first_row = rows.span - 1
        first_col = cols.offset - self.plan.col_start + cols.span - 1
        return (slice(None), _kept(rows, first_row, nr), _kept(cols, first_col, cols.size))

    def __call__(self, buf: np.ndarray, views, out: np.ndarray, j0: int) -> None:
        # rfft2 and irfft2 axis by axis, so that the column transforms run in place and the
        # last inverse pass transforms only the kept rows: a band holds its rows, one
        # spectrum and the kept rows' result (4096^2 float32, random 31x31, numpy engine:
        # peak extra memory 1.20-1.24 -> 1.16-1.21x the image, 1.1-1.25x faster)
        workers = self.fft_workers
        product = scipy.fft.rfft(buf, n=self.width, axis=-1, workers=workers)
        product = scipy.fft.fft(product, n=self.height, axis=-2, overwrite_x=True, workers=workers)
        product *= self.spectrum
        product = scipy.fft.ifft(product, axis=-2, overwrite_x=True, workers=workers)
        channels, kept_rows, kept_cols = views
        rows = scipy.fft.irfft(product[channels, kept_rows], n=self.width, axis=-1, workers=workers)
        out[...] = rows[..., kept_cols]


def _kept(axis: Axis, first: int, count: int) -> slice:
    """Positions of the ``count`` kept outputs, the first at ``first``, one stride apart."""
    return slice(first, first + axis.stride * (count - 1) + 1, axis.stride)

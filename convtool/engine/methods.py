"""The band methods: one small class per way of computing a band, behind one dispatch table.

``METHOD_TABLE[(method, implementation)]`` names the class that computes bands of output
rows for a plan, as libvips' ``conv.c`` picks its float, integer or approximate code:

==============  =====================  ======================  ==========================
method          ``numpy``              ``compiled``            ``uint8`` (compiled, exact)
==============  =====================  ======================  ==========================
direct          :class:`NumpyDirect`   :class:`CompiledDirect`  :class:`CompiledDirectU8`
separable       :class:`NumpySeparable` :class:`CompiledSeparable` :class:`CompiledSeparableU8`
fft             :class:`FFT`           :class:`FFT`            (not offered)
==============  =====================  ======================  ==========================

Every class has the same four parts:

- ``__init__(plan, channels, workers, stop)`` — the preparation, once per call and shared by
  the threads: tap lists, Toeplitz blocks, spectra, and ``band`` (output rows per band);
- ``buffer(channels, nr)`` — a thread's band buffer for bands of ``nr`` output rows;
- ``views(buf, nr)`` — what the method reads of that buffer, built once per thread (a
  ``sliding_window_view`` costs ~10 us, as much as a 3x3 pass over 10^4 pixels);
- ``__call__(buf, views, out, j0)`` — one band: ``out`` (output rows ``j0..``) from the
  gathered ``buf``.

``stop`` is set when the run is abandoned (Ctrl-C, an error in another band): the compiled
methods stop within one call of bounded work.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from convtool.engine import native
from convtool.engine.bands import FILLED, BandMethod, column_sources, source_positions
from convtool.engine.integer import integer_factors, integer_weights
from convtool.engine.kept import Recent
from convtool.engine.passes import OnePass, accumulate, is_box, make_pass, windows
from convtool.engine.plan import band_within_budget
from convtool.padding import Padding

if TYPE_CHECKING:
    from convtool.engine.plan import Plan

__all__ = ["METHOD_TABLE", "BandMethod", "implementation_for", "prepare"]


# ----------------------------------------------------------------------------- numpy


class NumpyTaps(BandMethod):
    """A general kernel with few taps (counting a multiply for each weight other than +-1):
    ``out += w[a, b] * windows[..., a, b]``, in-place ufuncs on strided views."""

    def __init__(self, plan: Plan, channels: int, workers: int, stop: threading.Event) -> None:
        self.weights = plan.weights.astype(plan.dtype)
        super().__init__(plan, channels, workers, stop)

    def views(self, buf: np.ndarray, nr: int):
        plan = self.plan
        rows, cols = plan.rows, plan.cols
        taps = windows(windows(buf, rows, 1, nr), cols, 2, cols.size, cols.offset - plan.col_start)
        return [
            (self.weights[a, b], taps[..., a, b])
            for a in range(rows.taps)
            for b in range(cols.taps)
        ]

    def __call__(self, buf: np.ndarray, views, out: np.ndarray, j0: int) -> None:
        accumulate(out, views)


class NumpyLines(BandMethod):
    """A general kernel with many taps: each nonzero kernel row (or column, whichever needs
    fewer and shorter products) is a 1-D pass over the band shifted by it; passes summed."""

    def __init__(self, plan: Plan, channels: int, workers: int, stop: threading.Event) -> None:
        rows, cols, tuning = plan.rows, plan.cols, plan.tuning
        nonzero = plan.weights != 0
        by_rows = int(np.count_nonzero(nonzero.any(axis=1)))
        by_cols = int(np.count_nonzero(nonzero.any(axis=0)))
        # Cost of one pass ~ its span plus the block's waste and the sum; a column pass over
        # a strided column selection first copies it (BLAS needs unit steps along columns).
        block = tuning.matmul_block
        row_cost = by_rows * (cols.span + 2 * block)
        col_cost = by_cols * (rows.span + 2 * block + (16 if cols.stride > 1 else 0))
        self.by_kernel_rows = row_cost <= col_cost
        if self.by_kernel_rows:
            self.lines = [
                (a, make_pass(w, cols, 2, plan)) for a, w in enumerate(plan.weights) if w.any()
            ]
        else:
            self.lines = [
                (b, make_pass(w, rows, 1, plan)) for b, w in enumerate(plan.weights.T) if w.any()
            ]
        super().__init__(plan, channels, workers, stop)

    def views(self, buf: np.ndarray, nr: int):
        plan = self.plan
        first_col, nc = plan.cols.offset - plan.col_start, plan.cols.size
        if self.by_kernel_rows:  # kernel row a reads the band's rows shifted by a
            shifted = windows(buf, plan.rows, 1, nr)
            lines = [(p, p.views(shifted[..., a], nc, first_col)) for a, p in self.lines]
        else:  # kernel column b reads the kept columns shifted by b
            shifted = windows(buf, plan.cols, 2, nc, first_col)
            lines = [(p, p.views(shifted[..., b], nr, 0)) for b, p in self.lines]
        tmp = np.empty((buf.shape[0], nr, nc), dtype=plan.dtype) if len(lines) > 1 else None
        return lines, tmp

    def __call__(self, buf: np.ndarray, views, out: np.ndarray, j0: int) -> None:
        lines, tmp = views
        (first, first_views), rest = lines[0], lines[1:]
        first.run(first_views, out)
        for line, line_views in rest:
            line.run(line_views, tmp)
            np.add(out, tmp, out=out)


class NumpyDirect:
    """``direct`` on numpy: :class:`NumpyTaps` for few taps, else :class:`NumpyLines`."""

    @staticmethod
    def prepare(plan: Plan, channels: int, workers: int, stop: threading.Event) -> BandMethod:
        weights = plan.weights
        nonzero = weights != 0
        passes = np.count_nonzero(nonzero) + np.count_nonzero(nonzero & (np.abs(weights) != 1))
        by_rows = int(np.count_nonzero(nonzero.any(axis=1)))
        by_cols = int(np.count_nonzero(nonzero.any(axis=0)))
        few = passes < plan.tuning.pass_cost * max(1, min(by_rows, by_cols))  # (all-zero too)
        return (NumpyTaps if few else NumpyLines)(plan, channels, workers, stop)


class NumpySeparable(BandMethod):
    """A rank-1 kernel on numpy: a column pass, then a row pass.

    Column pass first: it turns the band's ``nr + K - 1`` padded rows into ``nr`` rows, so
    the row pass runs on no more rows than the output has, and bands need not be tall to
    amortise the kernel's height. A single-tap factor is only a scale: it is folded into the
    other pass, and its own pass skipped.
    """

    def __init__(self, plan: Plan, channels: int, workers: int, stop: threading.Event) -> None:
        rows, cols = plan.rows, plan.cols
        assert plan.factors is not None, "the separable method is chosen only for a rank-1 plan"
        column: np.ndarray | None
        row: np.ndarray | None
        column, row = plan.factors
        if rows.taps == 1:
            row, column = row * column[0], None
        elif cols.taps == 1:
            column, row = column * row[0], None
        self.row_pass: OnePass | None = None if row is None else make_pass(row, cols, 2, plan)
        self.column_pass: OnePass | None = (
            None if column is None else make_pass(column, rows, 1, plan)
        )
        super().__init__(plan, channels, workers, stop)

    def wanted_rows(self, channels: int) -> int:
        return _separable_rows(self.plan, super().wanted_rows(channels))

    def views(self, buf: np.ndarray, nr: int):
        plan = self.plan
        rows, cols = plan.rows, plan.cols
        first_col, nc = cols.offset - plan.col_start, cols.size
        if self.column_pass is None:  # one-row kernel: the row pass reads only the kept rows
            assert self.row_pass is not None, "a 1x1 kernel keeps its row pass"
            return None, None, self.row_pass.views(windows(buf, rows, 1, nr)[..., 0], nc, first_col)
        if self.row_pass is None:  # one-column kernel: the column pass reads the kept columns
            src = windows(buf, cols, 2, nc, first_col)[..., 0]
            return None, self.column_pass.views(src, nr, 0), None
        mid = np.empty((buf.shape[0], nr, buf.shape[2]), dtype=plan.dtype)
        return mid, self.column_pass.views(buf, nr, 0), self.row_pass.views(mid, nc, first_col)

    def __call__(self, buf: np.ndarray, views, out: np.ndarray, j0: int) -> None:
        mid, column_views, row_views = views
        if row_views is None:
            assert self.column_pass is not None, "views() kept the column pass"
            self.column_pass.run(column_views, out)
        elif column_views is None:
            assert self.row_pass is not None, "views() kept the row pass"
            self.row_pass.run(row_views, out)
        else:
            assert self.column_pass is not None and self.row_pass is not None, "both passes kept"
            self.column_pass.run(column_views, mid)
            self.row_pass.run(row_views, out)


def _separable_rows(plan: Plan, wanted: int) -> int:
    """A running sum down the rows starts each band with a whole window: make bands about
    as tall as the kernel so that start costs ~1 step per row."""
    assert plan.factors is not None, "only separable methods ask"
    if is_box(plan.factors[0], plan.tuning.box_min_taps):
        wanted = max(wanted, min(plan.rows.span, plan.tuning.running_max_band))
    return wanted


class FFT:
    """``fft`` (either implementation): overlap-save over bands, see :mod:`convtool.engine.fft`
    (imported, and scipy with it, only when an FFT is asked for)."""

    @staticmethod
    def prepare(plan: Plan, channels: int, workers: int, stop: threading.Event) -> BandMethod:
        from convtool.engine.fft import FFTBands

        return FFTBands(plan, channels, workers, stop)


# ----------------------------------------------------------------------------- compiled

# Bands of a compiled call that reads the image in place are this many times the numpy
# bands (2^20 samples: 512 rows of a 2048-wide image). Measured, one process, 2 threads, x1
# vs x4 (ms, min): float32 2048^2 Sobel direct 3.30 vs 2.95; 3840x2160 RGB uint8 -> uint8
# (98 bands of 22 rows at x1) Sobel 14.1 vs 6.7, binomial 5x5 19.4 vs 14.9, box 15x15 23.2
# vs 17.9. (x16 gained at most 5% more, with one band per thread.) x8 against x4, on
# another machine (2 MiB of L2 a core), medians of 30 alternated, 2 threads: float32 Sobel,
# binomial 5x5, random 7x7, box 15x15, Gaussian 31 at 2048^2 1.01-1.04x new and 1.0x into
# out=, at 4096^2 1.01-1.07x both ways; 3840x2160 RGB uint8 -> uint8 Sobel 1.06x, binomial,
# box and Gaussian 1.0-1.02x. A band's Python (its slice, errstate, the calls down to C:
# ~30 us between bands, the interpreter's code cold after each band's sweep) is then paid
# half as often; a call still stops within CALL_WORK.
IN_PLACE_BANDS = 8

# Multiply-adds per compiled call (~10 ms): a band is done in calls of at most this much
# work, so a cancelled run (Ctrl-C, an error in another band) stops within one of them.
CALL_WORK = 1 << 24


def _compiled() -> ModuleType:
    """The compiled module, which the dispatch table picks a compiled method only with."""
    module = native.module()
    assert module is not None, "compiled methods are chosen only when the module loads"
    return module


class Compiled(BandMethod):
    """A compiled kernel over a band, in calls of about ``CALL_WORK`` multiply-adds each;
    once ``stop`` is set the remaining calls are skipped. Subclasses set ``function`` (the
    compiled function's name), ``weight_arguments`` (its weights), ``per_row`` (work per
    output row and channel) and, where their function takes more, ``options(origin)``,
    ``origin`` being the padded image's row that ``src`` (or the row map) starts at (the running sums' cut
    points depend on it alone, so the bits do not depend on the bands).

    The kernels read the unpadded image: ``maps`` holds the padding as index maps
    (:func:`convtool.engine.bands.source_positions`: the source row of each padded row the
    call reads, the source column of each padded column, -1 for the constant) and the
    constant, and the C code copies each padded row once into a ring of a few rows. No band
    is gathered, so :meth:`image_calls` replaces the gathering and the band buffer; a source
    of another dtype than the plan's (an 8-bit image filtered in floats) is still gathered.
    """

    function = ""  # the compiled module's function computing a band of this method
    weight_arguments: tuple = ()  # its arguments after (src, dst): weights (factors, scale)
    per_row = 1
    stream = False  # outputs stored streaming: only when written straight to the output
    # reads an 8-bit image itself (summing its samples in the plan's floats) and rounds its
    # outputs to uint8 itself: see :func:`reads_straight`
    converts = False

    def __init__(self, plan: Plan, channels: int, workers: int, stop: threading.Event) -> None:
        self.native = _compiled()
        super().__init__(plan, channels, workers, stop)
        self._balance(workers)
        # The source row of every padded row the call reads, once (a band slices it: making
        # it per band cost ~8 us of a band's ~30 us of set-up), and of every padded column
        rows = plan.rows
        self.row_map = _padding_map(rows.offset, rows.reach, rows.n, plan.padding, 1)
        unit = plan.col_unit if plan.padding not in FILLED else 1  # interleaved: whole pixels
        self.col_map = _padding_map(plan.col_start, plan.col_count, plan.cols.n, plan.padding, unit)
        self.cval = float(plan.cval) if plan.padding is Padding.CONSTANT else 0.0

    def _balance(self, workers: int) -> None:
        """As many bands as a whole number of turns of the workers: 5 bands on 2 threads
        (1024 rows of 253) kept one thread on 3 of them, 1.5x the time of an even split.
        The compiled results do not depend on the bands, so only the balance changes."""
        size = self.plan.rows.size
        count = -(-size // self.band)
        if count > 1 and workers > 1:
            count = -(-count // workers) * workers
            self.band = max(1, -(-size // count))

    def read_in_place(self, channels: int, workers: int, preallocated: bool = False) -> None:
        """Bands for a call that reads the image itself and writes its output straight (no
        band buffer, no scratch: :func:`convtool.engine.schedule.run` says when):
        ``IN_PLACE_BANDS`` times taller, since a band's set-up (its row map, the C call's
        checks of the maps and its ring of rows, ~20-30 us) was up to a third of its work.

        Into a ``preallocated`` output (``out=``) too large for the cache, the outputs are
        stored streaming (:func:`convtool.engine.native.streams`). Not into a new one: the
        kernel's zeroing of its pages has just brought their lines into the cache, and
        streaming was then no faster (4096² float32 Sobel, 3x3, 7x7: 0.93-1.02x)."""
        wanted = IN_PLACE_BANDS * self.wanted_rows(channels)
        self.band = band_within_budget(self.plan, channels, wanted, workers, self.copies)
        self._balance(workers)
        plan, item = self.plan, self.plan.dtype.itemsize
        pixels = plan.rows.n * plan.cols.n + plan.rows.size * plan.cols.size
        self.stream = preallocated and native.streams(channels * pixels * item)

    def for_run(self, stop: threading.Event) -> Compiled:
        """This prepared method for another call, which ``stop`` abandons."""
        again = object.__new__(type(self))
        again.__dict__.update(self.__dict__)
        again.stop = stop
        return again

    def geometry(self) -> tuple[int, int, int, int, int]:
        rows, cols = self.plan.rows, self.plan.cols
        first_col = cols.offset - self.plan.col_start
        return rows.stride, rows.dilation, cols.stride, cols.dilation, first_col

    def bind(
        self, src: np.ndarray, out: np.ndarray, origin: int, maps: dict, done=None
    ) -> Callable[[], None]:
        """The compiled call computing ``out`` from ``src``, bound to its arguments
        (``function(src, out, *weight_arguments, *geometry, **maps, **options(origin))``);
        ``done``: the int64 array whose first item the call increments once it is done."""
        return functools.partial(
            getattr(self.native, self.function),
            src,
            out,
            *self.weight_arguments,
            *self.geometry(),
            **maps,
            **self.options(origin),
            done=done,
        )

    def options(self, origin: int) -> dict:
        """The keyword arguments of this method's compiled function beside the maps."""
        return {}

    def chunk_rows(self, channels: int) -> int:
        """Output rows per compiled call: about ``CALL_WORK``, and enough that re-reading the
        kernel's rows at each call's start costs little."""
        rows = self.plan.rows
        least = -(-4 * rows.span // rows.stride)
        return max(least, CALL_WORK // max(1, channels * self.per_row))

    def source(self, x) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray] | None] | None:
        """``(array, locate)``: what the kernels read and how image rows map to its rows
        (None: the image itself), or None when the band must be gathered instead."""
        data, locate = x, None
        if not isinstance(x, np.ndarray):  # a Rows: some rows of the image
            data, locate = getattr(x, "data", None), getattr(x, "locate", None)
            if not isinstance(data, np.ndarray) or locate is None:
                return None
        if data.ndim != 3 or not data.flags.aligned:
            return None
        if data.dtype != self.plan.dtype and not (self.converts and data.dtype == np.uint8):
            return None
        return data, locate

    def image_calls(
        self, x, j0: int, j1: int, out: np.ndarray, done=None
    ) -> list[Callable[[], None]] | None:
        """The compiled calls that compute ``out`` (output rows ``j0..j1-1``) straight from
        the image ``x``, each of bounded work and independent of the others (see
        :meth:`chunks`); None when the rows must be gathered first (see :meth:`source`).
        Bound all at once, so the band threads run only the calls (see
        :func:`convtool.engine.schedule.run_bands`); each counts itself in ``done``."""
        found = self.source(x)
        if found is None:
            return None
        data, locate = found
        rows = self.plan.rows
        first = rows.stride * j0
        row_map = self.row_map[first : first + rows.stride * (j1 - j0 - 1) + rows.span]
        if locate is not None:
            row_map = locate(row_map)
        maps = {"row_map": row_map, "col_map": self.col_map, "cval": self.cval}
        return self.chunks(data, out, j0, maps, done)

    def filter_image(self, x, j0: int, j1: int, out: np.ndarray) -> bool:
        """``out`` (output rows ``j0..j1-1``) straight from the image ``x``; False (nothing
        done) when the band must be gathered first (see :meth:`source`)."""
        calls = self.image_calls(x, j0, j1, out)
        if calls is None:
            return False
        self.run_calls(calls)
        return True

    def chunks(
        self, src: np.ndarray, out: np.ndarray, j0: int, maps: dict, done=None
    ) -> list[Callable[[], None]]:
        """The calls of bounded work that compute ``out`` (output rows ``j0..``), ``src`` a
        gathered band (``maps`` empty) or the image (``maps``: its row map for these padded
        rows, column map and constant). Each call's rows depend on nothing but its own
        input rows, so the calls may run in any order, on any thread."""
        rows, nr = self.plan.rows, out.shape[1]
        chunk = self.chunk_rows(src.shape[0])
        row_map = maps.get("row_map")
        calls = []
        for r0 in range(0, nr, chunk):
            r1 = min(r0 + chunk, nr)
            p0, p1 = rows.stride * r0, rows.stride * (r1 - 1) + rows.span
            part = dict(maps, row_map=row_map[p0:p1]) if row_map is not None else maps
            band = src if row_map is not None else src[:, p0:p1]
            origin = rows.stride * (j0 + r0) + rows.offset
            calls.append(self.bind(band, out[:, r0:r1], origin, part, done))
        return calls

    def run_calls(self, calls: list[Callable[[], None]]) -> None:
        """The calls in turn; once ``stop`` is set the remaining ones are skipped."""
        for call in calls:
            if self.stop.is_set():
                return
            call()

    def __call__(self, buf: np.ndarray, views, out: np.ndarray, j0: int) -> None:
        self.run_calls(self.chunks(buf, out, j0, {}))


@functools.lru_cache(maxsize=64)
def _padding_map(first: int, count: int, n: int, padding: Padding, unit: int) -> np.ndarray:
    """The source position of padded positions ``first .. first+count-1`` of an axis of
    ``n`` (-1: the constant), whole pixels of ``unit`` samples: read-only, kept for the next
    call of the same geometry (a batch's images, a chain's steps: ~40 us a call saved)."""
    index = np.arange(first, first + count)
    if unit > 1:
        positions = column_sources(index, n, padding, unit)
    else:
        positions = source_positions(index, n, padding)
    positions.flags.writeable = False
    return positions


class CompiledDirect(Compiled):
    """``direct`` compiled: the whole tap list (folded mirror taps) per output block; on
    8-bit samples too, as :class:`CompiledSeparable`."""

    converts = True

    def __init__(self, plan: Plan, channels: int, workers: int, stop: threading.Event) -> None:
        self.weights = np.ascontiguousarray(plan.weights, dtype=np.float64)
        self.function, self.weight_arguments = "correlate_direct", (self.weights,)
        self.per_row = plan.cols.size * self.weights.size
        super().__init__(plan, channels, workers, stop)

    def options(self, origin: int) -> dict:
        return {"stream": self.stream, "real": self.plan.dtype.char}


class CompiledSeparable(Compiled):
    """``separable`` compiled: column pass into an L1 row buffer, then the row pass, fused.
    On 8-bit samples too: each padded row converted as it is copied into the kernel's ring
    of rows, each output row rounded to uint8 as it is stored (the same sums as on the
    image converted to floats first, so the same bytes)."""

    converts = True

    def __init__(self, plan: Plan, channels: int, workers: int, stop: threading.Event) -> None:
        assert plan.factors is not None, "the separable method is chosen only for a rank-1 plan"
        self.column, self.row = (np.ascontiguousarray(f, dtype=np.float64) for f in plan.factors)
        self.function, self.weight_arguments = "correlate_separable", (self.column, self.row)
        self.per_row = plan.col_count * self.column.size + plan.cols.size * self.row.size
        super().__init__(plan, channels, workers, stop)

    def wanted_rows(self, channels: int) -> int:
        return _separable_rows(self.plan, super().wanted_rows(channels))

    def options(self, origin: int) -> dict:
        return {"row_origin": origin, "real": self.plan.dtype.char}


class CompiledDirectU8(Compiled):
    """``direct`` on 8-bit samples, in integers: uint8 out = clip(rint(T * scale)), exact
    (the plan holds only kernels :func:`convtool.engine.integer.integer_weights` accepts)."""

    def __init__(self, plan: Plan, channels: int, workers: int, stop: threading.Event) -> None:
        form = integer_weights(plan.weights)
        assert form is not None, "the 8-bit method is chosen only for integer-form weights"
        ints, self.scale = form
        self.weights = np.ascontiguousarray(ints, dtype=np.int32)
        self.function, self.weight_arguments = "correlate_direct_u8", (self.weights, self.scale)
        self.per_row = plan.cols.size * self.weights.size
        super().__init__(plan, channels, workers, stop)


class CompiledSeparableU8(Compiled):
    """``separable`` on 8-bit samples: integer factors fused through an integer row buffer."""

    def __init__(self, plan: Plan, channels: int, workers: int, stop: threading.Event) -> None:
        assert plan.factors is not None, "the separable method is chosen only for a rank-1 plan"
        factors = integer_factors(plan.factors[0], plan.factors[1], plan.weights)
        assert factors is not None, "the 8-bit method is chosen only for integer-form factors"
        column, row, self.scale = factors
        self.column = np.ascontiguousarray(column, dtype=np.int32)
        self.row = np.ascontiguousarray(row, dtype=np.int32)
        self.function = "correlate_separable_u8"
        self.weight_arguments = (self.column, self.row, self.scale)
        self.per_row = plan.col_count * self.column.size + plan.cols.size * self.row.size
        super().__init__(plan, channels, workers, stop)


# ----------------------------------------------------------------------------- dispatch

METHOD_TABLE = {
    ("direct", "numpy"): NumpyDirect,
    ("separable", "numpy"): NumpySeparable,
    ("fft", "numpy"): FFT,
    ("direct", "compiled"): CompiledDirect,
    ("separable", "compiled"): CompiledSeparable,
    ("fft", "compiled"): FFT,
    ("direct", "uint8"): CompiledDirectU8,
    ("separable", "uint8"): CompiledSeparableU8,
}
"""(method, implementation) -> the class (or a ``prepare`` for it) computing its bands."""


def implementation_for(plan: Plan) -> str:
    """``uint8`` for an integer plan, ``compiled`` when the module runs this dtype, else ``numpy``."""
    if plan.dtype == np.uint8:
        return "uint8"
    if native.module() is not None and plan.dtype in (np.float32, np.float64):
        return "compiled"
    return "numpy"


def reads_straight(plan: Plan, method: str, dtype: np.dtype, rounded: bool) -> bool:
    """Whether ``method`` reads an image of ``dtype`` as it is and writes the call's
    outputs straight (rounded to uint8 when ``rounded``), with neither a band buffer nor a
    scratch array: an image of the plan's dtype into outputs of it, or a compiled method
    that converts 8-bit samples and rounds its outputs itself (``Compiled.converts``)."""
    if dtype == plan.dtype and (not rounded or plan.dtype == np.uint8):
        return True
    entry = METHOD_TABLE[(method, implementation_for(plan))]
    return getattr(entry, "converts", False) and dtype in (plan.dtype, np.uint8)


def prepare(
    plan: Plan,
    method: str,
    channels: int,
    workers: int,
    stop: threading.Event,
    in_place: bool = False,
    preallocated: bool = False,
) -> BandMethod:
    """The prepared band method for ``method`` on ``plan``, by :data:`METHOD_TABLE`.
    ``in_place``: the band method reads the caller's image and writes the output as they are
    (:func:`reads_straight`: no band buffer, no scratch array): a compiled method then takes
    taller bands (:meth:`Compiled.read_in_place`); ``preallocated``: into an array the
    caller made (``out=``), whose pages are not new."""
    key = (id(plan), method, channels, workers, in_place, preallocated)
    kept = _PREPARED.get(key)
    if kept is not None and kept[0] is plan:
        return kept[1].for_run(stop)
    entry = METHOD_TABLE[(method, implementation_for(plan))]
    make = getattr(entry, "prepare", entry)
    prepared = make(plan, channels, workers, stop)
    if isinstance(prepared, Compiled):
        if in_place:
            prepared.read_in_place(channels, workers, preallocated)
        _PREPARED.put(key, (plan, prepared))  # (the plan kept with it: its id stays its own)
    return prepared


# The compiled band methods of recent calls, by their plan (the plan object the engine's
# plan cache hands out again) and the rest of what shapes them: a frame loop's or a batch's
# calls of one size prepare their band method once (~25 us of a 1.2 ms float32 2048^2
# Sobel on 2 threads, its code cold after each image). The compiled methods hold nothing of
# a call's but ``stop`` (:meth:`Compiled.for_run`); the numpy ones hold band arrays.
_PREPARED: Recent[tuple, tuple[Plan, Compiled]] = Recent(32)

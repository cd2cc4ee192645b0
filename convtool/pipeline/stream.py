"""Filtering an image band by band: the bytes of the in-memory chain, in bounded memory.

A chain becomes a graph of *stages*, one per array the in-memory :class:`~.chain.Chain`
makes (each engine call, pooling, gradient combination, channel split and merge), each
producing rows of its ``(C, H, W)`` result on demand. The output is asked for a band of
rows at a time; each stage asks the one before it for the rows it reads, back to the
file, which is read block by block. So the halo is the *composed window* of the chain,
found by asking, not by a formula; for one step with a kernel ``K`` rows tall (``K`` the
dilated span ``(k-1)*d + 1``) and stride ``s``, output rows ``a..b-1`` read input rows
``s*a - c`` to ``s*(b-1) - c + K - 1`` (``c`` the centre row), rows beyond the image mapped
inside as the padding mode says (``wrap`` reads the other border); a pooling window of
``n`` rows with stride ``s`` reads ``s*a`` to ``s*(b-1) + n - 1``; ``-n`` repeats the chain.

Byte identity: every engine call is planned for its whole image (same shape, channels,
kernel, options and threads as in memory, so the same method and band grid) and computed
in whole bands of that grid (:mod:`convtool.engine.rows`), from real neighbouring rows
inside the image and the padding mode at its border. Pooling, channel mixing and the
gradient norms work pixel by pixel or window by window and do not depend on the band.

Each stage keeps the bands (or file blocks) of its latest request, so consecutive output
bands share their halo rows instead of computing them again. What that holds is what a
chain costs: for each stage about three times its requested rows (the band asked for, plus
the halo still to come, plus a band of the grid on each side), the engine's bands in flight,
and the file's blocks — see :func:`convtool.pipeline.memory.stream_peak_bytes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from convtool.engine.rows import RowPlan, Rows, carry_maps, plan_rows, row_ranges
from convtool.errors import UsageError
from convtool.padding import Padding
from convtool.pipeline.chain import (
    RGB_TO_YCBCR,
    YCBCR_TO_RGB,
    Chain,
    _require_finite,
    mix_channels,
)
from convtool.pipeline.steps import (
    ConvolveStep,
    FilterOptions,
    GradientStep,
    PoolStep,
    _check_weights_fit,
    combine_gradients,
    pool,
)

__all__ = ["Graph", "Held", "Source", "Stage", "build", "build_on", "engine_graph", "unsupported"]


# ----------------------------------------------------------------------------- stages


class Stage:
    """Rows of a ``(channels, height, width)`` stack, made on demand.

    ``get(rows)`` (sorted distinct row numbers) returns a new ``(channels, len(rows),
    width)`` array; ``needs(rows)`` says what that asks of each stage before it.
    """

    channels: int
    height: int
    width: int
    dtype: np.dtype
    upstream: tuple[Stage, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def get(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def needs(self, rows: np.ndarray) -> list[tuple[Stage, np.ndarray]]:
        return [(stage, rows) for stage in self.upstream]


class _Blocks:
    """Rows computed in whole blocks of ``block`` rows, kept while the latest request needs them."""

    def __init__(self, block: int, size: int) -> None:
        self.block, self.size = block, size
        self.held: dict[int, np.ndarray] = {}

    def get(self, rows: np.ndarray, compute: Callable) -> np.ndarray:
        """``rows`` from the blocks; ``compute(spans)`` makes the missing runs of blocks."""
        block = self.block
        wanted = [int(k) for k in np.unique(rows // block)]
        # Blocks this request does not need will not be asked for again: drop them first.
        self.held = {k: self.held[k] for k in wanted if k in self.held}
        missing = [k for k in wanted if k not in self.held]
        spans = [(k0 * block, min(k1 * block, self.size)) for k0, k1 in _runs(missing)]
        if spans:
            for (start, stop), out in zip(spans, compute(spans), strict=True):
                for k in range(start // block, -(-stop // block)):
                    low, high = k * block - start, min((k + 1) * block, stop) - start
                    self.held[k] = out[:, low:high]
        parts = []
        for k in wanted:
            inside = rows[(rows >= k * block) & (rows < (k + 1) * block)] - k * block
            part = self.held[k]
            if inside.size == part.shape[1]:
                parts.append(part)
            elif inside[-1] - inside[0] + 1 == inside.size:
                parts.append(part[:, inside[0] : inside[-1] + 1])
            else:
                parts.append(part[:, inside])
        return np.concatenate(parts, axis=1)  # a copy: callers may write into it


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    return row_ranges(np.asarray(numbers, dtype=np.intp))


def _empty(stage: Stage) -> np.ndarray:
    return np.empty((stage.channels, 0, stage.width), stage.dtype)


class Source(Stage):
    """The image as read: ``read(start, stop)`` gives rows as a ``(C, rows, W)`` stack.

    The file is read in blocks of ``block_rows`` (its tile or strip height), each once
    while the requests need it.
    """

    def __init__(self, read, shape, dtype, block_rows: int) -> None:
        self.read = read
        self.channels, self.height, self.width = shape
        self.dtype = np.dtype(dtype)
        self.block_rows = max(1, int(block_rows))
        self.blocks = _Blocks(self.block_rows, self.height)
        self.raw_row_bytes: int | None = None  # a row as stored (None: as in memory)

    def get(self, rows: np.ndarray) -> np.ndarray:
        if rows.size == 0:
            return _empty(self)
        return self.blocks.get(rows, lambda spans: [self.read(a, b) for a, b in spans])


class Held(Stage):
    """Rows already in memory: ``data[:, i]`` is row ``index[i]`` (a Dask chunk and its halo)."""

    def __init__(self, data: np.ndarray, index, height: int) -> None:
        self.data, self.index = data, np.asarray(index, dtype=np.intp)
        self.channels, self.height, self.width = data.shape[0], int(height), data.shape[2]
        self.dtype = data.dtype

    def get(self, rows: np.ndarray) -> np.ndarray:
        return Rows(self.data, self.index, self.height)[:, rows]


class Engine(Stage):
    """One engine call (:class:`~convtool.engine.rows.RowPlan`), computed in whole bands."""

    def __init__(self, upstream: Stage, call: RowPlan, offset: float = 0.0) -> None:
        self.upstream = (upstream,)
        self.call, self.offset = call, offset
        self.channels, self.height, self.width = call.shape
        self.dtype = call.plan.dtype
        self.threads: int | None = None  # threads for each piece (default: the plan's)
        self.blocks = _Blocks(call.band, self.height)

    def needs(self, rows: np.ndarray) -> list[tuple[Stage, np.ndarray]]:
        need = [self.call.input_rows(a, b) for a, b in row_ranges(rows)]
        return [(self.upstream[0], _union(need))]

    def get(self, rows: np.ndarray) -> np.ndarray:
        return self.blocks.get(rows, self._compute)

    def _compute(self, spans: list[tuple[int, int]]) -> list[np.ndarray]:
        (upstream,) = self.upstream
        need = _union([self.call.input_rows(a, b) for a, b in spans])
        source = Rows(upstream.get(need), need, upstream.height)
        outs = [self.call.run(source, a, b, self.threads) for a, b in spans]
        if self.offset:  # libvips .mat files add a constant after the weighted sum
            for out in outs:
                out += self.offset
        return outs


def _union(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.empty(0, np.intp)
    return np.unique(np.concatenate(parts)) if len(parts) > 1 else parts[0]


class Pool(Stage):
    """Max or average pooling (:func:`~.steps.pool`) over windows of whole input rows."""

    def __init__(self, upstream: Stage, kind: str, size, stride) -> None:
        pool(np.empty((0, *upstream.shape[1:]), upstream.dtype), kind, size, stride)  # its checks
        self.upstream = (upstream,)
        self.kind, self.size, self.stride = kind, tuple(size), tuple(stride)
        self.channels, self.dtype = upstream.channels, upstream.dtype
        self.height = (upstream.height - size[0]) // stride[0] + 1
        self.width = (upstream.width - size[1]) // stride[1] + 1

    def _spans(self, rows: np.ndarray) -> list[tuple[int, int, int, int]]:
        step, size = self.stride[0], self.size[0]
        return [(a, b, step * a, step * (b - 1) + size) for a, b in row_ranges(rows)]

    def needs(self, rows: np.ndarray) -> list[tuple[Stage, np.ndarray]]:
        spans = self._spans(rows)
        return [(self.upstream[0], _union([np.arange(x, y) for _, _, x, y in spans]))]

    def get(self, rows: np.ndarray) -> np.ndarray:
        if rows.size == 0:
            return _empty(self)
        spans = self._spans(rows)
        need = _union([np.arange(x, y) for _, _, x, y in spans])
        data = self.upstream[0].get(need)
        outs = []
        for _, _, x, y in spans:
            at = int(np.searchsorted(need, x))
            outs.append(pool(data[:, at : at + y - x], self.kind, self.size, self.stride))
        return np.concatenate(outs, axis=1)


class Carry(Stage):
    """A stage moved as a filter moves its input, without mixing pixels (alpha, channels
    left unfiltered): :func:`convtool.engine.carry`, row by row (:func:`carry_maps`)."""

    def __init__(self, upstream: Stage, kernel_shape, **geometry) -> None:
        self.upstream = (upstream,)
        kernel = np.empty(kernel_shape)  # only the shape matters
        self.rows, self.cols, self.cval = carry_maps(upstream.shape[1:], kernel, **geometry)
        self.channels, self.dtype = upstream.channels, upstream.dtype
        self.height, self.width = self.rows.size, self.cols.size

    def needs(self, rows: np.ndarray) -> list[tuple[Stage, np.ndarray]]:
        source = self.rows[rows]
        return [(self.upstream[0], np.unique(source[source >= 0]))]

    def get(self, rows: np.ndarray) -> np.ndarray:
        source = self.rows[rows]
        need = np.unique(source[source >= 0])
        if need.size:
            data = self.upstream[0].get(need)
            out = np.take(data, np.searchsorted(need, np.maximum(source, 0)), axis=1)
        else:  # every row is the constant (a full padding's ring)
            out = np.empty((self.channels, rows.size, self.upstream[0].width), self.dtype)
        if (source < 0).any():
            out[:, source < 0] = self.cval
        out = np.take(out, np.maximum(self.cols, 0), axis=2)
        if (self.cols < 0).any():
            out[:, :, self.cols < 0] = self.cval
        return out


class Select(Stage):
    """Some channels of a stage, in the order given."""

    def __init__(self, upstream: Stage, channels) -> None:
        self.upstream = (upstream,)
        self.picked = list(channels)
        self.channels, self.height, self.width = len(self.picked), upstream.height, upstream.width
        self.dtype = upstream.dtype

    def get(self, rows: np.ndarray) -> np.ndarray:
        return self.upstream[0].get(rows)[self.picked]


class Map(Stage):
    """A pixel-by-pixel function of stages of one geometry (``channels`` out)."""

    def __init__(self, function, *upstream: Stage, channels: int | None = None) -> None:
        self.upstream = upstream
        self.function = function
        first = upstream[0]
        self.channels = first.channels if channels is None else channels
        self.height, self.width, self.dtype = first.height, first.width, first.dtype

    def get(self, rows: np.ndarray) -> np.ndarray:
        return self.function(*(stage.get(rows) for stage in self.upstream))


def _concat(*stacks: np.ndarray) -> np.ndarray:
    return np.concatenate(stacks, axis=0)


def _merge(picked, kept):
    def merge(filtered: np.ndarray, carried: np.ndarray) -> np.ndarray:
        out = np.empty((len(picked) + len(kept), *filtered.shape[1:]), filtered.dtype)
        out[list(picked)], out[list(kept)] = filtered, carried
        return out

    return merge


# ----------------------------------------------------------------------------- the graph


@dataclass
class Graph:
    """The stages that make an image's colour (``(C, H, W)``) and alpha (``(1, H, W)`` or None)."""

    colour: Stage
    alpha: Stage | None
    source: Stage

    @property
    def height(self) -> int:
        return self.colour.height

    @property
    def width(self) -> int:
        return self.colour.width

    @property
    def channels(self) -> int:
        return self.colour.channels

    def stages(self) -> list[Stage]:
        """Every stage once, each before the stages it reads (outputs first)."""
        order: list[Stage] = []
        seen: set[int] = set()

        def visit(stage: Stage) -> None:
            if id(stage) in seen:
                return
            seen.add(id(stage))
            for up in stage.upstream:
                visit(up)
            order.append(stage)

        for out in (self.colour, self.alpha):
            if out is not None:
                visit(out)
        return order[::-1]

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Output rows ``start..stop-1``: colour ``(rows, W, C)`` and alpha ``(rows, W)``."""
        rows = np.arange(start, stop)
        colour = np.ascontiguousarray(np.moveaxis(self.colour.get(rows), 0, -1))
        alpha = None if self.alpha is None else self.alpha.get(rows)[0]
        return colour, alpha

    def bands(self, band_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """The whole output, top to bottom, ``band_rows`` rows at a time."""
        for start in range(0, self.height, band_rows):
            yield self.rows(start, min(start + band_rows, self.height))

    def asked(self, rows: np.ndarray) -> dict[int, np.ndarray]:
        """The rows each stage (by ``id``) is asked for when output ``rows`` are made
        (an upper bound: as if nothing were kept from an earlier band)."""
        asked: dict[int, list[np.ndarray]] = {id(self.colour): [rows]}
        if self.alpha is not None:
            asked.setdefault(id(self.alpha), []).append(rows)
        found: dict[int, np.ndarray] = {}
        for stage in self.stages():
            wanted = _union(asked.pop(id(stage), []))
            found[id(stage)] = wanted
            if wanted.size:
                for up, need in stage.needs(wanted):
                    asked.setdefault(id(up), []).append(need)
        return found

    def requested_rows(self, band_rows: int) -> dict[int, int]:
        """The most rows each stage (by ``id``) is asked for by one output band.

        Found by asking (:meth:`asked`) for the first, middle and last bands (the borders
        reach across with ``wrap``, the middle has the whole halo).
        """
        starts = list(range(0, self.height, band_rows))
        sample = sorted({*starts[:2], starts[len(starts) // 2], *starts[-2:]})
        most: dict[int, int] = {}
        for start in sample:
            rows = np.arange(start, min(start + band_rows, self.height))
            for key, wanted in self.asked(rows).items():
                most[key] = max(most.get(key, 0), wanted.size)
        return most

    def set_threads(self, threads: int | None) -> None:
        """Run every engine piece on ``threads`` threads (the band grid stays the plan's)."""
        for stage in self.stages():
            if isinstance(stage, Engine):
                stage.threads = threads


def unsupported(chain: Chain) -> str | None:
    """Why ``chain`` cannot be applied band by band, or None when it can."""
    if chain.stack:
        return "--stack (a filter bank of whole-image results) does not stream"
    if chain.options.transposed:
        return "--transposed inserts pixels between rows, so it does not stream"
    for step in chain.steps:
        if not isinstance(step, ConvolveStep | GradientStep | PoolStep):
            return f"step {getattr(step, 'spec', '') or type(step).__name__} does not stream"
    return None


def build(
    chain: Chain,
    read: Callable[[int, int], tuple[np.ndarray, np.ndarray | None]],
    shape: tuple[int, int, int],
    has_alpha: bool,
    dtype,
    *,
    block_rows: int = 64,
    source: str | None = None,
    check_finite: bool = True,
) -> Graph:
    """The graph that applies ``chain`` to an image read by ``read(start, stop)``.

    ``read`` gives rows as :func:`convtool.images.read_band` does (pixels ``(rows, W, C)``
    and alpha ``(rows, W)`` or None); ``shape`` is the image's ``(H, W, C)``, colour
    channels only. Rows with NaN or infinity are refused as :meth:`Chain.apply` refuses
    them (when they are read; ``check_finite`` False skips that for integer files). ``--alpha weighted`` divides by a tolerance taken from the
    whole image, so it does not stream (a UsageError).
    """
    height, width, channels = shape

    def read_stack(start: int, stop: int) -> np.ndarray:
        pixels, alpha = read(start, stop)
        if check_finite:
            _require_finite(pixels, alpha, source)
        stack = np.moveaxis(pixels, -1, 0)
        if alpha is not None:
            return np.concatenate([stack, alpha[np.newaxis].astype(stack.dtype)], axis=0)
        return np.ascontiguousarray(stack)

    file = Source(read_stack, (channels + has_alpha, height, width), dtype, block_rows)
    return build_on(chain, file, channels, has_alpha)


def build_on(chain: Chain, file: Stage, channels: int, has_alpha: bool) -> Graph:
    """The graph of ``chain`` over a stage giving the image's colour channels and, when
    ``has_alpha``, alpha as one more channel (see :func:`build`)."""
    reason = unsupported(chain)
    if reason is not None:
        raise UsageError(reason)
    stack: Stage = Select(file, range(channels)) if has_alpha else file
    alpha: Stage | None = Select(file, [channels]) if has_alpha else None
    luma = chain.channels == "luma" and channels == 3
    if luma:
        stack = Map(_mix(RGB_TO_YCBCR), stack)
    picked = chain._picked(channels, luma)
    kept = [c for c in range(channels) if c not in picked]
    everything = len(picked) == channels
    filtered, alpha = _run(chain, stack if everything else Select(stack, picked), alpha)
    if kept:
        carried: Stage = Select(stack, kept)
        for _ in range(chain.iterations):
            for step in chain.steps:
                carried = _carry(step, carried, chain.options)
        filtered = Map(_merge(picked, kept), filtered, carried, channels=channels)
    if luma:
        filtered = Map(_mix(YCBCR_TO_RGB), filtered)
    return Graph(filtered, alpha, file)


def _mix(matrix: np.ndarray):
    def mix(stack: np.ndarray) -> np.ndarray:
        return mix_channels(matrix, stack)

    return mix


def _run(chain: Chain, stack: Stage, alpha: Stage | None) -> tuple[Stage, Stage | None]:
    """:meth:`Chain._run` as stages."""
    if alpha is not None and chain.alpha_mode == "weighted":
        raise UsageError(
            "--alpha weighted needs the whole image (its tolerance comes from all of the "
            "filtered alpha), so it does not stream; use --alpha carry or filter"
        )
    alpha_in_stack = alpha is not None and chain.alpha_mode == "filter"
    if alpha is not None and alpha_in_stack:
        stack = Map(_concat, stack, alpha, channels=stack.channels + 1)
        alpha = None
    for _ in range(chain.iterations):
        for step in chain.steps:
            stack = _apply(step, stack, chain.options)
            if alpha is not None:
                alpha = _carry_alpha(step, alpha, chain.options)
    if alpha_in_stack:
        count = stack.channels
        stack, alpha = Select(stack, range(count - 1)), Select(stack, [count - 1])
    return stack, alpha


def _filter_stage(stage: Stage, kernel, options: FilterOptions) -> Engine:
    """:func:`~.steps._filter` as a stage."""
    if options.normalize:
        kernel = kernel.normalized()
    _check_weights_fit(kernel, stage.dtype)
    call = plan_rows(
        stage.shape, kernel, correlate=options.correlate, dtype=stage.dtype,
        **options.engine_args(),
    )  # fmt: skip
    return Engine(stage, call, kernel.offset)


def _apply(step, stage: Stage, options: FilterOptions) -> Stage:
    if isinstance(step, ConvolveStep):
        return _filter_stage(stage, step.kernel, options)
    if isinstance(step, GradientStep):
        gx = _filter_stage(stage, step.kx, options)
        gy = _filter_stage(stage, step.ky, options)
        return Map(lambda x, y, norm=step.norm: combine_gradients(x, y, norm), gx, gy)
    if isinstance(step, PoolStep):
        return Pool(stage, step.kind, step.size, step.stride)
    raise UsageError(f"step {getattr(step, 'spec', step)!r} cannot be applied band by band")


def _carry(step, stage: Stage, options: FilterOptions) -> Stage:
    """``step.carry`` as a stage: the step's geometry without its filter (channels left
    unfiltered; for a pooling step, the value at each window's centre)."""
    if isinstance(step, PoolStep):
        return Carry(stage, step.size, convolve=False, padding=Padding.VALID, stride=step.stride)
    kernel = step.kx if isinstance(step, GradientStep) else step.kernel
    return Carry(
        stage, kernel.shape, convolve=not options.correlate, padding=options.padding,
        cval=options.cval, stride=options.stride, dilation=options.dilation, origin=kernel.origin,
    )  # fmt: skip


def _carry_alpha(step, stage: Stage, options: FilterOptions) -> Stage:
    """``step.carry_alpha`` as a stage: alpha is pooled by a pooling step, else carried."""
    if isinstance(step, PoolStep):
        return Pool(stage, step.kind, step.size, step.stride)
    return _carry(step, stage, options)


def engine_graph(
    read: Callable[[int, int], np.ndarray],
    shape: tuple[int, int, int],
    dtype,
    call: RowPlan,
    *,
    block_rows: int = 64,
) -> Graph:
    """One engine call over a ``(C, H, W)`` stack read by ``read(start, stop)``."""
    if tuple(call.input_shape) != tuple(shape):
        raise UsageError(f"the call is planned for {call.input_shape}, not {shape}")
    file = Source(read, shape, dtype, block_rows)
    return Graph(Engine(file, call), None, file)

"""Filtering an image band by band: the bytes of the in-memory chain, in bounded memory.

A chain becomes a graph of *stages* (:mod:`convtool.pipeline.stages`), one per array the in-memory :class:`~.chain.Chain`
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
and the file's blocks — see :func:`convtool.pipeline.stream_memory.stream_peak_bytes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from convtool.engine import schedule
from convtool.engine.rows import RowPlan, plan_rows
from convtool.errors import UsageError
from convtool.padding import Padding
from convtool.pipeline.chain import Chain, _require_finite
from convtool.pipeline.channels import RGB_TO_YCBCR, YCBCR_TO_RGB, mix_channels
from convtool.pipeline.stages import (
    Carry,
    Engine,
    Held,
    Map,
    Pool,
    Select,
    Source,
    Stage,
    union_rows,
)
from convtool.pipeline.steps import (
    ConvolveStep,
    FilterOptions,
    GradientStep,
    PoolStep,
    _check_weights_fit,
    combine_gradients,
)

__all__ = [
    "Engine",
    "Graph",
    "Held",
    "Source",
    "Stage",
    "build",
    "build_on",
    "engine_graph",
    "unsupported",
]


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

    def bands(
        self, band_rows: int, ahead: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """The whole output, top to bottom, ``band_rows`` rows at a time. ``ahead``: each
        next band is made on a thread of its own while the caller uses the one before."""
        if ahead:
            yield from schedule.made_ahead(self.bands(band_rows), "bands")
            return
        try:
            for start in range(0, self.height, band_rows):
                yield self.rows(start, min(start + band_rows, self.height))
        finally:
            self.finish()

    def finish(self) -> None:
        """Wait for what the file's stage reads ahead (:meth:`Source.finish`): once this
        returns, nothing reads the file any more, and it may be closed."""
        if isinstance(self.source, Source):
            self.source.finish()

    def asked(self, rows: np.ndarray) -> dict[int, np.ndarray]:
        """The rows each stage (by ``id``) is asked for when output ``rows`` are made
        (an upper bound: as if nothing were kept from an earlier band)."""
        asked: dict[int, list[np.ndarray]] = {id(self.colour): [rows]}
        if self.alpha is not None:
            asked.setdefault(id(self.alpha), []).append(rows)
        found: dict[int, np.ndarray] = {}
        for stage in self.stages():
            wanted = union_rows(asked.pop(id(stage), []))
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

    shape = (channels + has_alpha, height, width)
    file = Source(read_stack, shape, dtype, block_rows, read_ahead=True)
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

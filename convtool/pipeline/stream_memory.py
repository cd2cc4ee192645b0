"""Memory when streaming: the peak bytes of a band height, and the band height that fits.

An image filtered band by band (:mod:`convtool.pipeline.stream`) needs memory for its bands,
not for the image: :func:`stream_peak_bytes` prices a band height from what each stage of
the graph (:mod:`convtool.pipeline.stages`) is asked for, and :func:`stream_band_rows` picks
the tallest band that fits. One engine call's bands in flight are priced from its
:class:`~convtool.engine.rows.RowPlan`; what is available is :mod:`convtool.resources`'.
"""

from __future__ import annotations

from convtool.engine.memory import next_fast_len
from convtool.errors import ResourceLimitError
from convtool.pipeline.stages import Engine, Source
from convtool.resources import HEADROOM, MEMORY_ENV, format_bytes

__all__ = ["STREAM_BAND_BYTES", "stream_band_rows", "stream_peak_bytes"]


# A streamed output band is about this large in the working precision (colour channels x
# width x rows): above it, larger bands only add memory (the engine's own bands, not the
# stream's, keep the threads busy). 3000x20000 grey, gaussian sigma=3, 2 threads: bands of
# 32, 64, 128, 256, 512 rows (2.5 to 40 MiB) took 1.60, 1.30, 1.25, 1.44, 1.35 s.
# 16 MiB is 104 rows of a 40 000-pixel-wide grey image.
STREAM_BAND_BYTES = 16 << 20


def stream_peak_bytes(graph, band_rows: int, *, out_itemsize: int = 4, tile_rows: int = 256) -> int:
    """Peak bytes to stream ``graph`` in output bands of ``band_rows`` rows (an upper bound).

    For each stage, from the most rows one band asks of it (:meth:`Graph.requested_rows`,
    which includes the halo and the engine's band grid): twice those rows (what it makes or
    keeps from the last band, and the copy it hands on) and two blocks of its grid on either
    side, plus its engine bands in flight; the file's raw blocks, and as many again read
    ahead (:class:`~convtool.pipeline.stages.Source`); and the writer's samples
    (``out_itemsize`` each) regrouped into tiles of ``tile_rows``, for the band being
    written, the one converted beside it and the one filtered beside that.
    """
    most = graph.requested_rows(band_rows)
    total = 0
    for stage in graph.stages():
        rows = most.get(id(stage), 0)
        row_bytes = stage.channels * stage.width * stage.dtype.itemsize
        if isinstance(stage, Engine):
            total += (2 * rows + 4 * stage.call.band) * row_bytes + _bands_in_flight(stage.call)
        elif isinstance(stage, Source):
            raw = stage.raw_row_bytes or row_bytes
            total += (2 * rows + 4 * stage.block_rows) * row_bytes + 2 * stage.block_rows * raw
            if stage.read_ahead:  # the blocks past a band, read while it is filtered
                total += (rows + stage.block_rows) * (row_bytes + raw)
        else:
            total += 2 * rows * row_bytes
    out = graph.colour
    samples = out.width * (out.channels + (graph.alpha is not None))
    pixels = band_rows * samples
    # the band written (its samples), the one converted (float and samples) and the one
    # filtered beside them, handed on (batch.streaming: made ahead on threads of their own)
    total += pixels * (3 * out.dtype.itemsize + 2 * out_itemsize)
    total += 3 * max(tile_rows, band_rows) * samples * out_itemsize
    return total


def _bands_in_flight(call) -> int:
    """Bytes of the engine bands one call computes at once: its threads' band arrays."""
    plan, band = call.plan, call.band
    rows, itemsize = plan.rows, plan.dtype.itemsize
    in_flight = min(call.workers, -(-rows.size // band))
    buffer = call.channels * (rows.stride * (band - 1) + rows.span) * plan.col_count * itemsize
    if call.method != "fft":
        return in_flight * call.copies * buffer
    fft_h = next_fast_len(rows.stride * (band - 1) + rows.span)
    fft_w = next_fast_len(plan.col_count)
    half = fft_h * (fft_w // 2 + 1)
    per_band = buffer + call.channels * (2 * fft_h * fft_w * itemsize + half * 2 * itemsize)
    return half * 2 * itemsize + in_flight * per_band


def stream_band_rows(
    graph, available: int | None, *, out_itemsize: int = 4, source: str | None = None
) -> int:
    """The output band height to stream ``graph`` with: the tallest that fits ``available``.

    Bands are at most :data:`STREAM_BAND_BYTES` (and the image); they are halved until the
    estimate (:func:`stream_peak_bytes`) plus :data:`HEADROOM` fits. ``available`` None:
    no limit. When not even one row a band fits, :class:`ResourceLimitError` says so.
    """
    out = graph.colour
    row_bytes = out.channels * out.width * out.dtype.itemsize
    rows = max(1, min(graph.height, STREAM_BAND_BYTES // max(1, row_bytes)))
    if available is None:
        return rows
    while True:
        need = stream_peak_bytes(graph, rows, out_itemsize=out_itemsize)
        if need + HEADROOM <= available or rows == 1:
            break
        rows = max(1, rows // 2)
    if need + HEADROOM > available:
        raise ResourceLimitError(
            f"even band by band this needs about {format_bytes(need + HEADROOM)} of memory (one band of "
            f"rows for each step of the chain, with its halo), more than the "
            f"{format_bytes(available)} available; try fewer steps or --iterations, a smaller "
            f"kernel or --dilation ({MEMORY_ENV}=0 skips this check)",
            path=source,
        )
    return rows

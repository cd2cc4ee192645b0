"""Filtering a dask array: :func:`convolve`, :func:`correlate` and :func:`filter_image`.

Each wraps its arguments in a spec (:mod:`convtool.dask.chunks`) and maps it over chunks of
whole rows; the result is a lazy dask array, byte for byte the in-memory call's.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from convtool.dask.chunks import ChainSpec, EngineSpec, grid_threads, map_rows, resolved
from convtool.errors import UsageError
from convtool.padding import Padding

__all__ = ["convolve", "correlate", "filter_image"]


def convolve(
    array,
    kernel,
    *,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    method: str = "auto",
    threads: int | None = None,
    chunk_rows: int | None = None,
):
    """:func:`convtool.convolve` of the last two axes of a dask array, as a dask array.

    Arguments as for :func:`convtool.convolve`. ``threads`` fixes the engine's band grid as
    it does in memory (default: this machine's CPUs), so results match a local call with
    the same ``threads``; each chunk runs on one thread of its worker. ``chunk_rows``:
    output rows per chunk (default: about 64 MiB of results).
    """
    spec = EngineSpec(
        kernel, True, padding, cval, stride, dilation, origin, method, grid_threads(threads)
    )
    return map_rows(da.asarray(array), spec, chunk_rows)


def correlate(
    array,
    kernel,
    *,
    padding: Padding | str = Padding.REFLECT,
    cval: float = 0.0,
    stride=1,
    dilation=1,
    origin=None,
    method: str = "auto",
    threads: int | None = None,
    chunk_rows: int | None = None,
):
    """:func:`convtool.correlate` of a dask array (the kernel as written); see :func:`convolve`."""
    spec = EngineSpec(
        kernel, False, padding, cval, stride, dilation, origin, method, grid_threads(threads)
    )
    return map_rows(da.asarray(array), spec, chunk_rows)


def filter_image(
    array,
    chain,
    *,
    has_alpha: bool = False,
    depth: int | str | None = None,
    precision: str = "single",
    gray: bool = False,
    chunk_rows: int | None = None,
):
    """Apply a :class:`~convtool.pipeline.Chain` to an image held as a dask array.

    ``array``: samples ``(H, W)`` or ``(H, W, C)`` as a file holds them (alpha the last
    channel when ``has_alpha``), e.g. ``da.from_zarr``. They become floats as
    :func:`convtool.read_image` makes them (``depth`` 8, 16, 32 or ``"float"``: the value
    scale, by default from the dtype; ``precision``; ``gray``). Returns the filtered
    ``(H', W', C)`` floats, with the carried (or filtered) alpha as one more last channel,
    as :meth:`Chain.apply` gives pixels and alpha.
    """
    x = da.asarray(array)
    if x.ndim == 2:
        x = x[:, :, np.newaxis]
    if x.ndim != 3 or not 1 <= x.shape[2] <= 4:
        raise UsageError(f"filter_image needs (H, W) or (H, W, C) samples, got shape {x.shape}")
    if depth is None:
        from convtool.images.decoded import depth_of_dtype

        depth = 8 if x.dtype == np.bool_ else depth_of_dtype(x.dtype)
    spec = ChainSpec(resolved(chain), has_alpha, depth, precision, gray, None)
    return map_rows(x, spec, chunk_rows)

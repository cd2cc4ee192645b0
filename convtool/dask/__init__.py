"""One image across a Dask cluster: chunks of rows with ``dask.array.map_overlap``.

    import dask.array as da
    import convtool, convtool.dask

    x = da.from_zarr("big.zarr")                                  # (H, W) or (..., H, W)
    y = convtool.dask.convolve(x, convtool.get_kernel("gaussian:sigma=3"))
    y.to_zarr("out.zarr")                                         # == convtool.convolve(x)

The result is byte for byte that of the in-memory call (:func:`convtool.convolve`, or a
:class:`~convtool.pipeline.Chain` for :func:`filter_image`). The array is cut into chunks
of whole rows (all columns and channels in each, so every engine call is planned as the
whole image's); each chunk is filtered by convtool's engine from its rows and a halo of
neighbouring ones. The halo (``depth``) is what the chunk's output rows read through the
whole chain, with the engine's band grid (:mod:`convtool.pipeline.stream`): real
neighbours inside the image, and at its border ``boundary="none"`` so that convtool applies
its own padding mode exactly (``"periodic"`` for ``wrap``, whose border reads the other
side). No worker holds more than its chunks.

The package: :mod:`~convtool.dask.arrays` (dask arrays in, dask arrays out),
:mod:`~convtool.dask.chunks` (what a chunk runs, and where the chunks are cut) and
:mod:`~convtool.dask.files` (one image file into a zarr store, for ``--dask``).

Needs ``dask`` (``pip install "convtool[dask]"``); imported when this package is.
"""

from __future__ import annotations

from convtool.errors import UsageError

try:
    import dask.array  # noqa: F401 - refused here, before any module of the package needs it
except ImportError:  # pragma: no cover - the message is the point
    raise UsageError("convtool.dask needs dask: pip install 'convtool[dask]'") from None

from convtool.dask.arrays import convolve, correlate, filter_image
from convtool.dask.chunks import plan_chunks
from convtool.dask.files import filter_file

__all__ = ["convolve", "correlate", "filter_file", "filter_image", "plan_chunks"]

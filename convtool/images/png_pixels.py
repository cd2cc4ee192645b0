"""A PNG's samples decoded here: the stream inflated by ISA-L (or zlib), rows unfiltered in C.

For the PNGs most files are (8 or 16 bits of grey, grey + alpha, RGB or RGBA, not
interlaced, no palette or transparent colour) this is about a third faster than libspng,
which inflates with zlib (measured in the README), and the inflated stream may already be
waiting: :mod:`convtool.images.readahead` inflates a command's one input on a thread while
the interpreter imports numpy. Anything else, or a damaged file, is declined (None) and
decoded by libspng or Pillow as before; without the compiled module (no compiler at
install) every PNG is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convtool.images import readahead
from convtool.images.png_stream import idat_stream, inflate, read_header

__all__ = ["decode_samples"]


def decode_samples(data: bytes) -> np.ndarray | None:
    """The samples ``(H, W, C)`` (uint8, or native uint16) of the PNG *data*, or None."""
    unfilter = _unfilter()
    header = read_header(data)
    if unfilter is None or header is None:
        return None
    raw = readahead.inflated(data)
    if raw is None:
        stream = idat_stream(data)
        raw = None if stream is None else inflate(stream, header.stream_bytes)
    if raw is None:
        return None
    dtype = np.uint8 if header.bits == 8 else np.dtype(">u2")
    samples = np.empty((header.height, header.width, header.channels), dtype)
    try:
        unfilter(raw, samples.reshape(-1).view(np.uint8), header.height, header.row_bytes,
                 header.pixel_bytes)  # fmt: skip
    except ValueError:  # a filter type over 4: libspng or Pillow says what is wrong
        return None
    return samples if header.bits == 8 else samples.astype(np.uint16)


def _unfilter() -> Any:
    """The compiled row unfiltering, or None where it was not built."""
    try:
        from convtool.images._png import unfilter
    except ImportError:
        return None
    return unfilter

"""ZNCC score maps tile by tile: FFT correlation, window sums and scores while a tile is in cache.

OpenCV's ``matchTemplate`` computes the correlation by DFTs over tiles (``crossCorr``) and the
window sums from integral images. Here the valid score map is cut into equal tiles
(:func:`plan_tiles`, from the shapes alone) and each tile goes through every step at once, on
one thread: its input rows, centred and converted to float64 in one pass, fill a transform
buffer; the buffer is correlated with the zero-mean template by one real 2-D FFT each way
(overlap-save: the buffer is ``h - 1`` rows and ``w - 1`` columns larger than the tile, so
nothing wraps into the kept outputs, and the inverse's last pass makes only the kept rows);
then the compiled ``zncc_tile`` (``engine/_native_match.h``) makes the window sums and sums
of squares by running sums and writes the scores, in one pass, or without the compiled
module numpy's blocked prefix sums and score arithmetic do. No array of the image's size is
made but the score map itself.

Everything is float64: a float32 transform's rounding is relative to the whole tile's
energy, not to one window's, so a low-contrast window beside bright ones would lose its
score's digits; with float64 the numerator's error stays ~1e-12 of a score.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable

import numpy as np

from convtool.engine import native
from convtool.engine.schedule import share_work

# Transforms of at most this many samples (4 MiB of float64 input). Measured on a 1024x1024
# scene, one thread, CPU time per call (a shared machine: +-10%): a 32x32 template costs 1.5x
# as much in 540x540 tiles as in 288x288 ones (the transforms leave the L2 cache), and a
# 128x128 one 10% more in 360x360 tiles than in 576x576 ones (its 127 overlap rows and
# columns are a larger share of a small tile); one transform of the whole scene (2^20
# samples) costs 1.3-1.5x as much as the best tiles.
MAX_TRANSFORM = 1 << 19
# Larger transforms cost more per sample than their log2 says (cache): the cost model's
# factor 1 + samples / CACHE_SAMPLES, which makes it choose the measured best tiles above.
CACHE_SAMPLES = 1 << 20
# The fixed cost of one tile (Python calls, its buffers) in the units of the cost model
# (samples x log2 samples of its transform: 65536 x 16 of them take ~0.4 ms).
TILE_OVERHEAD = 100_000


@functools.lru_cache(maxsize=64)
def plan_tiles(rows: int, cols: int, h: int, w: int) -> tuple[int, int, int, int]:
    """(output rows, output columns, transform rows, transform columns) of a tile.

    The cheapest grid of equal tiles by a cost model of ``a*b*log2(a*b)`` per ``a x b``
    transform (times the cache factor) plus a fixed cost per tile, among transforms of fast
    lengths (scipy's ``next_fast_len``) of at most MAX_TRANSFORM samples (or, for a template
    too large for that, the smallest that holds it). Depends on the shapes only, never on
    the threads, so a score map has the same bits however many threads made it.
    """
    heights = _sides(rows, h, MAX_TRANSFORM // _fast(2 * w))
    widths = _sides(cols, w, MAX_TRANSFORM // _fast(2 * h))
    best: tuple[float, tuple[int, int, int, int]] | None = None
    for kr, r, a in heights:
        for kc, c, b in widths:
            if a * b > max(MAX_TRANSFORM, _fast(2 * h) * _fast(2 * w)):
                continue
            size = a * b
            cost = kr * kc * (size * math.log2(size) * (1 + size / CACHE_SAMPLES) + TILE_OVERHEAD)
            if best is None or cost < best[0]:
                best = (cost, (r, c, a, b))
    assert best is not None, "the smallest transforms always fit"
    return best[1]


def _sides(outputs: int, taps: int, limit: int) -> list[tuple[int, int, int]]:
    """(tiles, outputs per tile, transform length) along one axis: each distinct way of
    cutting ``outputs`` into equal tiles whose transforms are at most ``limit`` long (or the
    shortest that holds twice the template, if that is longer)."""
    limit = max(limit, _fast(2 * taps))
    sides = []
    count = -(-outputs // max(1, limit - taps + 1))
    while True:
        per_tile = -(-outputs // count)
        length = _fast(per_tile + taps - 1)
        if length <= limit:
            sides.append((count, per_tile, length))
        if per_tile <= taps or per_tile == 1 or len(sides) >= 24:
            return sides or [(count, per_tile, length)]
        count = -(-outputs // (per_tile - 1)) if per_tile > 1 else count + 1


def _fast(n: int) -> int:
    import scipy.fft

    return scipy.fft.next_fast_len(n, real=True)


def zncc_tiles(
    x: np.ndarray,
    t0: np.ndarray,
    t_energy: float,
    mean: float,
    flat: float,
    workers: int,
    window_sums: Callable[[np.ndarray, int, int, int], tuple[np.ndarray, np.ndarray]] | None,
) -> np.ndarray:
    """The valid ZNCC map of the 2-D image ``x`` (any real dtype) against ``t0``.

    ``t0`` is the zero-mean float64 template and ``t_energy`` its sum of squares; ``mean`` is
    subtracted from the image (in float64) before anything else; a window whose energy
    ``S2 - S1**2/n`` (of the centred image) is at most ``flat`` scores 0. ``window_sums(a, h,
    w, row)`` gives the window sums and sums of squares of a tile ``a`` of the centred
    image, whose first row is image row ``row``; None: the compiled ``zncc_tile`` makes them
    and the scores in one pass.
    """
    import scipy.fft

    height, width = x.shape
    h, w = t0.shape
    n = h * w
    rows, cols = height - h + 1, width - w + 1
    tile_rows, tile_cols, tf_rows, tf_cols = plan_tiles(rows, cols, h, w)
    tiles = [(j, i) for j in range(0, rows, tile_rows) for i in range(0, cols, tile_cols)]
    workers = max(1, min(workers, len(tiles)))
    fft_workers = workers if len(tiles) == 1 else 1
    # The template flipped (correlation as convolution), transformed once for every tile:
    # along its h rows, then down the columns (the other rows are zero, nothing to transform).
    spectrum = np.zeros((tf_rows, tf_cols // 2 + 1), dtype=np.complex128)
    spectrum[:h] = scipy.fft.rfft(t0[::-1, ::-1], n=tf_cols, axis=1, workers=workers)
    spectrum = scipy.fft.fft(spectrum, axis=0, workers=workers, overwrite_x=True)
    scores = np.empty((rows, cols))
    local = threading.local()
    fused = native.module() if window_sums is None else None
    direct = x.dtype in (np.float32, np.float64) and x.strides[1] == x.itemsize
    if window_sums is None and fused is None:
        raise RuntimeError("zncc_tiles without window sums needs the compiled module")

    def one_tile(tile: tuple[int, int]) -> None:
        j, i = tile
        r, c = min(tile_rows, rows - j), min(tile_cols, cols - i)
        span = (r + h - 1, c + w - 1)
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.zeros((tf_rows, tf_cols))
            local.mask = np.empty((tile_rows, tile_cols), dtype=bool)
        elif local.span != span:  # an edge tile: what lies beyond it must be zero
            buf[...] = 0.0
        local.span = span
        part = buf[: span[0], : span[1]]
        np.subtract(x[j : j + span[0], i : i + span[1]], mean, out=part)
        product = scipy.fft.rfft2(buf, workers=fft_workers)
        product *= spectrum
        # The inverse in two passes, so that the second makes only the r rows kept.
        product = scipy.fft.ifft(product, axis=0, workers=fft_workers, overwrite_x=True)
        kept = scipy.fft.irfft(product[h - 1 : h - 1 + r], n=tf_cols, axis=1, workers=fft_workers)
        numerator = kept[:, w - 1 : w - 1 + c]
        out = scores[j : j + r, i : i + c]
        if fused is not None:
            # The window sums read the scene itself where they can (a float32 scene: half the
            # bytes of the centred float64 copy), centring it on the way with the same
            # rounding; else the copy.
            if direct:
                source = x[j : j + span[0], i : i + span[1]]
                fused.zncc_tile(source, numerator, out, h, w, t_energy, flat, mean)
            else:
                fused.zncc_tile(part, numerator, out, h, w, t_energy, flat)
        else:
            assert window_sums is not None
            s1, s2 = window_sums(part, h, w, j)
            _normalise(numerator, s1, s2, n, t_energy, flat, out, local.mask[:r, :c])

    share_work(one_tile, tiles, workers)
    return scores


def _normalise(numerator, s1, s2, n: int, t_energy: float, flat: float, out, live) -> None:
    """``out = numerator / sqrt((s2 - s1**2/n) * t_energy)``, 0 where the window is flat,
    clipped to [-1, 1] (rounding can push a perfect match a few ulps beyond 1). ``s1`` and
    ``s2`` are overwritten."""
    energy = s2
    np.square(s1, out=s1)
    s1 /= n
    np.subtract(s2, s1, out=energy)
    np.greater(energy, flat, out=live)  # also drops energy < 0
    energy *= t_energy
    np.sqrt(energy, out=energy, where=live)
    out[...] = 0.0
    np.divide(numerator, energy, out=out, where=live)
    np.clip(out, -1.0, 1.0, out=out)


def peak_bytes(height: int, width: int, h: int, w: int, workers: int, compiled: bool) -> int:
    """Bytes :func:`zncc_tiles` holds at its peak beside the score map: the template's
    spectrum, and per thread its tile's buffer, spectrum, scipy's copy of it and the kept
    rows of the inverse (and, without the compiled kernel, numpy's window sums and the
    score arithmetic on the tile)."""
    rows, cols = height - h + 1, width - w + 1
    r, c, a, b = plan_tiles(rows, cols, h, w)
    tiles = -(-rows // r) * -(-cols // c)
    spectrum = 16 * a * (b // 2 + 1)
    per_tile = 8 * a * b + 2 * spectrum + 8 * r * b
    if not compiled:
        per_tile += 8 * (4 * (r + h) * (c + w) + 2 * r * c) + r * c
    return spectrum + max(1, min(workers, tiles)) * per_tile

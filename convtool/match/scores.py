"""Template matching by zero-normalised cross-correlation (ZNCC), and the hits it finds.

``score(y, x) = sum((W - mean W) * (T - mean T)) / sqrt(sum (W - mean W)^2 * sum (T - mean T)^2)``
for the window ``W = image[y:y+h, x:x+w]`` and the template ``T`` of ``h`` rows and ``w``
columns: OpenCV's ``TM_CCOEFF_NORMED``. Scores lie in [-1, 1]; 1 means the window equals the
template up to a brightness and contrast change ``a*T + b`` (``a > 0``), -1 its negative, and a
window (or template) of zero variance scores 0, not NaN.

Geometry of the score map (``geometry=``):

- ``"valid"`` (default): shape ``(H - h + 1, W - w + 1)``; ``scores[y, x]`` belongs to the
  window whose top-left corner is ``(y, x)`` in the image.
- ``"same"``: shape ``(H, W)``; the valid map is placed so that each score sits on its
  window's centre pixel ``(y + h//2, x + w//2)`` (the kernel centre rule of the rest of
  convtool), and the ``h - 1`` rows and ``w - 1`` columns no window is centred on are 0.

Templates of 64 pixels or more (and ``method="fft"``) are matched tile by tile
(:mod:`convtool.match.tiled`: FFT correlation, window sums and scores while a tile is in
cache); smaller ones (and ``method="direct"``) by one engine correlation with the zero-mean
template and the compiled running sums (or, without them, blocked prefix sums) over the whole
image. All in float64. Nothing loops in Python over pixels: :func:`find_matches` loops over
local maxima only.

Past 400 lines only by the public functions' numpydoc sections and doctested examples
(about 120 lines); the code is the one idea of scoring windows and picking hits.
"""

from __future__ import annotations

import operator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from convtool import engine
from convtool._system import cpu_count
from convtool.choices import Geometry, values
from convtool.engine import native
from convtool.errors import UsageError
from convtool.images.ranges import RANGE_MODES, map_range
from convtool.match import tiled

GEOMETRIES = values(Geometry)
# How a score map becomes a picture: the --range modes of the rest of convtool.
SCORE_RANGES = RANGE_MODES

# A window whose standard deviation is below this fraction of the image's peak deviation
# from its mean (a template: of its peak magnitude) counts as flat and scores 0. Real
# variation in 8- or 16-bit data (one level in a million-pixel window) stays above it.
_FLAT_RTOL = 1e-6
# Safety factor on the rounding bound of the window sums (see _flat_energy); measured
# rounding stays 3-50x below the bound with it.
_ROUNDING_SAFETY = 4.0
# Outputs per block of prefix sums: the running total restarts every block, so its rounding
# error is bounded by the block length, not the image size.
_PREFIX_BLOCK = 1024
# Templates of at least this many pixels are matched band by band with FFTs (tiled.py);
# smaller ones by the engine's choice of method over the whole image.
_BANDED_MIN_TAPS = 64


@dataclass(frozen=True)
class Match:
    """One hit: the window with top-left corner ``(x, y)`` in the scene, of the template's size."""

    x: int
    y: int
    score: float
    width: int
    height: int

    def to_dict(self) -> dict:
        """The hit as a JSON-ready dict: ``{"x", "y", "score", "width", "height"}``."""
        return asdict(self)


# ----------------------------------------------------------------------------- scores


def match_template(
    image,
    template,
    *,
    geometry: str = "valid",
    per_channel: bool = False,
    method: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    """Return the ZNCC score of ``template`` at every window of ``image`` (float64, [-1, 1]).

    Parameters
    ----------
    image, template : array_like
        ``(H, W)`` or ``(H, W, C)`` arrays of real, finite numbers in the same value scale;
        the template fits inside the image.
    geometry : {"valid", "same"}
        The score map's shape and where each score sits (see the module docstring).
    per_channel : bool
        Colour is the caller's choice: pass luminance (one channel), or set this to score
        each channel on its own and average the scores (a flat channel contributes 0; a
        one-channel template or image is used for every channel).
    method, threads
        ``"auto"`` and ``"fft"`` match in tiles (``"auto"`` from 64 template pixels on);
        the others go to :func:`convtool.engine.correlate` for the numerator. ``threads``:
        how many threads (all CPUs by default); the scores do not depend on it.

    Returns
    -------
    numpy.ndarray
        float64 scores in [-1, 1]: ``(H - h + 1, W - w + 1)`` for ``"valid"``, ``(H, W)``
        for ``"same"``; a flat window scores 0.

    Raises
    ------
    convtool.errors.UsageError
        An unknown geometry, a template larger than the image, NaN or infinity, arrays
        that are not 2-D or 3-D numbers.

    Examples
    --------
    >>> image = np.arange(20.0).reshape(4, 5) % 3
    >>> match_template(image, image[1:3, 2:4]).shape
    (3, 4)
    >>> scene = np.zeros((5, 6))
    >>> scene[1:3, 3:5] = [[1, 2], [3, 4]]
    >>> scores = match_template(scene, 2 * scene[1:3, 3:5] + 7)  # contrast and brightness
    >>> [int(i) for i in np.unravel_index(scores.argmax(), scores.shape)]  # (y, x)
    [1, 3]
    >>> round(float(scores.max()), 6)
    1.0
    >>> match_template(scene, scene[1:3, 3:5], geometry="same").shape
    (5, 6)
    >>> match_template(scene, np.ones((7, 7)))
    Traceback (most recent call last):
    ...
    convtool.errors.UsageError: template 7x7 is larger than the image 5x6 (height x width); it must fit inside
    """
    (x, extremes), (t, _) = _check_inputs(image, template, per_channel)
    if geometry not in GEOMETRIES:
        raise UsageError(f"unknown geometry {geometry!r}; choose one of {', '.join(GEOMETRIES)}")
    t = t.astype(np.float64, copy=False)
    channels = max(x.shape[0], t.shape[0])
    # One score map per channel: each channel has its own template, so they cannot share one.
    scores = _zncc(x[0], extremes[0], t[0], method, threads)
    for c in range(1, channels):
        k = min(c, x.shape[0] - 1)
        scores += _zncc(x[k], extremes[k], t[min(c, t.shape[0] - 1)], method, threads)
    if channels > 1:
        scores /= channels
    if geometry == "same":
        return _place_same(scores, x.shape[-2:], t.shape[-2:])
    return scores


def _zncc(
    x: np.ndarray, extremes: tuple[float, float], t: np.ndarray, method: str, threads: int | None
) -> np.ndarray:
    """ZNCC map of one (H, W) channel (float64 or float32), whose (min, max) are ``extremes``,
    against one (h, w) float64 template."""
    h, w = t.shape
    n = h * w
    t0 = t - t.mean()
    t_energy = float(np.square(t0).sum())
    if t_energy <= n * (_FLAT_RTOL * float(np.abs(t).max())) ** 2:
        return np.zeros((x.shape[0] - h + 1, x.shape[1] - w + 1))
    # Centring the image keeps the window sums small, so S2 - S1^2/n cancels less; the
    # numerator is unchanged by it because t0 sums to zero. Rounding x - mean is monotonic,
    # so the largest |x - mean| comes from the extremes of x.
    mean = float(np.mean(x, dtype=np.float64))
    peak = max(abs(extremes[0] - mean), abs(extremes[1] - mean))
    flat = _flat_energy(peak, h, w)
    workers = threads or cpu_count()
    if uses_tiles(h, w, method):
        window_sums = None if native.module() is not None else _numpy_window_sums
        return tiled.zncc_tiles(x, t0, t_energy, mean, flat, workers, window_sums)
    xc = np.subtract(x, mean, dtype=np.float64)
    numerator = engine.correlate(xc, t0, padding="valid", method=method, threads=threads)
    s1, window_energy = _sums_and_squares(xc, h, w, threads)
    window_energy -= np.square(s1) / n
    live = window_energy > flat  # also drops x < 0
    scores = np.zeros_like(numerator)
    np.divide(numerator, np.sqrt(np.maximum(window_energy, 0.0) * t_energy), out=scores, where=live)
    # Rounding can push a perfect match a few ulps beyond 1.
    return np.clip(scores, -1.0, 1.0, out=scores)


def uses_tiles(h: int, w: int, method: str) -> bool:
    """Whether an h x w template is matched tile by tile (:mod:`convtool.match.tiled`): for
    ``fft``, and for ``auto`` from _BANDED_MIN_TAPS pixels; the engine's methods otherwise."""
    return method == "fft" or (method == "auto" and h * w >= _BANDED_MIN_TAPS)


def _numpy_window_sums(a: np.ndarray, h: int, w: int, row: int):
    """Window sums and sums of squares of one band by blocked prefix sums (``row`` unused:
    their blocks restart along each band, and the rounding bound holds per band)."""
    return _window_sums(a, h, w), _window_sums(np.square(a), h, w)


def _flat_energy(peak: float, h: int, w: int) -> float:
    """The window energy n*var at or below which a window counts as flat.

    ``n * (_FLAT_RTOL * peak)**2``, raised where the rounding of the window sums could reach
    it: each prefix sum runs over at most ``_PREFIX_BLOCK + k`` terms of up to ``peak**2``
    (times ``w`` in the second pass), and its error grows about as the 1.5th power of the
    length. The raise matters for thin templates only (a 1x5 one: std floor 4e-6 * peak).
    """
    block = _PREFIX_BLOCK
    rounding = h * (block + w) ** 1.5 + w * (block + h) ** 1.5
    bound = _ROUNDING_SAFETY * np.finfo(np.float64).eps * rounding
    return max(h * w * _FLAT_RTOL**2, bound) * peak**2


def _sums_and_squares(x: np.ndarray, h: int, w: int, threads: int | None):
    """Window sums of ``x`` and of ``x**2``, on two threads when allowed (numpy frees the GIL).

    The compiled kernels make both in one pass over ``x`` (running sums: each sum holds only
    its window's terms, so its rounding stays within the bound of :func:`_flat_energy`); the
    blocked prefix sums below are the numpy fallback.
    """
    compiled = native.window_sums(x, h, w, threads or cpu_count())
    if compiled is not None:
        return compiled
    if (threads or cpu_count()) < 2:
        return _window_sums(x, h, w), _window_sums(np.square(x), h, w)
    with ThreadPoolExecutor(2) as pool:
        try:
            squares = pool.submit(lambda: _window_sums(np.square(x), h, w))
        except RuntimeError:  # no thread can be started (a process limit): here, in turn
            return _window_sums(x, h, w), _window_sums(np.square(x), h, w)
        return _window_sums(x, h, w), squares.result()


def _window_sums(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sums of ``a`` over every ``h`` x ``w`` window at valid positions, float64.

    Both passes run along the contiguous last axis (a cumulative sum down the columns of a
    C-ordered array is ~3x slower than along its rows), so the column pass works on a
    transposed copy; the result is returned as a transposed view.
    """
    rows_done = _running_sums(a, w)
    return _running_sums(np.ascontiguousarray(rows_done.T), h).T


def _running_sums(a: np.ndarray, k: int) -> np.ndarray:
    """Sums of ``k`` consecutive elements along the last axis (valid positions), float64.

    The prefix sum restarts every _PREFIX_BLOCK outputs (a loop over blocks, not pixels), so
    its rounding error stays ~1e-16 * (block + k) * max|a| whatever the image size.
    """
    m = a.shape[-1] - k + 1
    out = np.empty(a.shape[:-1] + (m,))
    for start in range(0, m, _PREFIX_BLOCK):
        stop = min(start + _PREFIX_BLOCK, m)
        prefix = np.zeros(a.shape[:-1] + (stop - start + k,))
        np.cumsum(a[..., start : stop + k - 1], axis=-1, out=prefix[..., 1:])
        np.subtract(prefix[..., k:], prefix[..., :-k], out=out[..., start:stop])
    return out


def _place_same(scores: np.ndarray, image_shape, template_shape) -> np.ndarray:
    """Put a valid map into an image-sized map of zeros, each score on its window's centre."""
    (h, w), (m, n) = template_shape, scores.shape
    out = np.zeros(tuple(image_shape))
    out[h // 2 : h // 2 + m, w // 2 : w // 2 + n] = scores
    return out


Stack = tuple[np.ndarray, list[tuple[float, float]]]


def _check_inputs(image, template, per_channel: bool) -> tuple[Stack, Stack]:
    """Validate both arrays and return each as a float32 or float64 (C, H, W) stack with
    each channel's (min, max)."""
    x, x_extremes = _as_stack(image, "image")
    t, t_extremes = _as_stack(template, "template")
    if t.shape[1] == 0 or t.shape[2] == 0:
        raise UsageError(f"template is empty: {t.shape[1]}x{t.shape[2]} (height x width)")
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise UsageError(f"image is empty: {x.shape[1]}x{x.shape[2]} (height x width)")
    if t.shape[1] > x.shape[1] or t.shape[2] > x.shape[2]:
        raise UsageError(
            f"template {t.shape[1]}x{t.shape[2]} is larger than the image "
            f"{x.shape[1]}x{x.shape[2]} (height x width); it must fit inside"
        )
    if not per_channel:
        for name, a in (("image", x), ("template", t)):
            if a.shape[0] > 1:
                raise UsageError(
                    f"{name} has {a.shape[0]} channels: pass luminance (one channel), "
                    "or per_channel=True to average the per-channel scores"
                )
    elif 1 < x.shape[0] != t.shape[0] > 1:
        raise UsageError(
            f"image has {x.shape[0]} channels but the template {t.shape[0]}; "
            "per-channel matching needs the same number (or one)"
        )
    return (x, x_extremes), (t, t_extremes)


def _as_stack(a, name: str) -> Stack:
    """An (H, W) or (H, W, C) array of finite real numbers as a float (C, H, W) array: float32
    and float64 as they are (a view), other types as float64; with each channel's (min, max)."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise UsageError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim not in (2, 3):
        raise UsageError(f"{name} must be (H, W) or (H, W, C), got shape {a.shape}")
    if a.dtype not in (np.float32, np.float64):  # both are read as they are, into float64
        a = a.astype(np.float64)
    if a.size == 0:
        return (a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)), []
    # The extremes are needed anyway (the flat threshold), and a NaN or infinity shows in
    # them: no boolean array of the image's size.
    lows, highs = a.min(axis=(0, 1)), a.max(axis=(0, 1))
    if not (np.isfinite(lows).all() and np.isfinite(highs).all()):
        raise UsageError(f"{name} contains NaN or infinity; matching needs finite values")
    extremes = list(zip(np.atleast_1d(lows).tolist(), np.atleast_1d(highs).tolist(), strict=True))
    return (a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)), extremes


def score_picture(scores, range_mode: str = "clip", *, top: float = 1.0) -> np.ndarray:
    """Map scores in [-1, 1] to grey levels 0..top for display, as ``--range`` says.

    Parameters
    ----------
    scores : array_like
        A score map from :func:`match_template`.
    range_mode : {"clip", "abs", "offset", "rescale"}
        ``clip``: negative scores (anti-correlation) are 0 and 1 is ``top``; ``abs``:
        |score|, so matches and inverted matches are both bright; ``offset``:
        ``(score + 1) / 2``, so 0 lands mid-grey; ``rescale``: the map's minimum goes to 0
        and its maximum to ``top`` (a constant map gives 0).
    top : float
        The level of a perfect match: ``top=255`` gives 8-bit levels, to write as a
        depth-8 image.

    Returns
    -------
    numpy.ndarray
        float64 levels in 0..top, of the map's shape.

    Raises
    ------
    convtool.errors.UsageError
        An unknown range mode.

    Examples
    --------
    >>> scores = np.array([[-1.0, 0.0, 0.5, 1.0]])
    >>> score_picture(scores).tolist(), score_picture(scores, "abs").tolist()
    ([[0.0, 0.0, 0.5, 1.0]], [[1.0, 0.0, 0.5, 1.0]])
    >>> score_picture(scores, "offset", top=255).tolist()
    [[0.0, 127.5, 191.25, 255.0]]
    """
    s = np.asarray(scores, dtype=np.float64)
    # images.ranges.map_range into 0..1 (it refuses an unknown mode); its ``offset`` adds
    # half the range, so the scores' range [-1, 1] is halved first: (score + 1) / 2.
    picture = map_range(s / 2.0 if range_mode == "offset" else s, range_mode, 1.0)
    return picture * top if top != 1.0 else picture


# ----------------------------------------------------------------------------- hits


def find_matches(
    scores,
    template_shape,
    *,
    threshold: float = 0.8,
    max_matches: int | None = None,
    geometry: str = "valid",
) -> list[Match]:
    """Return the hits in a score map, best first: one per template-sized neighbourhood.

    A hit is a window scoring at least ``threshold`` that no overlapping window (one whose
    top-left corner is less than the template's width away in x and height away in y)
    outscores; among equal scores the first in reading order wins (greedy non-maximum
    suppression over the local maxima). Ties sort by (y, x).

    Parameters
    ----------
    scores : array_like
        A 2-D map from :func:`match_template` with the same ``geometry``.
    template_shape : tuple of int
        ``(height, width[, channels])`` of the template.
    threshold : float
        The lowest score of a hit, in -1..1 as the scores.
    max_matches : int, optional
        Keep the best N (None: all).
    geometry : {"valid", "same"}
        The geometry the map was made with; hits are top-left corners either way.

    Returns
    -------
    list of Match
        Best first: each with ``x``, ``y`` (the window's top-left corner in the image),
        ``score``, ``width`` and ``height``.

    Raises
    ------
    convtool.errors.UsageError
        A map that is not 2-D numbers, an unknown geometry, a threshold outside -1..1, a
        ``max_matches`` below 1, a bad template shape.

    Examples
    --------
    >>> scene = np.zeros((5, 6))
    >>> scene[1:3, 3:5] = [[1, 2], [3, 4]]
    >>> scores = match_template(scene, scene[1:3, 3:5])
    >>> [(m.x, m.y, round(m.score, 6)) for m in find_matches(scores, (2, 2), threshold=0.9)]
    [(3, 1, 1.0)]
    >>> find_matches(scores, (2, 2), threshold=1.5)
    Traceback (most recent call last):
    ...
    convtool.errors.UsageError: threshold must be from -1 to 1 (the range of scores), got 1.5
    """
    s = np.asarray(scores)
    h, w = _template_hw(template_shape)
    if s.ndim != 2 or s.dtype.kind not in "biuf":
        raise UsageError(f"scores must be a 2-D map of numbers, got shape {s.shape}")
    if geometry not in GEOMETRIES:
        raise UsageError(f"unknown geometry {geometry!r}; choose one of {', '.join(GEOMETRIES)}")
    threshold = check_threshold(threshold)
    if max_matches is not None:
        if isinstance(max_matches, bool):
            raise UsageError(f"max_matches must be a positive integer or None, got {max_matches!r}")
        try:
            max_matches = operator.index(max_matches)
        except TypeError:
            raise UsageError(
                f"max_matches must be a positive integer or None, got {max_matches!r}"
            ) from None
        if max_matches < 1:
            raise UsageError(f"max_matches must be at least 1, got {max_matches}")
    if geometry == "same":
        if s.shape[0] < h or s.shape[1] < w:
            raise UsageError(f"a 'same' map of shape {s.shape} is smaller than the template")
        # Back to top-left indexing: only the valid part holds scores.
        s = s[h // 2 : s.shape[0] - (h - 1) // 2, w // 2 : s.shape[1] - (w - 1) // 2]

    ys, xs, values = _local_maxima(s.astype(np.float64, copy=False), h, w, threshold)
    order = np.lexsort((xs, ys, -values))  # best first; ties in reading order
    ys, xs, values = ys[order].tolist(), xs[order].tolist(), values[order].tolist()

    # Greedy suppression, over local maxima only: two of them can overlap only when they tie.
    taken = np.zeros(s.shape, dtype=bool)
    hits: list[Match] = []
    for y, x, value in zip(ys, xs, values, strict=True):
        if taken[y, x]:
            continue
        hits.append(Match(x=x, y=y, score=value, width=w, height=h))
        if max_matches is not None and len(hits) == max_matches:
            break
        taken[max(y - h + 1, 0) : y + h, max(x - w + 1, 0) : x + w] = True
    return hits


def check_threshold(threshold) -> float:
    """``threshold`` as a float in -1..1, the range of ZNCC scores, or UsageError."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise UsageError(f"threshold must be a number, got {threshold!r}") from None
    if not np.isfinite(value):
        raise UsageError(f"threshold must be finite, got {threshold}")
    if not -1.0 <= value <= 1.0:
        raise UsageError(f"threshold must be from -1 to 1 (the range of scores), got {threshold!r}")
    return value


def _local_maxima(s: np.ndarray, h: int, w: int, threshold: float):
    """Positions and scores of the points >= threshold that no overlapping window outscores."""
    from scipy.ndimage import maximum_filter

    # The neighbourhood |dy| < h, |dx| < w; outside the map counts as -inf, never as a peak.
    peak = maximum_filter(s, size=(2 * h - 1, 2 * w - 1), mode="constant", cval=-np.inf)
    ys, xs = np.nonzero((s >= threshold) & (s >= peak))
    return ys, xs, s[ys, xs]


def _template_hw(template_shape) -> tuple[int, int]:
    try:
        h, w = (operator.index(v) for v in tuple(template_shape)[:2])
    except (TypeError, ValueError):
        raise UsageError(
            f"template_shape must be (height, width), got {template_shape!r}"
        ) from None
    if h < 1 or w < 1:
        raise UsageError(f"template_shape must be positive, got {template_shape!r}")
    return h, w


# ----------------------------------------------------------------------------- drawing


def draw_overlay(scene_rgb, matches, *, colour=(255, 0, 0), thickness: int = 2) -> np.ndarray:
    """Return a copy of the scene, as (H, W, 3), with each match's box outline drawn.

    Parameters
    ----------
    scene_rgb : array_like
        The scene: (H, W, 3), or grey (H, W) or (H, W, 1), turned into RGB first.
    matches : iterable of Match
        The boxes to draw (:func:`find_matches`).
    colour : (R, G, B)
        In the scene's value scale (255 for 8-bit data, 1.0 for 0..1 floats).
    thickness : int
        Lines are this many pixels wide, drawn inside the matched window so boxes at the
        border stay visible; boxes reaching outside the scene are clipped.

    Returns
    -------
    numpy.ndarray
        (H, W, 3), of the scene's dtype.

    Raises
    ------
    convtool.errors.UsageError
        A scene that is not grey or RGB, a colour that is not three numbers, a thickness
        below 1.

    Examples
    --------
    >>> box = Match(x=1, y=1, score=1.0, width=3, height=2)
    >>> drawn = draw_overlay(np.zeros((4, 5), np.uint8), [box], colour=(255, 0, 0), thickness=1)
    >>> drawn.shape, drawn.dtype
    ((4, 5, 3), dtype('uint8'))
    >>> drawn[..., 0].tolist()
    [[0, 0, 0, 0, 0], [0, 255, 255, 255, 0], [0, 255, 255, 255, 0], [0, 0, 0, 0, 0]]
    """
    scene = np.asarray(scene_rgb)
    if scene.ndim == 2:
        scene = scene[..., None]
    if scene.ndim != 3 or scene.shape[2] not in (1, 3):
        raise UsageError(f"scene must be (H, W), (H, W, 1) or (H, W, 3), got shape {scene.shape}")
    out = np.repeat(scene, 3, axis=2) if scene.shape[2] == 1 else scene.copy()
    colour = np.asarray(colour, dtype=out.dtype)
    if colour.shape != (3,):
        raise UsageError(f"colour must be three numbers (R, G, B), got {colour.tolist()!r}")
    if isinstance(thickness, bool) or operator.index(thickness) < 1:
        raise UsageError(f"thickness must be a positive integer, got {thickness!r}")
    height, width = out.shape[:2]
    for m in matches:
        top, left = max(m.y, 0), max(m.x, 0)
        bottom, right = min(m.y + m.height, height), min(m.x + m.width, width)
        if top >= bottom or left >= right:
            continue  # entirely outside the scene
        # Each side's inner edge, kept inside the visible box (a negative stop would wrap).
        inner_top = min(max(m.y + thickness, top), bottom)
        inner_bottom = min(max(m.y + m.height - thickness, top), bottom)
        inner_left = min(max(m.x + thickness, left), right)
        inner_right = min(max(m.x + m.width - thickness, left), right)
        out[top:inner_top, left:right] = colour
        out[inner_bottom:bottom, left:right] = colour
        out[top:bottom, left:inner_left] = colour
        out[top:bottom, inner_right:right] = colour
    return out

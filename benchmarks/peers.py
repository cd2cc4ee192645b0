"""The kernels and the implementations the benchmark compares, convtool's and its peers'.

Every peer imports its library on first use, so a memory probe child loads only its own, and
a peer that is not installed has ``run=None`` and is reported as such.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from runconfig import gaussian_1d


@dataclass(frozen=True)
class KernelCase:
    """A section 1 kernel: correlation weights and the OpenCV ratio it should reach."""

    key: str
    label: str
    weights: np.ndarray
    opencv_goal: float


def engine_kernels() -> list[KernelCase]:
    """The six kernels of section 1 (two of them not separable), seeded so runs compare."""
    rng = np.random.default_rng(7)
    binomial = np.array([1.0, 4, 6, 4, 1]) / 16
    gauss = gaussian_1d(5, 31)
    return [
        KernelCase("sobel3", "Sobel 3×3", np.outer([1, 2, 1], [-1, 0, 1]).astype(float), 0.5),
        KernelCase("binomial5", "binomial 5×5", np.outer(binomial, binomial), 0.5),
        KernelCase("random7", "random 7×7", rng.standard_normal((7, 7)), 0.5),
        KernelCase("box15", "box 15×15", np.full((15, 15), 1 / 225), 1.0),
        KernelCase("gauss31", "Gaussian 31×31 σ=5", np.outer(gauss, gauss), 1.0),
        KernelCase("random31", "random 31×31", rng.standard_normal((31, 31)), 1.0),
    ]


def rank1_factors(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(column, row) with ``outer(column, row) == weights`` to 1e-12, or None (for the peers)."""
    u, s, vt = np.linalg.svd(weights)
    column, row = u[:, 0] * np.sqrt(s[0]), vt[0] * np.sqrt(s[0])
    if np.abs(np.outer(column, row) - weights).max() > 1e-12 * np.abs(weights).max():
        return None
    return column, row


@dataclass(frozen=True)
class Impl:
    """One way to correlate a 2-D float32 image with a kernel under reflect-101 padding."""

    key: str
    label: str
    group: str  # convtool | scipy | naive | opencv
    run: Callable[[np.ndarray, np.ndarray], np.ndarray] | None  # None: not installed
    rank1_only: bool = False


def engine_impls() -> list[Impl]:
    """convtool's methods and every peer, in table order; missing peers have ``run=None``.

    Each peer imports its library on first use, so a memory probe loads only its own.
    """
    convtool = _installed("convtool") or None
    opencv = _installed("cv2") or None
    impls = [
        Impl(
            f"convtool-{method}",
            f"convtool {method}",
            "convtool",
            convtool and functools.partial(_convtool, method=method),
            rank1_only=method == "separable",
        )
        for method in ("auto", "direct", "separable", "fft")
    ]
    impls.insert(
        1,
        Impl(
            "convtool-numpy",
            "convtool auto, numpy engine",
            "convtool",
            convtool and _convtool_numpy,
        ),
    )
    return impls + [
        Impl("scipy", "scipy.ndimage.correlate", "scipy", _scipy),
        Impl("naive", "naive (sliding_window_view + einsum)", "naive", naive_correlate),
        Impl("cv2-filter2D", "cv2.filter2D", "opencv", opencv and _cv2_filter2d),
        Impl(
            "cv2-sepFilter2D",
            "cv2.sepFilter2D",
            "opencv",
            opencv and _cv2_sep_filter2d,
            rank1_only=True,
        ),
    ]


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _convtool(x: np.ndarray, w: np.ndarray, method: str) -> np.ndarray:
    from convtool import engine

    return engine.correlate(x, w, padding="reflect", method=method)


def _convtool_numpy(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Method auto on the numpy engine (``CONVTOOL_NATIVE=0``, read by the engine at each call)."""
    import os

    from convtool.engine import native

    old = os.environ.get(native.NATIVE_ENV)
    os.environ[native.NATIVE_ENV] = "0"
    try:
        return _convtool(x, w, "auto")
    finally:
        if old is None:
            os.environ.pop(native.NATIVE_ENV, None)
        else:
            os.environ[native.NATIVE_ENV] = old


def convtool_implementation() -> str:
    """Which code runs convtool's direct and separable methods here (compiled or numpy)."""
    try:
        from convtool.engine import native
    except ImportError:
        return "not installed"
    return native.implementation()


@dataclass(frozen=True)
class Uint8Case:
    """A uint8 -> uint8 kernel: correlation weights and OpenCV's calls for the same result."""

    key: str
    label: str
    weights: np.ndarray


def uint8_kernels() -> list[Uint8Case]:
    """The integer kernels of the uint8 -> uint8 rows (Sobel, binomial 5×5, box 15×15)."""
    binomial = np.array([1.0, 4, 6, 4, 1]) / 16
    return [
        Uint8Case("sobel3", "Sobel 3×3", np.outer([1, 2, 1], [-1, 0, 1]).astype(float)),
        Uint8Case("binomial5", "binomial 5×5", np.outer(binomial, binomial)),
        Uint8Case("box15", "box 15×15", np.full((15, 15), 1 / 225)),
    ]


def uint8_impls() -> dict[str, Callable | None]:
    """uint8 (H, W, 3) -> uint8 implementations as ``run(image, weights)``; None: missing.

    convtool: the engine's uint8 -> uint8 call (``out_dtype=np.uint8``) on the same
    interleaved data as OpenCV's, filtered in that layout (``channel_axis=-1``, as the
    command line does with a decoded file); its result is (H, W, 3) too.
    """
    opencv = _installed("cv2")
    runs: dict[str, Callable | None] = {
        "convtool": _convtool_uint8 if _installed("convtool") else None,
        "cv2.filter2D": _cv2_filter2d if opencv else None,
        "cv2.sepFilter2D": _cv2_sep_filter2d if opencv else None,
    }
    runs["cv2.blur"] = _cv2_blur if opencv else None
    return runs


def _convtool_uint8(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    from convtool import engine

    return engine.correlate(x, w, padding="reflect", out_dtype=np.uint8, channel_axis=-1)


def _cv2_blur(x: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    """cv2.blur, for box kernels only (None otherwise: not the same filter)."""
    import cv2

    if np.ptp(w) != 0:
        return None
    return cv2.blur(x, w.shape[::-1], borderType=cv2.BORDER_REFLECT_101)


def _scipy(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.correlate(x, w, mode="mirror")


def _cv2_filter2d(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.filter2D(x, -1, w.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)


def _cv2_sep_filter2d(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.sepFilter2D(x, -1, *_cv2_separable(w), borderType=cv2.BORDER_REFLECT_101)


def _cv2_separable(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kernelX, kernelY) for cv2.sepFilter2D, factored once per kernel as a user would."""
    return _cv2_factors(weights.shape, weights.tobytes())


@functools.lru_cache(maxsize=8)
def _cv2_factors(shape: tuple[int, int], data: bytes) -> tuple[np.ndarray, np.ndarray]:
    column, row = rank1_factors(np.frombuffer(data).reshape(shape))
    return row.astype(np.float32), column.astype(np.float32)


def naive_correlate(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The textbook version: every window as a strided view, one einsum over them all."""
    ky, kx = w.shape
    padded = np.pad(x, ((ky // 2, (ky - 1) // 2), (kx // 2, (kx - 1) // 2)), mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, w.shape)
    return np.einsum("ijkl,kl->ij", windows, w.astype(x.dtype))


def relative_error(
    result: np.ndarray, reference: np.ndarray, image: np.ndarray, weights: np.ndarray
) -> float:
    """max|result - reference| relative to the largest possible output, sum|k| * max|x|."""
    scale = np.abs(weights).sum() * np.abs(image).max()
    return float(np.abs(result.astype(np.float64) - reference).max() / scale)


def naive_side(side: int, weights: np.ndarray, macs: float) -> int:
    """Side of the square crop on which the naive version does at most ``macs`` multiply-adds."""
    return int(min(side, max(np.sqrt(macs / weights.size), max(weights.shape) + 1)))


def matchers() -> dict[str, Callable | None]:
    """The two ZNCC implementations as ``run(scene, template)``; None where not importable."""
    try:
        from convtool.match import match_template
    except ImportError:
        match_template = None
    try:
        import cv2
    except ImportError:
        cv2 = None
    return {
        "convtool": match_template,
        "opencv": None
        if cv2 is None
        else (lambda scene, t: cv2.matchTemplate(scene, t, cv2.TM_CCOEFF_NORMED)),
    }

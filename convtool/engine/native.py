"""The compiled kernels (``convtool.engine._native``), when built: loading, the switch, window sums.

The C module takes bands the engine has planned and gathered (padding stays in Python) and
writes output rows; it releases the GIL, so the band thread pool runs it in parallel. The
band methods that call it are in :mod:`convtool.engine.methods`; the numpy ones there compute the same results and remain the
reference the tests compare with, and the fallback: when the module was not built (no
compiler at install) or ``CONVTOOL_NATIVE=0`` is set, they run instead. ``--method`` names
the algorithm (direct, separable, fft); :func:`implementation` says which code runs it.

The module holds its kernels once per SIMD level (AVX-512, AVX2, SSE2 on x86-64) and runs the
best one the CPU has; ``CONVTOOL_NATIVE_LEVEL`` (``v4``, ``v3``, ``baseline``) forces one, for
tests and measurements: every level gives the same bits.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from types import ModuleType

import numpy as np

from convtool._system import cpu_count

NATIVE_ENV = "CONVTOOL_NATIVE"
"""Environment variable: ``0`` runs the numpy engine even where the compiled one is built."""

LEVEL_ENV = "CONVTOOL_NATIVE_LEVEL"
"""Environment variable, read when the module is first loaded: the SIMD level its kernels run
(``v4``: AVX-512, ``v3``: AVX2, ``baseline``), instead of the best this CPU has. A level the
build lacks or the CPU cannot run is refused (:class:`~convtool.errors.UsageError`)."""

_UNSET = object()
_module: object = _UNSET


def _load() -> ModuleType | None:
    global _module
    if _module is _UNSET:
        try:
            import convtool.engine._native as _native  # no stub: typed Any (pyproject)
        except ImportError:
            _native = None
        if _native is not None:
            _force_level(_native)
        _module = _native
    return _module  # type: ignore[return-value]


def _force_level(native: ModuleType) -> None:
    """Apply ``CONVTOOL_NATIVE_LEVEL``, if set; refuse a level this build or CPU cannot run."""
    level = os.environ.get(LEVEL_ENV, "").strip()
    if not level:
        return
    try:
        native.select_level(level)
    except ValueError as error:
        from convtool.errors import UsageError

        raise UsageError(f"{LEVEL_ENV}={level}: {error}; unset it to run the best") from None


def module() -> ModuleType | None:
    """The compiled module, or None (not built, or switched off by ``CONVTOOL_NATIVE=0``)."""
    if os.environ.get(NATIVE_ENV, "").strip() == "0":
        return None
    return _load()


def implementation() -> str:
    """Which code runs the direct and separable methods, in words for ``--debug`` and reports."""
    if os.environ.get(NATIVE_ENV, "").strip() == "0":
        return f"numpy ({NATIVE_ENV}=0)"
    native = _load()
    if native is None:
        return "numpy (compiled kernels not built)"
    info = native.info()
    forced = f"; {LEVEL_ENV}={info['level']}" if os.environ.get(LEVEL_ENV, "").strip() else ""
    return f"compiled ({info['simd']}{forced})"


STREAM_SHARE = 0.75
"""Outputs are stored streaming (past the cache) when the call's input and output together
exceed this share of the cache they could stay in (:func:`stream_cache`), as glibc's memcpy
does from 3/4 of the last-level cache: they would not stay in it anyway, and each line
written is then not read first."""

STREAM_PRIVATE = 8
"""The cache a call's data could stay in is taken as at most this many times the private
(level 2) caches of the CPUs it runs on. In a virtual machine the last-level cache that the
system reports is the host's whole one (480 MiB on one machine here, where the guest's share
of it was far smaller): there, with the last-level rule alone, nothing streamed. Measured on
that machine, float32 Sobel, Laplacian, random 3x3 and 7x7 into a preallocated output, 2
threads (2 MiB of L2 each), streamed against not, medians of 25 alternated: input and output
8-12 MiB 0.84-1.06x (a loss), 15-32 MiB 0.92-1.25x (a wash, Sobel 1.25x at 32), 128 MiB
1.05-1.39x. On a machine whose 32 MiB L3 the VM saw, the last-level rule alone: 4096² 1.04-
1.16x, 2048² (32 MiB, just past its line) 0.91-1.08x."""

_FALLBACK_CACHE = 32 << 20  # (when the system does not say)


def streams(nbytes: int) -> bool:
    """Whether a call reading and writing ``nbytes`` in all stores its outputs streaming."""
    native = _load()
    if native is None or not _can_stream(native):
        return False
    return nbytes > STREAM_SHARE * stream_cache()


@functools.cache
def _can_stream(native: ModuleType) -> bool:
    """Whether this build stores streaming (asked once: ``info()`` builds a dict each time,
    and ``streams`` is asked at each engine call)."""
    return bool(native.info().get("streaming"))


@functools.cache
def stream_cache() -> int:
    """Bytes of cache a call's data could stay in: the last-level cache, at most
    STREAM_PRIVATE times the level-2 caches of this process's CPUs (see there)."""
    caches = cache_sizes()
    last = caches[max(caches)] if caches else _FALLBACK_CACHE
    if 2 in caches and max(caches) > 2:
        last = min(last, STREAM_PRIVATE * caches[2] * cpu_count())
    return last


@functools.cache
def cache_sizes() -> dict[int, int]:
    """Bytes of cpu0's data (or unified) cache at each level, from Linux's sysfs (what lscpu
    shows; glibc's sysconf can report the whole package's, 10x a VM's 32 MiB); empty where
    the system does not say."""
    sizes: dict[int, int] = {}
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip().upper()
            kind = (index / "type").read_text().strip()
        except (OSError, ValueError):
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if kind != "Instruction" and digits.isdigit():
            sizes[level] = int(digits) * scale
    return sizes


def await_count(counts: np.ndarray, target: int, seconds: float) -> bool:
    """Spin, without the GIL, until ``counts[0]`` (the int64 counter the band calls were
    given as ``done=``) reaches ``target`` and no thread is still at work (``counts[1]``,
    the threads that entered, equals ``counts[2]``, those that left): True, or False once
    ``seconds`` have passed."""
    native = _load()
    assert native is not None, "only compiled calls count themselves done"
    return bool(native.await_count(counts, target, seconds))


def window_sums(x: np.ndarray, h: int, w: int, threads: int):
    """Sums of ``x`` and of ``x**2`` (float64, 2-D) over every h x w window at valid positions,
    computed in bands of rows on ``threads`` threads; None when the module is absent."""
    native = module()
    if native is None:
        return None
    x = np.ascontiguousarray(x, dtype=np.float64)
    rows, cols = x.shape[0] - h + 1, x.shape[1] - w + 1
    sums, squares = np.empty((rows, cols)), np.empty((rows, cols))
    band = max(1, -(-rows // max(1, threads)))

    def part(j0: int) -> None:
        j1 = min(j0 + band, rows)
        native.window_sums(x[j0 : j1 + h - 1], sums[j0:j1], squares[j0:j1], h, w, j0)

    starts = range(0, rows, band)
    if len(starts) == 1:
        part(0)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(starts)) as pool:
            for future in [pool.submit(part, j0) for j0 in starts]:
                future.result()
    return sums, squares

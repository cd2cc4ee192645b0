"""Convolution kernels: kernel specs, the list of named kernels, and compose.

This is the module callers import: a spec (``gaussian:sigma=2@scale=2``, a matrix, a file)
becomes a Kernel through :func:`get_kernel` / :func:`parse_kernel_spec`. The pieces live
apart and are re-exported here: the Kernel value and its conventions in ``value``, the
named builders and fixed kernel files in ``builders``, the text grammars in ``formats`` and
the kernel files in ``files``.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from convtool.errors import KernelError, UnknownKernelError, excerpt
from convtool.kernels import files as kernel_files
from convtool.kernels import formats as fmt
from convtool.kernels.builders import (
    BUILDERS,
    Param,
    binomial,
    box,
    dog,
    gaussian,
    identity,
    kernel_names,
    kirsch,
    laplacian,
    log,
    parse_params,
    sharpen,
    unsharp,
)
from convtool.kernels.fixed import fixed_files, fixed_kernel, load_fixed
from convtool.kernels.formats import MAX_KERNEL_SIDE
from convtool.kernels.value import Kernel, apply_scale, from_data

__all__ = [
    "MAX_KERNEL_SIDE", "Kernel", "KernelEntry", "Param", "get_kernel", "parse_kernel_spec",
    "read_kernel_file", "compose", "list_kernels", "identity", "box", "gaussian", "binomial",
    "laplacian", "sharpen", "kirsch", "log", "dog", "unsharp",
]  # fmt: skip


# ------------------------------------------------------------------------ named kernels


@dataclass(frozen=True)
class KernelEntry:
    """One named kernel as listed by :func:`list_kernels` (and ``convtool kernels``)."""

    name: str
    size: str  # "3x3", or how the size follows from the parameters
    params: str  # "sigma=1, size=2*ceil(3*sigma)+1"; "" for a fixed kernel
    description: str
    parameters: tuple[Param, ...] = ()


def list_kernels() -> list[KernelEntry]:
    """Every named kernel, sorted by name: fixed ones (files) and parametric ones (builders)."""
    entries = []
    for name, builder in BUILDERS.items():
        h, w = builder.build().shape
        size = f"{h}x{w}" if builder.size == "3x3" else f"{builder.size} ({h}x{w})"
        params = ", ".join(p.describe() for p in builder.params)
        entries.append(KernelEntry(name, size, params, builder.description, builder.params))
    for name in fixed_files():
        kernel, description = load_fixed(name)
        h, w = kernel.shape
        entries.append(KernelEntry(name, f"{h}x{w}", "", description))
    return sorted(entries, key=lambda e: e.name)


# -------------------------------------------------------------------------------- specs


_NAME_RE = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)(?::(.*))?", re.S)


def get_kernel(spec: Any) -> Kernel:
    """Any kernel spec as a Kernel: a Kernel, a spec string, a path, or an array-like.

    Parameters
    ----------
    spec : Kernel, str, os.PathLike or array_like
        A :class:`Kernel` (returned as it is), a spec (:func:`parse_kernel_spec`: a name,
        a name with arguments, an inline matrix, a file name), a path to a kernel file, or
        a 2-D array of weights.

    Returns
    -------
    Kernel
        The weights with their name and origin.

    Raises
    ------
    convtool.errors.KernelError
        A spec that does not parse, an unknown name (the message lists the known ones), a
        file that cannot be read, bytes instead of text. A :class:`convtool.UsageError`.

    Examples
    --------
    >>> get_kernel("sobel-x").weights.tolist()
    [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]
    >>> get_kernel("box:3").shape
    (3, 3)
    """
    if isinstance(spec, Kernel):
        return spec
    if isinstance(spec, str):
        return parse_kernel_spec(spec)
    if isinstance(spec, os.PathLike):
        return read_kernel_file(spec)
    if isinstance(spec, bytes | bytearray):
        raise KernelError("a kernel spec is text, not bytes")
    return Kernel(spec, "array")


def parse_kernel_spec(spec: str) -> Kernel:
    """Turn a kernel spec into a Kernel (the README's "Kernel specs" gives the grammar).

    ``SPEC[@scale=S][@origin=ROW,COL]`` where SPEC is a name (``sobel-x``), a name with
    arguments (``gaussian:sigma=2,size=9``, ``box:3x5``), an inline matrix
    (``"[1 2 1; 2 4 2; 1 2 1]/16"``), an ImageMagick kernel (``"3x3: 1,2,1 2,4,2 1,2,1"``)
    or a kernel file (``k.txt``, ``k.npy``, ``k.mat``, ``@k.txt``).
    """
    if not isinstance(spec, str):
        raise KernelError(f"a kernel spec is text, got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise KernelError(
            "empty kernel spec; give a kernel name, matrix or file (see `convtool kernels`)"
        )
    if _is_file_spec(text):
        return read_kernel_file(text)
    fmt.reject_imagemagick_flags(text)
    base, *modifiers = text.split("@")
    if not base.strip():  # ImageMagick's "@file"
        path = modifiers.pop(0).strip()
        if not path:
            raise KernelError(f"{excerpt(text)}: '@' must be followed by a kernel file name")
        kernel = read_kernel_file(path)
    else:
        kernel = _parse_base(base.strip())
    for modifier in modifiers:
        kernel = _apply_modifier(kernel, modifier)
    return kernel


def files_read(spec: str) -> list[str]:
    """The kernel files that :func:`parse_kernel_spec` reads for ``spec`` (none, or one).

    Commands that write check that no output overwrites them.
    """
    text = spec.strip() if isinstance(spec, str) else ""
    if not text:
        return []
    if _is_file_spec(text):
        return [text]
    base, *modifiers = text.split("@")
    if not base.strip():
        return [modifiers[0].strip()] if modifiers and modifiers[0].strip() else []
    return [base.strip()] if _names_a_file(base.strip()) else []


def _is_file_spec(text: str) -> bool:
    """A spec that is, as a whole, the name of an existing file (and no kernel's name)."""
    return os.path.isfile(text) and text.lower() not in kernel_names()


def _names_a_file(base: str) -> bool:
    return base.lower().endswith(kernel_files.FILE_EXTENSIONS)


def _parse_base(text: str) -> Kernel:
    if _names_a_file(text):
        return read_kernel_file(text)
    shown = " ".join(text.split())
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if fmt.looks_like_imagemagick(text):
        return from_data(fmt.parse_imagemagick(text), shown)
    if text[:1].isalpha():
        return _parse_named(text)
    return from_data(fmt.parse_matrix_spec(text), shown)


def _apply_modifier(kernel: Kernel, modifier: str) -> Kernel:
    key, eq, value = modifier.partition("=")
    key, value = key.strip().lower(), value.strip()
    if key == "scale" and eq:
        return apply_scale(kernel, fmt.parse_scale(value), f"{kernel.name}@scale={value}")
    if key == "origin" and eq:
        centre = fmt.parse_centre(value, "@origin")
        origin = fmt.origin_from_centre(centre, kernel.shape, "@origin")
        return dataclasses.replace(kernel, origin=origin, name=f"{kernel.name}@origin={value}")
    raise KernelError(
        f"unknown kernel modifier {excerpt('@' + modifier.strip())}; use @scale=S or @origin=ROW,COL"
    )


def _parse_named(text: str) -> Kernel:
    m = _NAME_RE.fullmatch(text)
    if m is None:
        if "/" in text or "\\" in text:
            raise KernelError(f"no such kernel file: {excerpt(text)}")
        raise KernelError(f"{excerpt(text)} is not a kernel name, matrix or file")
    name, args = m.group(1).lower().replace("_", "-"), m.group(2)
    builder = BUILDERS.get(name)
    if builder is not None:
        return builder.build(**parse_params(builder.name, builder.params, args))
    if name in fixed_files():
        if args is not None:
            raise KernelError(
                f"{name} is a fixed kernel and takes no parameters, got {excerpt(args)}"
            )
        return fixed_kernel(name)
    close = difflib.get_close_matches(name, kernel_names(), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(kernel_names())}"
    raise UnknownKernelError(f"unknown kernel {excerpt(name)}; {hint}", name=name)


def read_kernel_file(path: str | os.PathLike) -> Kernel:
    """A kernel from a file: plain text, ``.npy``, libvips or MATLAB ``.mat``, ImageMagick text.

    Errors are KernelError with ``path=`` set, so the message starts with the file name.
    """
    if not isinstance(path, str | os.PathLike):
        raise KernelError(f"a kernel file path is text, got {type(path).__name__}")
    where = os.fspath(path)
    data = kernel_files.read_kernel_data(where)
    try:
        return from_data(data, where)
    except KernelError as exc:
        raise KernelError(str(exc), path=where) from None


# ------------------------------------------------------------------------------ compose


# Above this many multiply-adds, compose() multiplies spectra instead of shifting and adding.
_DIRECT_COMPOSE_WORK = 30_000_000


def compose(kernel: Kernel, n: int) -> Kernel:
    """The one kernel equal to ``n`` successive applications of ``kernel``.

    It is the n-fold full convolution of the weights (side (k-1)·n+1 per axis) with its centre
    at n times the kernel's centre index, so one pass with it equals n passes (exactly with
    ``full`` padding, and away from the borders otherwise), for convolution and correlation
    alike. Separable kernels compose their 1-D factors and stay separable; an offset o becomes
    o·(1 + s + ... + s^(n-1)) for a kernel sum s. Binomial:3 composed twice is binomial:5.
    """
    kernel = get_kernel(kernel)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise KernelError(f"compose: n must be a whole number >= 1, got {n!r}")
    n = int(n)
    if n == 1:
        return kernel
    (h, w), (cy, cx) = kernel.shape, kernel.centre
    side_h, side_w = (h - 1) * n + 1, (w - 1) * n + 1
    fmt.check_side(side_h, side_w, f"{kernel.name} applied {n} times")
    name = f"{kernel.name} applied {n} times"
    origin = (n * cy - side_h // 2, n * cx - side_w // 2)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow fails in Kernel()
        powers = np.float64(kernel.sum) ** np.arange(n)
    offset = float(kernel.offset * powers.sum()) if kernel.offset else 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        if kernel.factors is not None:
            factors = tuple(_power_1d(f, n) for f in kernel.factors)
            weights = np.outer(*factors)
        else:
            factors, weights = None, _power_2d(kernel.weights, n, (side_h, side_w))
    if not np.isfinite(weights).all():
        raise KernelError(f"{name}: the weights overflow float64 (they grow as |w|^{n})")
    return Kernel(weights, name, factors, origin, offset)


def _power_1d(taps: np.ndarray, n: int) -> np.ndarray:
    result = taps
    for _ in range(n - 1):
        result = np.convolve(result, taps)
    return result


def _power_2d(weights: np.ndarray, n: int, shape: tuple[int, int]) -> np.ndarray:
    h, w = weights.shape
    taps = np.count_nonzero(weights)
    work = taps * sum(((h - 1) * i + 1) * ((w - 1) * i + 1) for i in range(1, n))
    if work <= _DIRECT_COMPOSE_WORK:
        result = weights
        for _ in range(n - 1):
            result = _full_convolve(result, weights)
        return result
    spectrum = np.fft.rfft2(weights, s=shape) ** n
    result = np.fft.irfft2(spectrum, s=shape)
    if np.array_equal(weights, np.round(weights)) and np.abs(result).max() < 2.0**52:
        result = np.round(result)  # integer kernels compose to integers: drop the FFT's noise
    return result


def _full_convolve(image: np.ndarray, small: np.ndarray) -> np.ndarray:
    """Full 2-D convolution by shifted adds: one vectorised add per tap of ``small``."""
    h, w = image.shape
    out = np.zeros((h + small.shape[0] - 1, w + small.shape[1] - 1))
    for r, c in zip(*np.nonzero(small), strict=True):
        out[r : r + h, c : c + w] += small[r, c] * image
    return out

"""What ``convtool kernels show`` reports about a kernel, as data and as plain text.

The CLI draws the same report as a coloured heat map when stdout is a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import lcm

import numpy as np

from convtool import engine
from convtool.errors import UsageError, printable
from convtool.kernels import Kernel, compose
from convtool.pipeline.layers import LayerStep
from convtool.pipeline.parsing import parse_step
from convtool.pipeline.steps import ConvolveStep, GradientStep, PoolStep

# Show a kernel as integers over one denominator when it is exactly that (binomial:5 is
# [1 4 6 4 1]ᵀ[1 4 6 4 1] / 256); beyond this the fraction is noise, not insight.
MAX_DENOMINATOR = 1 << 16


@dataclass(frozen=True)
class KernelReport:
    """One kernel as it will be applied, with the facts worth showing."""

    title: str
    weights: np.ndarray  # as written; `mode` says whether it is flipped when applied
    mode: str  # "convolution" or "correlation"
    denominator: int | None  # weights * denominator are integers, when they are exactly
    factors: tuple[np.ndarray, np.ndarray] | None
    origin: tuple[int, int]
    offset: float = 0.0

    @property
    def total(self) -> float:
        return float(self.weights.sum())


def report(
    spec: str, *, iterations: int = 1, correlate: bool = False, normalize: bool = False
) -> list[KernelReport]:
    """The kernel(s) of ``spec`` as ``filter`` would apply them, composed ``iterations`` times.

    A gradient step has two kernels; a pooling step has none (it is not linear).
    """
    if iterations < 1:
        raise UsageError(f"--iterations must be ≥ 1, got {iterations}")
    step = parse_step(spec)
    if isinstance(step, PoolStep):
        raise UsageError(
            f"{spec!r} is a pooling step, not a kernel: {step.kind} over "
            f"{step.size[0]}x{step.size[1]} windows every {step.stride[0]}x{step.stride[1]} pixels"
        )
    if isinstance(step, GradientStep):
        kernels = [step.kx, step.ky]
    elif isinstance(step, LayerStep):
        raise UsageError(
            f"{spec!r} is a layer, not one kernel: weights "
            f"{'x'.join(str(s) for s in step.layer.weights.shape)} (C_out, C_in/groups, kh, kw)"
        )
    else:
        assert isinstance(step, ConvolveStep)
        kernels = [step.kernel]
    out = []
    for kernel in kernels:
        if normalize:
            kernel = kernel.normalized()
        if iterations > 1:
            kernel = compose(kernel, iterations)
        out.append(_report_one(kernel, correlate))
    return out


def _report_one(kernel: Kernel, correlate: bool) -> KernelReport:
    title = printable(kernel.name)  # a file name: shown, never acted on by the terminal
    factors = kernel.factors
    if factors is None:
        factors = engine.separable_factors(kernel.weights)
    if factors is not None:
        factors = balanced(*factors)
    return KernelReport(
        title=title,
        weights=kernel.weights,
        mode="correlation" if correlate else "convolution",
        denominator=common_denominator(kernel.weights),
        factors=factors,
        origin=tuple(kernel.origin),
        offset=float(kernel.offset),
    )


def balanced(column: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same outer product split canonically, the row carrying the scale.

    Factors are only defined up to a scale moved between them; one canonical split
    makes equal kernels print equally however they were built. The column becomes
    small integers when it is a multiple of them (sobel-x: column [1 2 1], row
    [1 0 -1]), else sums to 1 (a Gaussian's factors both sum to 1), else peaks at 1.
    """
    column, row = np.asarray(column, float), np.asarray(row, float)
    peak_sign = np.sign(column[np.argmax(np.abs(column))])
    smallest = np.abs(column[column != 0]).min()
    as_integers = column / smallest
    if np.allclose(as_integers, np.rint(as_integers), rtol=0, atol=1e-9):
        scale = smallest * peak_sign
    elif abs(column.sum()) > 1e-12 * np.abs(column).sum():
        scale = column.sum()
    else:
        scale = np.abs(column).max() * peak_sign
    return column / scale, row * scale


def common_denominator(weights: np.ndarray) -> int | None:
    """The smallest d ≤ 65536 with every weight·d an integer (to 1e-12), or None."""
    # integers past a million read worse than floats; infinities have no fraction
    if not np.all(np.isfinite(weights)) or np.max(np.abs(weights), initial=0) > 1e6:
        return None
    d = 1
    for w in np.unique(weights):
        frac = Fraction(float(w)).limit_denominator(MAX_DENOMINATOR)
        if abs(float(frac) - float(w)) > 1e-12 * max(1.0, abs(float(w))):
            return None
        d = lcm(d, frac.denominator)
        if d > MAX_DENOMINATOR:
            return None
    return d


def format_number(value: float, denominator: int | None) -> str:
    if not np.isfinite(value):
        return str(value)
    if denominator is not None:
        return str(round(value * denominator))
    return f"{value:.6g}"


def format_plain(reports: list[KernelReport]) -> str:
    """The reports as plain text: matrix, sum, separability, factors."""
    blocks = []
    for rep in reports:
        lines = [f"{rep.title}: {rep.weights.shape[0]}x{rep.weights.shape[1]}, {_mode_note(rep)}"]
        lines += matrix_lines(rep.weights, rep.denominator)
        lines.append(f"sum: {_format_scalar(rep.total)}")
        if rep.offset:
            lines.append(f"offset: {_format_scalar(rep.offset)} (added after filtering)")
        if rep.origin != (0, 0):
            lines.append(
                f"origin: {rep.origin[0]},{rep.origin[1]} (offset of the centre from k//2)"
            )
        if rep.factors is not None:
            col, row = rep.factors
            lines.append("separable: yes")
            lines.append(f"  column: {_vector(col)}")
            lines.append(f"  row:    {_vector(row)}")
        else:
            lines.append("separable: no")
        lines.append(f"engine: {implementation()}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def implementation() -> str:
    """Which code applies kernels by the direct and separable methods (FFT: numpy/scipy)."""
    from convtool.engine import native

    return f"{native.implementation()}; FFT: scipy"


def matrix_lines(weights: np.ndarray, denominator: int | None) -> list[str]:
    cells = [[format_number(v, denominator) for v in row] for row in weights]
    width = max(len(c) for row in cells for c in row)
    lines = ["  " + " ".join(c.rjust(width) for c in row) for row in cells]
    if denominator not in (None, 1):
        lines.append(f"  / {denominator}")
    return lines


def _mode_note(rep: KernelReport) -> str:
    if rep.mode == "correlation":
        return "applied as written (--correlate)"
    return "true convolution: flipped when slid over the image"


def _format_scalar(value: float) -> str:
    den = common_denominator(np.array([value]))
    if den is None:
        return f"{value:.6g}"
    frac = Fraction(round(value * den), den)
    return str(frac) if frac.denominator != 1 else str(frac.numerator)


def _vector(values: np.ndarray) -> str:
    den = common_denominator(values)
    body = " ".join(format_number(v, den) for v in values)
    return f"[{body}]" + (f" / {den}" if den not in (None, 1) else "")


def heat_map_cells(rep: KernelReport) -> tuple[str, np.ndarray, list[list[str]]]:
    """A report as a heat map draws it: title (with the denominator), weights, cell labels."""
    title = rep.title + (f"  (/ {rep.denominator})" if rep.denominator not in (None, 1) else "")
    labels = [[format_number(v, rep.denominator) for v in row] for row in rep.weights]
    return title, rep.weights, labels

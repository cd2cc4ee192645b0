"""What ``convtool kernels show`` reports about a kernel, as data and as plain text.

The CLI draws the same report as a coloured heat map when stdout is a terminal.
"""

from __future__ import annotations

import shutil
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
    origin: tuple[int, int]  # scipy's: the centre's offset from k // 2 (shown as the centre)
    offset: float = 0.0

    @property
    def total(self) -> float:
        return float(self.weights.sum())

    @property
    def centre(self) -> tuple[int, int]:
        """The centre tap (row, column), as ``@origin=ROW,COL`` and kernel files give it."""
        return tuple(k // 2 + o for k, o in zip(self.weights.shape, self.origin, strict=True))


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
        origin=(int(kernel.origin[0]), int(kernel.origin[1])),
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


# Significant digits of a weight that is not an exact fraction: enough to tell weights
# apart, few enough that a row of them fits a line (never cut: a narrow line wraps columns).
DIGITS = 4
# Line width when stdout is not a terminal (and COLUMNS is unset).
PLAIN_WIDTH = 100
INDENT = "  "


def format_number(value: float, denominator: int | None) -> str:
    """One weight: an integer over the common denominator, else DIGITS significant digits."""
    if not np.isfinite(value):
        return str(value)
    if denominator is not None:
        return str(round(value * denominator))
    return f"{value:.{DIGITS}g}"


def line_width() -> int:
    """Characters per line: the terminal's (or COLUMNS), else PLAIN_WIDTH."""
    return shutil.get_terminal_size((PLAIN_WIDTH, 24)).columns


def cell_texts(weights: np.ndarray, denominator: int | None) -> tuple[list[list[str]], int]:
    """Every weight as text, and the width of the widest (all cells are right-aligned to it)."""
    cells = [[format_number(v, denominator) for v in row] for row in weights]
    return cells, max(len(c) for row in cells for c in row)


def column_blocks(columns: int, cell_width: int, width: int) -> list[range]:
    """The kernel's columns split into runs that fit ``width`` characters per line
    (``cell_width`` each, indent included); all of them in one run when they fit."""
    fitting = max(1, (width - len(INDENT)) // cell_width)
    runs = -(-columns // fitting)
    per_run = -(-columns // runs)  # as even as the runs can be: 19 in 7, 7, 5 (not 9, 9, 1)
    return [range(c, min(c + per_run, columns)) for c in range(0, columns, per_run)]


def block_title(block: range, columns: int) -> str | None:
    """The line above a run of columns when the matrix is wrapped (None when it is not)."""
    if len(block) == columns:
        return None
    return f"{INDENT}columns {block.start}-{block.stop - 1} of 0-{columns - 1}:"


def title_line(rep: KernelReport) -> str:
    """The report's first line: name, size (rows x columns) and how it is applied."""
    return f"{rep.title}: {rep.weights.shape[0]}x{rep.weights.shape[1]}, {_mode_note(rep)}"


def format_plain(reports: list[KernelReport], width: int | None = None) -> str:
    """The reports as plain text: matrix, sum, separability, factors, in ``width`` columns."""
    width = line_width() if width is None else width
    blocks = []
    for rep in reports:
        lines = [title_line(rep), *matrix_lines(rep.weights, rep.denominator, width)]
        lines += detail_lines(rep, width)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def matrix_lines(weights: np.ndarray, denominator: int | None, width: int) -> list[str]:
    """The weights as text rows, in runs of columns that fit ``width``; no number cut."""
    cells, cell_width = cell_texts(weights, denominator)
    lines = []
    for block in column_blocks(weights.shape[1], cell_width + 1, width):
        title = block_title(block, weights.shape[1])
        lines += [] if title is None else [title]
        lines += [INDENT + " ".join(row[c].rjust(cell_width) for c in block) for row in cells]
    return lines


def detail_lines(rep: KernelReport, width: int) -> list[str]:
    """What follows the matrix: its denominator, sum, offset, centre and factors."""
    lines = [] if rep.denominator in (None, 1) else [f"{INDENT}/ {rep.denominator}"]
    lines.append(f"sum: {_format_scalar(rep.total)}")
    if rep.offset:
        lines.append(f"offset: {_format_scalar(rep.offset)} (added after filtering)")
    if rep.origin != (0, 0):
        centre_row, centre_column = rep.centre
        lines.append(f"origin: {centre_row},{centre_column} (row,column of the centre tap, from 0)")
    if rep.factors is not None:
        column_factor, row_factor = rep.factors
        lines.append("separable: yes")
        lines += _vector_lines(f"{INDENT}column: ", column_factor, width)
        lines += _vector_lines(f"{INDENT}row:    ", row_factor, width)
    else:
        lines.append("separable: no")
    lines.append(f"engine: {implementation()}")
    return lines


def implementation() -> str:
    """Which code applies kernels by the direct and separable methods (FFT: numpy/scipy)."""
    from convtool.engine import native

    return f"{native.implementation()}; FFT: scipy"


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


def _vector_lines(label: str, values: np.ndarray, width: int) -> list[str]:
    """``label[v0 v1 ...] / d``, wrapped after whole numbers to stay within ``width``."""
    den = common_denominator(values)
    words = [format_number(v, den) for v in values]
    words[0] = "[" + words[0]
    words[-1] += "]" + (f" / {den}" if den not in (None, 1) else "")
    lines, line = [], label
    for word in words:
        if line.strip() and len(line) + 1 + len(word) > width and line != label:
            lines.append(line)
            line = " " * (len(label) + 1)
        line += word if line == label or not line.strip() else " " + word
    return [*lines, line]


def heat_map_cells(rep: KernelReport) -> tuple[str, np.ndarray, list[list[str]]]:
    """A report as a heat map draws it: title (with the denominator), weights, cell labels."""
    title = rep.title + (f"  (/ {rep.denominator})" if rep.denominator not in (None, 1) else "")
    labels = [[format_number(v, rep.denominator) for v in row] for row in rep.weights]
    return title, rep.weights, labels

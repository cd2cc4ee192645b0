"""An explanation as plain text: the matrices side by side, sums, and what flows on.

Padding cells are shown in parentheses ``(40)``, zeros a transposed step inserts in
brackets ``[0]``, and the cells between dilated taps (no weight) as ``·``.
"""

from __future__ import annotations

import numpy as np

from convtool.padding import PICTURES
from convtool.teach.explanation import Explanation, StepExplanation, Term
from convtool.teach.geometry import INSERTED, PADDING

KIND_NAMES = {
    "convolve": "convolution (kernel flipped)",
    "correlate": "correlation (kernel as written)",
    "convolve-transposed": "transposed convolution",
    "correlate-transposed": "transposed correlation",
    "grad": "gradient magnitude",
    "maxpool": "max pooling",
    "avgpool": "average pooling",
}
NORM_FORMULAS = {"l2": "sqrt(gx² + gy²)", "l1": "|gx| + |gy|", "max": "max(|gx|, |gy|)"}
MAX_SOURCES_SHOWN = 12


def number(value: float) -> str:
    """A value as a person reads it: integers without a point, others to 6 digits."""
    if value == 0:
        return "0"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def format_explanation(explanation: Explanation) -> str:
    """The whole explanation: one block per step, then the output."""
    count = len(explanation.steps)
    blocks = [_step_block(step, count) for step in explanation.steps]
    r, c = explanation.at
    tail = [f"output ({r}, {c}) = {number(explanation.output)}"]
    if explanation.written is not None and (
        explanation.depth != "float" or explanation.range_mode is not None
    ):
        depth = "float" if explanation.depth == "float" else f"{explanation.depth}-bit"
        mode = explanation.range_mode or "clip"
        tail.append(f"written as {depth} with --range {mode}: {number(explanation.written)}")
    tail += [f"note: {n}" for n in explanation.notes]
    return "\n\n".join(blocks + ["\n".join(tail)]) + "\n"


def _step_block(step: StepExplanation, count: int) -> str:
    lines = [_heading(step, count)]
    lines.append("  " + _where(step))
    if not step.terms:
        lines += [f"  note: {n}" for n in step.notes]
        lines.append(f"  value = {number(step.value)}")
        return "\n".join(lines)
    shared_window = step.kind == "grad" or (len(step.terms) == 1)
    if step.kind == "grad":
        lines.append("")
        lines += _grid_rows([("window", _cells(step.terms[0], step.terms[0].window))])
        for term in step.terms:
            lines.append("")
            lines += _grid_rows(
                [
                    (f"{term.label} weights", _weights(term)),
                    (f"{term.label} products", _products(term)),
                ]
            )
            lines.append(f"  {term.label} = {_sum_text(term)}")
        formula = NORM_FORMULAS[step.combine]
        lines.append(f"\n  {step.combine}: {formula} = {number(step.computed)}")
    else:
        for term in step.terms:
            lines.append("")
            if not shared_window or term.label:
                lines.append(f"  {term.label or 'window'}:")
            columns = [("window", _cells(term, term.window))]
            if term.weights is not None:
                columns += [("weights (as applied)", _weights(term)), ("products", _products(term))]
            lines += _grid_rows(columns)
            if term.weights is not None:
                lines.append(f"  sum = {_sum_text(term)}")
        lines.append("")
        lines += _combination(step)
    lines += ["  " + part for part in _legend(step)]
    lines += [f"  note: {n}" for n in step.notes]
    value = number(step.value)
    if not np.isclose(step.value, step.computed, rtol=1e-5, atol=1e-6):
        value += f"  (the products give {number(step.computed)})"
    lines.append(f"  value = {value}")
    return "\n".join(lines)


def _heading(step: StepExplanation, count: int) -> str:
    what = KIND_NAMES.get(step.kind, step.kind)
    if step.kind.startswith("layer-"):
        what = "layer: " + KIND_NAMES[step.kind[len("layer-") :]]
    parts = [f"step {step.number} of {count}: {step.spec}", what]
    if step.padding is not None:
        parts.append(f"padding {step.padding.value}")
    parts.append(
        f"stride {step.stride[0]}"
        if step.stride[0] == step.stride[1]
        else f"stride {step.stride[0]}x{step.stride[1]}"
    )
    if step.dilation != 1:
        parts.append(f"dilation {step.dilation}")
    return ", ".join(parts)


def _where(step: StepExplanation) -> str:
    (r, c), (h, w) = step.at, step.output_shape
    text = f"output ({r}, {c}) of {h}x{w}"
    if step.channel or step.input_shape:
        text += f", channel {step.channel}" if step.channel else ""
    if step.anchor is not None and step.terms:
        ar, ac = step.anchor
        if step.kind.endswith("transposed"):
            text += f" sits over input pixel ({ar}, {ac})"
        elif step.kind == "maxpool":
            text += f" takes input pixel ({ar}, {ac})"
        else:
            text += f" is centred on input ({ar}, {ac})"
    term = step.terms[0] if step.terms else None
    if term is not None:
        grid = "upsampled input" if step.kind.endswith("transposed") else "input"
        text += (
            f"; window: {grid} rows {term.rows[0]}..{term.rows[-1]}, "
            f"columns {term.cols[0]}..{term.cols[-1]}"
        )
    return text


def _combination(step: StepExplanation) -> list[str]:
    if step.combine == "max":
        return [f"  max = {number(step.computed)}"]
    if step.combine == "mean":
        return [f"  mean = {number(step.computed)}"]
    lines = []
    if len(step.terms) > 1:
        sums = " + ".join(number(_term_sum(t)) for t in step.terms)
        lines.append(f"  sum of the {len(step.terms)} windows = {sums}")
    if step.offset:
        what = "bias" if step.kind.startswith("layer-") else "offset"
        lines.append(f"  + {what} {number(step.offset)}")
    return lines


def _legend(step: StepExplanation) -> list[str]:
    parts = []
    padded = [(cell, term) for term in step.terms for cell in term.cells(PADDING)]
    if padded and step.padding is not None:
        parts.append(f"( ) padding, {step.padding.value}: {PICTURES[step.padding]}")
        copies: list[str] = []
        for (r, c), term in padded:
            source = term.sources[r][c]
            text = f"({term.rows[r]},{term.cols[c]})←({source[0]},{source[1]})" if source else ""
            if text and text not in copies:
                copies.append(text)
        if copies:
            shown = copies[:MAX_SOURCES_SHOWN]
            more = f" and {len(copies) - len(shown)} more" if len(copies) > len(shown) else ""
            parts.append("  copied from: " + " ".join(shown) + more)
    if any(term.cells(INSERTED) for term in step.terms):
        parts.append(f"[ ] zeros inserted between input pixels (stride {step.stride[0]})")
    if step.dilation > 1:
        parts.append(f"· between taps (dilation {step.dilation}: no weight)")
    return parts


def _cells(term: Term, values: np.ndarray) -> list[list[str]]:
    out = []
    for r, row in enumerate(values):
        line = []
        for c, v in enumerate(row):
            text = number(v)
            kind = term.kinds[r][c]
            if kind == PADDING:
                text = f"({text})"
            elif kind == INSERTED:
                text = f"[{text}]"
            line.append(text)
        out.append(line)
    return out


def _weights(term: Term) -> list[list[str]]:
    assert term.weights is not None, "only terms with weights show them"
    return [
        [number(w) if tap else "·" for w, tap in zip(row, taps, strict=True)]
        for row, taps in zip(term.weights, term.taps, strict=True)
    ]


def _term_products(term: Term) -> np.ndarray:
    products = term.products
    assert products is not None, "only terms with weights show products and sums"
    return products


def _term_sum(term: Term) -> float:
    return float(_term_products(term)[term.taps].sum())


def _products(term: Term) -> list[list[str]]:
    return [
        [number(p) if tap else "·" for p, tap in zip(row, taps, strict=True)]
        for row, taps in zip(_term_products(term), term.taps, strict=True)
    ]


def _sum_text(term: Term) -> str:
    products = _term_products(term)[term.taps]
    shown = [number(p) for p in products]
    total = _term_sum(term)
    if len(shown) > 25:  # a large kernel: the total only
        return number(total)
    text = " + ".join(shown).replace("+ -", "- ")
    return f"{text} = {number(total)}"


def _grid_rows(columns: list[tuple[str, list[list[str]]]]) -> list[str]:
    """Matrices side by side under their titles, each right-aligned in its own width."""
    blocks = []
    for title, cells in columns:
        width = max(len(t) for row in cells for t in row)
        rows = ["  ".join(t.rjust(width) for t in row) for row in cells]
        block_width = max(len(title), *(len(r) for r in rows))
        blocks.append(
            [title.ljust(block_width)] + [r.rjust(len(rows[0])).ljust(block_width) for r in rows]
        )
    gap = "    "
    return ["  " + gap.join(parts).rstrip() for parts in zip(*blocks, strict=True)]

"""What an explanation of one output pixel holds, and its JSON (``convtool explain --json``).

An :class:`Explanation` is every step's :class:`StepExplanation`, first to last, with the
chain's value at the pixel, raw and as written. A step's explanation is its :class:`Term`
(one window times one kernel: the cells read, the weights as applied, their products; more
than one for a gradient's two derivatives, a layer's input channels or a transposed border
that folds), how they combine, and the engine's own value to check the sum against.
:mod:`convtool.teach.explain` makes them; :mod:`convtool.teach.render` draws them as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from convtool.padding import Padding
from convtool.teach.geometry import INSERTED, PADDING

__all__ = ["Explanation", "StepExplanation", "Term", "known_sum"]


@dataclass
class Term:
    """One window times one kernel: the cells read, the weights as applied, their products."""

    label: str  # "" for a plain step; "gx"/"gy", "channel 1", "folded" ... otherwise
    rows: np.ndarray  # grid coordinates of the window's rows (input positions, or upsampled)
    cols: np.ndarray
    window: np.ndarray  # (span_h, span_w) values read
    weights: np.ndarray | None  # (span_h, span_w), dilated taps placed, 0 between; None: max
    taps: np.ndarray  # bool (span_h, span_w): the cells a weight multiplies
    kinds: list[list[str]]  # input / padding / inserted, per cell
    sources: list[list[tuple[int, int] | None]]  # the input pixel each cell reads, if any
    channel: int = 0  # the input channel the window is on

    @property
    def products(self) -> np.ndarray | None:
        return None if self.weights is None else self.window * self.weights

    @property
    def sum(self) -> float | None:
        products = self.products
        return None if products is None else float(products[self.taps].sum())

    def cells(self, kind: str) -> list[list[int]]:
        """[row, col] of the window cells of ``kind`` (padding, inserted)."""
        return [[r, c] for r, row in enumerate(self.kinds) for c, k in enumerate(row) if k == kind]


@dataclass
class StepExplanation:
    """One step at one pixel: its terms, how they combine, and the engine's value."""

    number: int  # 1-based position in the chain (iterations unrolled)
    spec: str
    kind: str  # convolve, correlate, convolve-transposed, ..., grad, maxpool, avgpool, layer
    at: tuple[int, int]  # the output pixel of this step
    channel: int
    input_shape: tuple[int, int]
    output_shape: tuple[int, int]
    padding: Padding | None
    stride: tuple[int, int]
    dilation: int
    terms: list[Term]
    combine: str  # sum, l2, l1, max (gradient norms), maxpool, mean
    value: float  # the engine's result at ``at``
    computed: float  # the same from the terms shown (float64)
    offset: float = 0.0  # a kernel's constant offset, or a layer's bias, added after the sum
    anchor: tuple[int, int] | None = None  # the input pixel this output comes from
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        if not self.terms:  # a transposed output no input pixel scatters onto
            return {
                "step": self.number,
                "spec": self.spec,
                "kind": self.kind,
                "at": list(self.at),
                "channel": self.channel,
                "window": None,
                "weights": None,
                "products": None,
                "sum": 0.0,
                "padding_cells": [],
                "offset": self.offset,
                "value": self.value,
                "computed": self.computed,
                "anchor": None,
                "notes": self.notes,
            }
        main = self.terms[0]
        data = {
            "step": self.number,
            "spec": self.spec,
            "kind": self.kind,
            "at": list(self.at),
            "channel": self.channel,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "padding": self.padding.value if self.padding else None,
            "stride": list(self.stride),
            "dilation": self.dilation,
            "window_rows": main.rows.tolist(),
            "window_cols": main.cols.tolist(),
            "window": main.window.tolist(),
            "padding_cells": main.cells(PADDING),
            "inserted_cells": main.cells(INSERTED),
            "sources": [[None if s is None else list(s) for s in row] for row in main.sources],
        }
        if self.kind == "grad":
            data["derivatives"] = [_term_json(t) for t in self.terms]
            data["norm"] = self.combine
        else:
            data.update(
                weights=None if main.weights is None else main.weights.tolist(),
                products=None if main.products is None else main.products.tolist(),
                sum=main.sum,
            )
            if len(self.terms) > 1:
                data["terms"] = [_term_json(t, window=True) for t in self.terms]
                data["sum"] = float(sum(known_sum(t) for t in self.terms))
        data.update(
            offset=self.offset,
            value=self.value,
            computed=self.computed,
            anchor=None if self.anchor is None else list(self.anchor),
            notes=self.notes,
        )
        return data


def _term_json(term: Term, window: bool = False) -> dict:
    data: dict = {"label": term.label, "channel": term.channel}
    if window:
        data.update(
            window_rows=term.rows.tolist(),
            window_cols=term.cols.tolist(),
            window=term.window.tolist(),
            padding_cells=term.cells(PADDING),
            inserted_cells=term.cells(INSERTED),
        )
    data.update(
        weights=None if term.weights is None else term.weights.tolist(),
        products=None if term.products is None else term.products.tolist(),
        sum=term.sum,
    )
    return data


@dataclass
class Explanation:
    """Every step's explanation, first to last, and the output value, raw and as written."""

    steps: list[StepExplanation]
    at: tuple[int, int]
    channel: int
    output: float  # the chain's result at ``at`` (raw float)
    written: float | None  # the sample an output file holds (after --range and --depth)
    depth: int | str
    range_mode: str | None
    output_shape: tuple[int, int]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "at": list(self.at),
            "channel": self.channel,
            "output_shape": list(self.output_shape),
            "steps": [s.to_json() for s in self.steps],
            "output": self.output,
            "written": self.written,
            "depth": self.depth,
            "range": self.range_mode,
            "notes": self.notes,
        }


def known_sum(term: Term) -> float:
    """The sum of a kernel term (only a max-pool term, never summed, has no weights)."""
    total = term.sum
    assert total is not None, "a summed term has weights"
    return total

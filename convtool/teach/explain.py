"""Explain one output pixel: the window each step reads, the weights, products and sums.

:func:`explain` runs the chain exactly as ``convtool filter`` does (each step's ``apply``,
the same engine calls) and keeps every intermediate image; then, from the last step back to
the first, it lays the window of the pixel asked for over that step's input with the
engine's own geometry (:mod:`convtool.teach.geometry`) and multiplies it out. Each step's
``value`` is the engine's result at that pixel and ``computed`` the sum shown, so the two
agree (to float rounding) or the explanation is wrong; the tests hold them equal for every
padding, stride, dilation, kernel parity, convolution and correlation, transposed or not.

The result is an :class:`~convtool.teach.explanation.Explanation` (its types and JSON are
in :mod:`convtool.teach.explanation`). Going back, the pixel each earlier step explains is the one under the later step's kernel
centre (:meth:`Line.anchor`; a max-pooling step follows its maximum), so the blocks read in
order with each value flowing into the next window. A centre on a constant border cell
(zero padding, ``full``) came from no earlier pixel: the earlier steps are left out.
"""

from __future__ import annotations

import numpy as np

from convtool.errors import UsageError
from convtool.padding import PICTURES, Padding
from convtool.pipeline import (
    ConvolveStep,
    FilterOptions,
    GradientStep,
    LayerStep,
    PoolStep,
    combine_gradients,
)
from convtool.pipeline.steps import check_transposable
from convtool.teach.explanation import Explanation, StepExplanation, Term, known_sum
from convtool.teach.geometry import (
    INPUT,
    INSERTED,
    PADDING,
    StepGeometry,
    convolution_geometry,
    pool_geometry,
)

__all__ = ["Explanation", "StepExplanation", "Term", "explain", "explain_pixels"]


def explain(
    pixels,
    steps,
    options: FilterOptions | None = None,
    *,
    at: tuple[int, int],
    iterations: int = 1,
    channel: int = 0,
    source_depth: int | str = "float",
    depth: int | str | None = None,
    range_mode: str | None = None,
) -> Explanation:
    """Explain output pixel ``at`` (row, column) of channel ``channel`` of a chain.

    ``pixels`` is (H, W) or (H, W, C), in its value scale; ``steps`` parsed steps
    (:func:`convtool.pipeline.parse_steps`); ``options`` as for ``filter``. ``source_depth``
    is the input's depth (8, 16: its value scale; ``"float"``), ``depth`` and ``range_mode``
    say how the result would be written, as ``filter``'s ``--depth`` and ``--range`` do
    (``depth=None``: the input's depth; ``"float"`` without a range: the raw value).

    >>> from convtool.pipeline import parse_steps
    >>> e = explain(np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90.]]),
    ...             parse_steps(["sharpen"]), at=(1, 1))
    >>> e.output, e.steps[0].terms[0].products[1].tolist()
    (50.0, [-40.0, 250.0, -60.0])
    """
    return explain_pixels(
        pixels,
        steps,
        options,
        [at],
        iterations=iterations,
        channel=channel,
        source_depth=source_depth,
        depth=depth,
        range_mode=range_mode,
    )[0]


def explain_pixels(
    pixels,
    steps,
    options: FilterOptions | None = None,
    positions=(),
    *,
    iterations: int = 1,
    channel: int = 0,
    source_depth: int | str = "float",
    depth: int | str | None = None,
    range_mode: str | None = None,
) -> list[Explanation]:
    """:func:`explain` for each of ``positions`` (row, column), running the chain once."""
    from convtool.images.ranges import output_samples

    options = options or FilterOptions()
    steps = list(steps)
    check_transposable(steps, options)
    x = np.asarray(pixels)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.dtype.kind not in "biuf":
        raise UsageError(f"explain needs an (H, W) or (H, W, C) array of numbers, got {x.shape}")
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise UsageError("the input has NaN or infinite values, which cannot be filtered")
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
        raise UsageError(f"--iterations must be a whole number ≥ 1, got {iterations}")

    stages = []  # (step, its input (C, H, W), its output)
    stack = np.moveaxis(x, -1, 0)
    for _ in range(int(iterations)):
        for step in steps:
            result = step.apply(stack, options)
            stages.append((step, stack, result))
            stack = result
    final = stack
    if not 0 <= channel < final.shape[0]:
        raise UsageError(f"--channel {channel} does not exist: the result has {final.shape[0]}")
    depth = source_depth if depth is None else depth
    samples = None
    if depth != "float" or range_mode is not None:
        picture = np.moveaxis(final, 0, -1)
        samples, _ = output_samples(picture, None, source_depth, depth, range_mode)
    return [
        _explain_at(
            stages,
            final,
            _checked_at(at, final.shape[1:]),
            channel,
            options,
            samples,
            depth,
            range_mode,
        )
        for at in positions
    ]


def _explain_at(stages, final, at, channel, options, samples, depth, range_mode) -> Explanation:
    """Walk back from the last step to the first (see the module) at one output pixel."""
    explained: list[StepExplanation] = []
    notes: list[str] = []
    position, chan = at, channel
    for number in range(len(stages), 0, -1):
        step, source, result = stages[number - 1]
        block, previous = _explain_step(step, source, result, position, chan, options, number)
        explained.append(block)
        if number == 1:
            break
        if previous is None:
            notes.append(
                f"step {number}'s centre reads a constant border cell, which no earlier step "
                f"made: steps 1-{number - 1} are not shown"
            )
            break
        position, chan = previous
    explained.reverse()
    output = float(final[channel][at])
    written = output if samples is None else float(samples[at[0], at[1], channel])
    return Explanation(
        explained, at, channel, output, written, depth, range_mode, tuple(final.shape[1:]), notes
    )


def _checked_at(at, shape) -> tuple[int, int]:
    try:
        row, col = (int(v) for v in at)
    except (TypeError, ValueError):
        raise UsageError(f"--at takes ROW,COL (whole numbers), got {at!r}") from None
    if not (0 <= row < shape[0] and 0 <= col < shape[1]):
        raise UsageError(
            f"--at {row},{col} is outside the output, which is {shape[0]}x{shape[1]} "
            f"(rows 0..{shape[0] - 1}, columns 0..{shape[1] - 1})"
        )
    return (row, col)


def _explain_step(step, source, result, at, channel, options: FilterOptions, number: int):
    """One step's block, and the (position, channel) of the pixel it comes from (or None)."""
    shape = source.shape[1:]
    value = float(result[channel][at])
    fill = options.cval if options.padding is Padding.CONSTANT else 0.0
    common = dict(
        number=number,
        spec=step.spec,
        at=at,
        channel=channel,
        input_shape=shape,
        output_shape=result.shape[1:],
        value=value,
    )
    previous: tuple[tuple[int, int], int] | None
    if isinstance(step, PoolStep):
        geometry = pool_geometry(shape, step.size, step.stride)
        term = _terms(geometry, source[channel], at, 0.0, "", channel)[0]
        if step.kind == "maxpool":
            term.weights = None
            flat = int(np.argmax(term.window))
            r, c = np.unravel_index(flat, term.window.shape)
            computed, previous = (
                float(term.window.max()),
                ((int(term.rows[r]), int(term.cols[c])), channel),
            )
        else:
            computed = term.sum
            previous = (_anchor(geometry, at), channel)
        block = StepExplanation(
            kind=step.kind,
            padding=None,
            stride=(step.stride[0], step.stride[1]),
            dilation=1,
            terms=[term],
            combine="max" if step.kind == "maxpool" else "mean",
            computed=computed,
            anchor=previous[0],
            **common,
        )
        return block, previous

    kind = ("correlate" if options.correlate else "convolve") + (
        "-transposed" if options.transposed else ""
    )
    pairs, offset, combine = _pairs(step, source.shape[0], channel, options)
    terms: list[Term] = []
    assert pairs, "a kernel step has at least one kernel"
    for label, chan, kernel in pairs:
        geometry = convolution_geometry(
            shape,
            kernel.weights,
            padding=options.padding,
            stride=options.stride,
            dilation=options.dilation,
            origin=kernel.origin,
            correlate=options.correlate,
            transposed=options.transposed,
        )
        found = _terms(geometry, source[chan], at, fill, label, chan)
        if len(found) > 1:
            for index, term in enumerate(found[1:], 2):
                term.label = f"{label} folded {index}".strip()
        terms += found
    if combine == "sum":
        computed = float(sum(known_sum(t) for t in terms)) + offset
    else:
        half = len(terms) // 2  # gx terms, then gy terms
        gx = np.array([sum(known_sum(t) for t in terms[:half])])
        gy = np.array([sum(known_sum(t) for t in terms[half:])])
        computed = float(combine_gradients(gx, gy, combine)[0])
    anchor = _anchor(geometry, at)
    inside = (
        0 <= anchor[0] < shape[0] and 0 <= anchor[1] < shape[1]
    )  # the transposed anchor is an input pixel, or outside
    previous = None
    notes = []
    if not terms:
        notes.append("no input pixel scatters onto this output pixel: it is 0 (plus any offset)")
    elif not options.transposed:
        src = (
            int(geometry.rows.sources([anchor[0]])[0]),
            int(geometry.cols.sources([anchor[1]])[0]),
        )
        if src[0] >= 0 and src[1] >= 0:
            previous = (src, terms[0].channel)
    elif inside:
        previous = (anchor, terms[0].channel)
    if isinstance(step, LayerStep):
        kind = "layer-" + kind
        if len({t.channel for t in terms}) > 1:
            notes.append(f"earlier steps are followed on input channel {terms[0].channel}")
    elif isinstance(step, GradientStep):
        kind = "grad"
    block = StepExplanation(
        kind=kind,
        padding=options.padding,
        stride=(options.stride, options.stride),
        dilation=options.dilation,
        terms=terms,
        combine=combine,
        computed=computed,
        offset=offset,
        anchor=anchor,
        notes=notes,
        **common,
    )
    return block, previous


def _anchor(geometry: StepGeometry, at) -> tuple[int, int]:
    return (geometry.rows.anchor(at[0]), geometry.cols.anchor(at[1]))


class _Plain:
    """A 2-D kernel as the geometry needs it: weights and origin."""

    def __init__(self, weights, origin=(0, 0)) -> None:
        self.weights, self.origin = np.asarray(weights, dtype=np.float64), tuple(origin)


def _pairs(step, channels: int, channel: int, options: FilterOptions):
    """The (label, input channel, kernel) whose windows make output ``channel``, the constant
    added after their sum, and how the terms combine."""
    if isinstance(step, ConvolveStep):
        kernel = step.kernel.normalized() if options.normalize else step.kernel
        return [("", channel, kernel)], kernel.offset, "sum"
    if isinstance(step, GradientStep):
        kx, ky = step.kx, step.ky
        if options.normalize:
            kx, ky = kx.normalized(), ky.normalized()
        return [("gx", channel, kx), ("gy", channel, ky)], 0.0, step.norm
    if isinstance(step, LayerStep):
        layer = step.layer.normalized() if options.normalize else step.layer
        groups = layer.groups_for(channels, options.transposed)
        c_out, per_group = layer.weights.shape[:2]
        out_per_group = c_out // groups
        bias = 0.0 if layer.bias is None else float(layer.bias[channel])
        if options.transposed:  # output channel = g*per_group + c, summed over the group's o
            g, c = divmod(channel, per_group)
            os_ = range(g * out_per_group, (g + 1) * out_per_group)
            return [(f"channel {o}", o, _Plain(layer.weights[o, c])) for o in os_], bias, "sum"
        g = channel // out_per_group
        pairs = [
            (f"channel {g * per_group + c}", g * per_group + c, _Plain(layer.weights[channel, c]))
            for c in range(per_group)
        ]
        return pairs, bias, "sum"
    raise UsageError(f"explain does not know the step {step.spec or type(step).__name__!r}")


def _terms(geometry: StepGeometry, plane: np.ndarray, at, fill: float, label: str, channel: int):
    """The windows of output ``at`` over ``plane`` (one; more where a transposed border folds)."""
    rows, cols = geometry.rows, geometry.cols
    placed, mask = geometry.placed_weights(), geometry.tap_mask()
    span_r, span_c = np.arange(rows.span), np.arange(cols.span)
    terms = []
    for r0 in rows.starts(at[0]):
        for c0 in cols.starts(at[1]):
            rr, cc = r0 + span_r, c0 + span_c
            sr, sc = rows.sources(rr), cols.sources(cc)
            kr, kc = rows.kinds(rr), cols.kinds(cc)
            window = np.full((rows.span, cols.span), 0.0 if rows.transposed else fill)
            ok = np.outer(sr >= 0, sc >= 0)
            window[ok] = plane[np.ix_(sr[sr >= 0], sc[sc >= 0])].ravel()
            kinds = [[_kind(a, b) for b in kc] for a in kr]
            sources = [
                [
                    (int(a), int(b)) if a >= 0 and b >= 0 and _kind(ka, kb) == PADDING else None
                    for b, kb in zip(sc, kc, strict=True)
                ]
                for a, ka in zip(sr, kr, strict=True)
            ]
            terms.append(Term(label, rr, cc, window, placed.copy(), mask, kinds, sources, channel))
    return terms


def _kind(row_kind: str, col_kind: str) -> str:
    """A cell is padding if either coordinate is; else inserted if either is; else input."""
    for kind in (PADDING, INSERTED):
        if kind in (row_kind, col_kind):
            return kind
    return INPUT


def describe_padding(padding: Padding) -> str:
    """The padding mode's name and picture, as the legend of an explanation."""
    return f"{padding.value} ({PICTURES[padding]})"

"""The teaching commands: ``convtool explain`` (one output pixel) and ``convtool animate``.

Options mean what they mean for ``filter`` (the shared types in :mod:`convtool.cli.options`);
the numbers come from :mod:`convtool.teach` and the pictures from
:mod:`convtool.images.animation`. :func:`register` adds both commands to the app.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from convtool.choices import Method, Precision
from convtool.cli.options import (
    Bias,
    Correlate,
    Cval,
    Debug,
    DepthOption,
    Dilation,
    Gray,
    Groups,
    Iterations,
    KernelSpecs,
    MaxPixels,
    MethodOption,
    Normalize,
    PaddingMode,
    PrecisionOption,
    RangeOption,
    Stride,
    Transposed,
    fail,
    pixel_limit,
)
from convtool.padding import Padding
from convtool.padding import help_text as padding_help

EXPLAIN_EPILOG = """Examples:

\b
  convtool explain "[10 20 30; 40 50 60; 70 80 90]" -k sharpen --at 1,1
  convtool explain "[10 20 30; 40 50 60; 70 80 90]" -k sobel-x --at 0,0 --padding edge
  convtool explain photo.png -k gaussian:sigma=1 -k grad:sobel --at 120,64 --json
  convtool explain "[0 0 0 0 0; 0 0 0 0 0; 0 0 1 0 0; 0 0 0 0 0; 0 0 0 0 0]" -k binomial:3 -n 2 --at 2,2
  convtool explain "[1 2; 3 4]" -k binomial:3 --transposed --stride 2 -p zero --at 1,1
"""
PADDING_PICTURES = "\n\b\nPadding modes (k = kernel side):\n" + "\n".join(
    "  " + line for line in padding_help().splitlines()
)

ANIMATE_EPILOG = """Examples:

\b
  convtool animate --size 5x5 -k box:3 --padding zero --stride 2 -o conv.gif
  convtool animate --size 5x5 -k box:3 --dilation 2 --padding valid -o dilated.gif
  convtool animate "[1 2 3; 4 5 6; 7 8 9]" -k sharpen --padding reflect -o frames/
  convtool animate --size 3x3 -k box:3 --transposed --stride 2 --padding valid -o up.gif
  convtool animate --size 6x6 -k maxpool:2 -o pool.gif
"""

INPUT_HELP = (
    "An image file ('-' for stdin) or an inline matrix such as \"[10 20 30; 40 50 60; 70 80 90]\"."
)


def _filter_options(padding, cval, stride, dilation, correlate, normalize, method, transposed):
    from convtool.pipeline import FilterOptions

    return FilterOptions(
        padding=padding,
        cval=cval,
        stride=stride,
        dilation=dilation,
        correlate=correlate,
        normalize=normalize,
        method=method.value,
        transposed=transposed,
    )


def _parse_at(text: str) -> tuple[int, int]:
    from convtool.errors import UsageError

    parts = [p for p in text.replace(" ", ",").split(",") if p]
    if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
        raise UsageError(f"--at takes ROW,COL (whole numbers from 0), got {text!r}")
    return (int(parts[0]), int(parts[1]))


def explain(
    source: Annotated[str, typer.Argument(metavar="INPUT", help=INPUT_HELP, show_default=False)],
    kernel: KernelSpecs,
    at: Annotated[
        str,
        typer.Option(
            "--at",
            metavar="ROW,COL",
            help="The output pixel to explain, counted from 0 (after any stride).",
            show_default=False,
        ),
    ],
    padding: PaddingMode = Padding.REFLECT.value,
    cval: Cval = 0.0,
    iterations: Iterations = 1,
    correlate: Correlate = False,
    stride: Stride = 1,
    dilation: Dilation = 1,
    normalize: Normalize = False,
    transposed: Transposed = False,
    groups: Groups = None,
    bias: Bias = None,
    precision: PrecisionOption = Precision.single,
    method: MethodOption = Method.auto,
    range_mode: RangeOption = None,
    depth: DepthOption = None,
    gray: Gray = False,
    channel: Annotated[
        int, typer.Option("--channel", min=0, help="The output channel to explain (0: the first).")
    ] = 0,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the explanation as JSON: steps (window, weights, products, sum, "
            "value, padding_cells, ...) and output.",
        ),
    ] = False,
    max_pixels: MaxPixels = None,
    debug: Debug = False,
) -> None:
    """Show how one output pixel is computed: each step's window, weights, products and sum.

    The window is read from the (padded) input exactly as `filter` reads it; padded cells
    are marked and named by mode, the weights shown as applied (flipped under true
    convolution, as written under --correlate, dilated taps placed). A chain shows one block
    per step, each value flowing into the next window.
    """
    try:
        from convtool import teach
        from convtool.pipeline import parse_steps, with_layer_options

        options = _filter_options(
            padding, cval, stride, dilation, correlate, normalize, method, transposed
        )
        steps = with_layer_options(parse_steps(kernel), groups or [], bias or [])
        image = teach.read_input(
            source, precision=precision.value, gray=gray, max_pixels=pixel_limit(max_pixels)
        )
        result = teach.explain(
            image.pixels,
            steps,
            options,
            at=_parse_at(at),
            iterations=iterations,
            channel=channel,
            source_depth=image.depth,
            depth=_depth(depth),
            range_mode=range_mode.value if range_mode else None,
        )
        if as_json:
            import json

            print(json.dumps(result.to_json(), indent=1))
        else:
            sys.stdout.write(teach.format_explanation(result))
    except Exception as err:  # noqa: BLE001 - every failure becomes one line
        raise fail(err, debug) from None


def _depth(depth) -> int | str | None:
    if depth is None:
        return None
    return "float" if depth.value == "float" else int(depth.value)


def animate(
    source: Annotated[
        str | None,
        typer.Argument(
            metavar="[INPUT]",
            help=INPUT_HELP + " Colour is shown as luminance. Or --size for a blank grid.",
            show_default=False,
        ),
    ] = None,
    kernel: KernelSpecs = ...,  # type: ignore[assignment]
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            help="A .gif, or a folder (ending in /) for one PNG per frame.",
            show_default=False,
        ),
    ] = ...,  # type: ignore[assignment]
    size: Annotated[
        str | None,
        typer.Option(
            "--size",
            metavar="HxW",
            help="Animate over a blank grid of H x W cells instead of an input.",
            show_default=False,
        ),
    ] = None,
    padding: PaddingMode = Padding.ZERO.value,
    cval: Cval = 0.0,
    correlate: Correlate = False,
    stride: Stride = 1,
    dilation: Dilation = 1,
    normalize: Normalize = False,
    transposed: Transposed = False,
    cell: Annotated[
        int, typer.Option("--cell", help="Side of a grid cell in pixels (8-200).")
    ] = 40,
    duration: Annotated[
        int, typer.Option("--duration", min=20, help="Milliseconds per frame (the last: 3x).")
    ] = 700,
    numbers: Annotated[
        bool | None,
        typer.Option(
            "--numbers/--no-numbers",
            help="Write the values in the cells (and the weights on the kernel's taps). "
            "Default: on for an input, off for --size.",
            show_default=False,
        ),
    ] = None,
    max_pixels: MaxPixels = None,
    debug: Debug = False,
) -> None:
    """Animate the kernel sliding over the (padded) input as the output fills in.

    One frame per output pixel and a last frame of the whole result, in the style of
    conv_arithmetic: padded cells show their values (or mirrored colours), dilated taps sit
    apart, --transposed slides over the input with zeros inserted, maxpool:N/avgpool:N pool.
    """
    try:
        from convtool import teach
        from convtool.errors import UsageError
        from convtool.images import animation
        from convtool.pipeline import parse_steps

        if (source is None) == (size is None):
            raise UsageError("animate takes an INPUT or --size HxW (one of them)")
        if len(kernel) != 1:
            raise UsageError("animate draws one step: give one -k (animate a chain step by step)")
        options = _filter_options(
            padding, cval, stride, dilation, correlate, normalize, Method.auto, transposed
        )
        (step,) = parse_steps(kernel)
        if size is not None:
            plane, blank = teach.blank_grid(size), True
        else:
            assert source is not None  # one of INPUT and --size, checked above
            image = teach.read_input(source, gray=True, max_pixels=pixel_limit(max_pixels))
            plane, blank = image.pixels[..., 0], False
        slides = teach.build_slides(plane, step, options, blank=blank)
        frames = animation.draw_frames(
            slides, cell=cell, numbers=(not blank) if numbers is None else numbers
        )
        if output.endswith(("/", os.sep)) or os.path.isdir(output):
            animation.save_frames(output, frames)
        elif output.lower().endswith(".gif"):
            animation.save_gif(output, frames, duration, last=3 * duration)
        else:
            raise UsageError(
                f"animate writes a .gif, or PNG frames into a folder (-o frames/); got {output!r}"
            )
    except Exception as err:  # noqa: BLE001 - every failure becomes one line
        raise fail(err, debug) from None


def register(app: typer.Typer) -> None:
    """Add ``explain`` and ``animate`` to ``app``."""
    app.command(epilog=EXPLAIN_EPILOG + PADDING_PICTURES)(explain)
    app.command(epilog=ANIMATE_EPILOG + PADDING_PICTURES)(animate)

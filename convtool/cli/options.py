"""What the CLI's commands share: option types and choices, and how errors end a command.

Only the CLI layer imports this (it imports typer); the commands live in :mod:`convtool.cli`
and :mod:`convtool.cli_analysis`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import Annotated

import typer

from convtool.choices import (
    AlphaMode,
    Compression,
    Depth,
    Frames,
    Geometry,
    Method,
    Precision,
    RangeMode,
    Subsampling,
)
from convtool.cli import terminal
from convtool.errors import ConvtoolError, UsageError

DEBUG_ENV = "CONVTOOL_DEBUG"


# Set by any --debug on the command line (the app's, a group's or a command's), so
# `convtool kernels --debug show X` shows the traceback of `show`; reset for each run.
_debug_given = False


def reset_debug() -> None:
    """Forget a ``--debug`` seen earlier (each CliRunner invocation starts afresh)."""
    global _debug_given
    _debug_given = False


def _note_debug(value: bool) -> bool:
    global _debug_given
    _debug_given = _debug_given or bool(value)
    return value


def debug_enabled(flag: bool = False) -> bool:
    """--debug given anywhere on the command line, or CONVTOOL_DEBUG set (not to 0)."""
    return flag or _debug_given or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def refuse_terminals(*, reads_stdin: bool = False, writes_stdout: bool = False) -> None:
    """Refuse to read an image from a terminal, or to write one to it (as gzip does).

    Image bytes on a terminal are garbage and can upset it; a terminal on stdin would
    leave convtool waiting silently for bytes nobody will type.
    """
    if writes_stdout and sys.stdout.isatty():
        raise UsageError(
            "refusing to write image data to a terminal; redirect stdout (-o - > out.png), "
            "pipe it into another program, or give -o FILE"
        )
    if reads_stdin and sys.stdin.isatty():
        raise UsageError(
            "refusing to read an image from a terminal: '-' reads standard input; pipe an "
            "image in (cat in.png | convtool ... -), or name the file"
        )


FILTER_MEMORY_HINT = "a smaller image, --precision single or fewer --threads"


def fail(err: BaseException, debug: bool, memory_hint: str = FILTER_MEMORY_HINT) -> typer.Exit:
    """Print ``err`` as one line (or re-raise it with --debug) and give the exit to raise.

    A closed pipe on stdout (``| head``) is quiet: exit 141, as a shell reports for ``cat``.
    ``memory_hint``: what to try when memory ran out, in the options of the command.
    """
    if debug_enabled(debug):
        raise err
    if isinstance(err, ConvtoolError):
        if not getattr(err, "quiet", False):
            terminal.error_line(str(err))
        return typer.Exit(err.exit_code)
    if isinstance(err, MemoryError):
        terminal.error_line(f"out of memory; try {memory_hint}")
        return typer.Exit(1)
    terminal.error_line(
        f"internal error: {type(err).__name__}: {err} (run with --debug for details)"
    )
    return typer.Exit(1)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Run a command so that Ctrl-C and every terminating signal clean up, then exit 128 + N.

    Inside, SIGTERM, SIGHUP, SIGUSR1, ... raise like Ctrl-C (:mod:`convtool.batch.interrupts`), so
    a write under way removes its temporary file; the command then ends with one line.
    """
    from convtool.batch.interrupts import signals_raise

    try:
        with signals_raise():
            yield
    except KeyboardInterrupt as err:
        terminal.error_line("interrupted; no partial output was left")
        raise typer.Exit(128 + getattr(err, "signum", signal.SIGINT)) from None


# The choices are the library's (convtool.choices: the tuples the library checks against are
# built from these enums), from a standard-library-only module so that --help need not import
# numpy and Pillow. Re-exported here with the other option types.
CHOICES = (
    AlphaMode,
    Compression,
    Depth,
    Frames,
    Geometry,
    Method,
    Precision,
    RangeMode,
    Subsampling,
)


def complete_kernel(incomplete: str) -> list[str]:
    """Shell completion for -k: kernel names and the other steps (grad:OP, pooling)."""
    from convtool.kernels.builders import kernel_names
    from convtool.pipeline.steps import GRADIENT_OPERATORS, POOL_KINDS

    steps = [f"grad:{op}" for op in GRADIENT_OPERATORS] + [f"{kind}:2" for kind in POOL_KINDS]
    return [name for name in kernel_names() + steps if name.startswith(incomplete)]


def complete_padding(incomplete: str) -> list[str]:
    """Shell completion for -p: the padding modes, then their aliases."""
    from convtool.padding import ALIASES, Padding

    names = [mode.value for mode in Padding] + sorted(ALIASES)
    return [name for name in names if name.startswith(incomplete.lower())]


Debug = Annotated[
    bool,
    typer.Option(
        "--debug",
        callback=_note_debug,
        is_eager=True,
        help="Show tracebacks for errors (also CONVTOOL_DEBUG=1).",
    ),
]
# Options that several commands share, defined once so their help cannot drift apart.
Quiet = Annotated[
    bool,
    typer.Option("-q", "--quiet", help="Print only errors: no progress, notes or summary."),
]
Threads = Annotated[
    int | None,
    typer.Option(min=1, help="Threads per image (default: all CPUs).", show_default=False),
]
MaxPixels = Annotated[
    int | None,
    typer.Option(
        help="Refuse larger images (read from the header; default 250 million); 0 lifts the limit.",
        show_default=False,
    ),
]
CompressLevel = Annotated[
    int, typer.Option(min=0, max=9, help="PNG/TIFF compression 0-9 (1: fast, 9: small).")
]


def pixel_limit(value: int | None) -> int | None:
    """The --max-pixels value as read_image takes it: the default, a number, or None (0)."""
    from convtool.images import DEFAULT_MAX_PIXELS

    if value is None:
        return DEFAULT_MAX_PIXELS
    return None if value == 0 else value


# The options of `filter` that `explain` and `animate` share: one definition, one help text.
KernelSpecs = Annotated[
    list[str],
    typer.Option(
        "-k",
        "--kernel",
        help="Kernel spec, repeatable, applied in order: NAME, "
        "NAME:ARGS, an inline matrix, a kernel file, grad:OP, maxpool:N, avgpool:N, "
        "a .npy of layer weights. See `convtool kernels`.",
        show_default=False,
        autocompletion=complete_kernel,
    ),
]
PaddingMode = Annotated[
    str,
    typer.Option(
        "--padding",
        "-p",
        help="Border mode: zero, constant (with --cval), edge, reflect, symmetric, wrap, "
        "valid, full, or an alias (mirror, replicate, circular, ...); pictures below.",
        autocompletion=complete_padding,
    ),
]
Cval = Annotated[float, typer.Option(help="Value outside the image for --padding constant.")]
Iterations = Annotated[
    int, typer.Option("-n", "--iterations", help="Apply the whole chain N times (1-1000).")
]
Correlate = Annotated[
    bool,
    typer.Option(
        "--correlate",
        help="Apply kernels as written (cross-correlation) "
        "instead of true convolution (kernel flipped).",
    ),
]
Stride = Annotated[int, typer.Option(help="Keep every S-th output pixel of each step.")]
Dilation = Annotated[int, typer.Option(help="Space kernel taps D pixels apart.")]
Normalize = Annotated[
    bool,
    typer.Option(
        "--normalize",
        help="Divide each kernel by its sum (zero-sum kernels: "
        "positive weights to 1, negative to -1).",
    ),
]
Transposed = Annotated[
    bool,
    typer.Option(
        "--transposed",
        help="Apply each convolving step's transpose (adjoint): --stride S "
        "upsamples by S; valid padding crops nothing (PyTorch's conv_transpose2d).",
    ),
]
Groups = Annotated[
    list[int] | None,
    typer.Option(
        "--groups",
        min=1,
        help="Groups of each layer kernel (.npy weights (C_out, C_in/groups, kh, kw)), in "
        "order; one value for all. Default: C_in / the weights' second side.",
        show_default=False,
    ),
]
Bias = Annotated[
    list[str] | None,
    typer.Option(
        "--bias",
        metavar="FILE",
        help="A bias file (.npy or numbers as text, one per output channel) for each layer "
        "kernel, in order.",
        show_default=False,
    ),
]
PrecisionOption = Annotated[
    Precision, typer.Option("--precision", help="Floating point inside: float32 or float64.")
]


# --method, --range, --depth and --format: filter, explain and animate share one help text
# (the *Option types below); match says what they mean for a score map. The flag names and
# how the default shows are written once, here.
def method_option(help: str) -> typer.models.OptionInfo:  # noqa: A002
    """The --method option (a :class:`Method`), with the command's help text."""
    return typer.Option("--method", help=help)


def range_option(help: str) -> typer.models.OptionInfo:  # noqa: A002
    """The --range option (a :class:`RangeMode` or None), with the command's help text."""
    return typer.Option("--range", help=help, show_default=False)


def depth_option(help: str) -> typer.models.OptionInfo:  # noqa: A002
    """The --depth option (a :class:`Depth` or None), with the command's help text."""
    return typer.Option("--depth", help=help, show_default=False)


def format_option(help: str) -> typer.models.OptionInfo:  # noqa: A002
    """The --format/-f option (a format name or None), with the command's help text."""
    return typer.Option("--format", "-f", help=help, show_default=False)


MethodOption = Annotated[
    Method,
    method_option("How to compute; all give the same result within tolerance."),
]
RangeOption = Annotated[
    RangeMode | None,
    range_option(
        "Map results into an integer output: clip (default), abs, "
        "offset (add half the range), rescale (min..max to full range)."
    ),
]
DepthOption = Annotated[
    Depth | None,
    depth_option(
        "Output depth: 8, 16 or float (32-bit float TIFF / .npy, raw values). "
        "Default: the input's depth where the format holds it."
    ),
]
Gray = Annotated[
    bool, typer.Option("--gray", help="Convert colour input to luminance first (BT.601).")
]

"""What the CLI's commands share: option types and choices, and how errors end a command.

Only the CLI layer imports this (it imports typer); the commands live in :mod:`convtool.cli`
and :mod:`convtool.cli_analysis`.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Annotated

import typer

from convtool.cli import terminal
from convtool.errors import ConvtoolError

DEBUG_ENV = "CONVTOOL_DEBUG"


def debug_enabled(flag: bool) -> bool:
    return flag or os.environ.get(DEBUG_ENV, "") not in ("", "0")


FILTER_MEMORY_HINT = "a smaller image, --precision single or fewer --threads"


def fail(err: BaseException, debug: bool, memory_hint: str = FILTER_MEMORY_HINT) -> typer.Exit:
    """Print ``err`` as one line (or re-raise it with --debug) and give the exit to raise.

    ``memory_hint``: what to try when memory ran out, in the options of the command.
    """
    if debug_enabled(debug):
        raise err
    if isinstance(err, ConvtoolError):
        terminal.error_line(str(err))
        return typer.Exit(err.exit_code)
    if isinstance(err, MemoryError):
        terminal.error_line(f"out of memory; try {memory_hint}")
        return typer.Exit(1)
    terminal.error_line(
        f"internal error: {type(err).__name__}: {err} (run with --debug for details)"
    )
    return typer.Exit(1)


class Precision(str, Enum):
    single = "single"
    double = "double"


class Method(str, Enum):
    auto = "auto"
    direct = "direct"
    separable = "separable"
    fft = "fft"


class RangeMode(str, Enum):
    clip = "clip"
    abs = "abs"
    offset = "offset"
    rescale = "rescale"


class Depth(str, Enum):
    d8 = "8"
    d16 = "16"
    float = "float"


class AlphaMode(str, Enum):
    carry = "carry"
    weighted = "weighted"
    filter = "filter"


class Geometry(str, Enum):
    valid = "valid"
    same = "same"


Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
# Options that several commands share, defined once so their help cannot drift apart.
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No messages.")]
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

"""The choices that several surfaces share, each defined once (as :mod:`convtool.padding` is).

Each is a ``str`` enum; the library checks its arguments against the tuple of values built
from it (``engine.METHODS``, ``images.RANGE_MODES``, ...), and the CLI hands the enum itself
to Typer, so ``--help``, the error messages and the library cannot disagree. Standard
library only: the CLI imports this to build ``--help`` without numpy or Pillow.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "AlphaMode",
    "Compression",
    "Depth",
    "Frames",
    "Geometry",
    "Method",
    "Precision",
    "RangeMode",
    "Subsampling",
    "values",
]


class Precision(str, Enum):
    """Floating point inside: float32 or float64."""

    single = "single"
    double = "double"


class Method(str, Enum):
    """How a convolution is computed; all give the same result within tolerance."""

    auto = "auto"
    direct = "direct"
    separable = "separable"
    fft = "fft"


class RangeMode(str, Enum):
    """How float results are mapped into an integer output (and scores into a picture)."""

    clip = "clip"
    abs = "abs"
    offset = "offset"
    rescale = "rescale"


class Depth(str, Enum):
    """The output depths the CLI's --depth names."""

    d8 = "8"
    d16 = "16"
    float = "float"


class AlphaMode(str, Enum):
    """What a chain does with an alpha channel."""

    carry = "carry"
    weighted = "weighted"
    filter = "filter"


class Geometry(str, Enum):
    """The size of a template-match score map: valid positions only, or the scene's size."""

    valid = "valid"
    same = "same"


class Frames(str, Enum):
    """Every frame or page of an input, or only the first."""

    all = "all"
    first = "first"


class Subsampling(str, Enum):
    """JPEG chroma subsampling; the default 4:4:4 keeps the colour of filtered edges."""

    s444 = "4:4:4"
    s422 = "4:2:2"
    s420 = "4:2:0"


class Compression(str, Enum):
    """TIFF compressions."""

    none = "none"
    deflate = "deflate"
    lzw = "lzw"
    zstd = "zstd"
    jpeg = "jpeg"
    packbits = "packbits"


def values(choice: type[Enum]) -> tuple[str, ...]:
    """The values of an enum of choices, in order: the tuple the library checks against.

    Examples
    --------
    >>> values(Method)
    ('auto', 'direct', 'separable', 'fft')
    """
    return tuple(member.value for member in choice)

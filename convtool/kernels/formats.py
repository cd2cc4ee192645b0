"""Kernel text grammars: inline matrices, ImageMagick strings, scale modifiers, centres.

Everything here turns text into a :class:`MatrixData` (plain numbers, a centre, a scale
still to apply), never a :class:`convtool.kernels.Kernel`, so that this module knows
grammars and ``kernels`` knows what a kernel is; :mod:`convtool.kernels.files` reads kernel
files (text, ``.npy``, MATLAB and libvips ``.mat``) with these grammars. All failures are
:class:`KernelError` with a one-line message naming the bad part.

What a message quotes: text from the command line is quoted as an excerpt (at most
:data:`convtool.errors.EXCERPT` characters, escaped). From a file (within
:func:`reading_a_file`), only a piece that looks like a (mistyped) number or scale is quoted
(``'1.2.3'``, ``'1e'``, ``'nan'``): never a header key, a description or a line of
something that is not a kernel file, so that ``-k /etc/shadow`` or a file holding
``API_KEY=...`` shows none of its contents. Work is bounded before parsing: rows and values
are counted against :data:`MAX_KERNEL_SIDE` before a single number is converted, and a
number has at most :data:`MAX_NUMBER_CHARS` characters.

Grammars (the README shows them with examples):

- matrix: rows separated by ``;`` (or lines, in a file), values by spaces and/or commas,
  optional brackets (``[1 2; 3 4]`` or numpy-style ``[[1, 2], [3, 4]]``); as a spec it may
  end in ``/N`` (divide) or ``*X`` (multiply).
- ImageMagick: ``WxH[+X+Y]: v v v ...`` row-major; ``X, Y`` are the centre's column and row
  (default ``(W-1)//2, (H-1)//2`` as ImageMagick); ``nan`` or ``-`` marks a tap outside
  the neighbourhood (weight 0).
- scale (``@scale=`` and the ``scale:`` file header): ``[NUMBER[/NUMBER]][%][!|^]``,
  mirroring ImageMagick's ``-define convolve:scale``: normalise first (``!`` by the sum,
  ``^`` positives to 1 and negatives to -1), then multiply by the number.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from convtool.errors import KernelError, excerpt

MAX_KERNEL_SIDE = 1025  # taps per side; a 1025x1025 kernel is already 1M taps per pixel
MAX_NUMBER_CHARS = 100  # "-1.2345678901234567e-300" is 24; no written number needs more

# Every pattern below matches in linear time: no two parts of one can take the same
# characters (``\d+\.?\d*`` could split a run of digits k ways, and backtracking through
# a 20 MB run of them never ended).
NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
NUMBER_RE = re.compile(NUMBER)
_SEPARATORS = re.compile(r"[\s,]+")
# Between the rows of a numpy-style nested list: "], [" (or "];[" once lines are joined).
_ROW_BREAK = re.compile(r"\](?:\s|[,;])*\[")
# A trailing "/N" or "*X" (searched: the one operator the rest of the text follows).
_MATRIX_SUFFIX = re.compile(rf"(?P<op>[/*])\s*(?P<num>{NUMBER})\s*\Z")
_SCALE_RE = re.compile(rf"(?P<num>{NUMBER})?(?:/(?P<den>{NUMBER}))?(?P<flags>[%!^]*)")
_IM_GEOMETRY = re.compile(r"\s*(\d+)(?:[xX](\d+))?(?:\+(\d+))?(?:\+(\d+))?\s*")
_TOKEN = re.compile(r"[^\s,]+")
# What a message may quote from a file: a mistyped number, scale or size, nothing else.
_QUOTABLE_FROM_FILE = re.compile(r"[0-9+\-.eExX/*%!^]{1,40}|nan|inf|infinity", re.IGNORECASE)
_FROM_FILE: ContextVar[bool] = ContextVar("convtool_kernel_text_from_file", default=False)


@contextlib.contextmanager
def reading_a_file() -> Iterator[None]:
    """Within: the text being parsed came from a file, so messages quote less of it."""
    token = _FROM_FILE.set(True)
    try:
        yield
    finally:
        _FROM_FILE.reset(token)


def quoted(text: str) -> str | None:
    """``text`` as a message may quote it (:func:`convtool.errors.excerpt`), or None.

    None for text from a file unless it looks like a mistyped number or scale.
    """
    if _FROM_FILE.get() and not _QUOTABLE_FROM_FILE.fullmatch(text.strip()):
        return None
    return excerpt(text.strip())


def _quoting(text: str, before: str = " ") -> str:
    """``before`` + :func:`quoted` text, or nothing when it may not be quoted."""
    shown = quoted(text)
    return f"{before}{shown}" if shown else ""


def tokens(text: str, limit: int) -> list[str]:
    """The values of ``text`` (split at spaces and commas), at most ``limit`` + 1 of them.

    A caller that gets more than ``limit`` refuses the row without splitting the rest of it:
    a one-line file of 30 million values costs as little as one of 1026.
    """
    return [m.group() for m in itertools.islice(_TOKEN.finditer(text), limit + 1)]


def counted(found: list[str], limit: int) -> str:
    """How many values :func:`tokens` found, in words (it stops one past ``limit``)."""
    return f"more than {limit:,}" if len(found) > limit else str(len(found))


def side(text: str, what: str) -> int:
    """A kernel side written in ``text`` (digits), refused above :data:`MAX_KERNEL_SIDE`."""
    if len(text) > 6:  # int() of a 5000-digit string raises; no side needs 7 digits
        raise KernelError(
            f"{what}: a side of {len(text)} digits is above the limit of {MAX_KERNEL_SIDE} "
            "taps per side"
        )
    return int(text)


@dataclass(frozen=True)
class Scale:
    """A parsed scale: normalise first (``normalize``), then multiply by factor / divisor."""

    text: str
    factor: float = 1.0
    divisor: float = 1.0
    normalize: str | None = None  # None, "sum" (!) or "zero-sum" (^)


@dataclass(frozen=True)
class MatrixData:
    """A kernel as read from text or a file, before it becomes a Kernel."""

    weights: np.ndarray
    origin: tuple[int, int] = (0, 0)  # scipy semantics: centre index minus k // 2
    factors: tuple[np.ndarray, np.ndarray] | None = None
    offset: float = 0.0
    scale: Scale | None = None
    description: str = ""


def check_side(height: int, width: int, what: str = "kernel") -> None:
    """Raise unless a kernel of height × width taps is within 1..MAX_KERNEL_SIDE per side."""
    if height < 1 or width < 1:
        raise KernelError(f"{what} has no taps ({height}x{width})")
    if max(height, width) > MAX_KERNEL_SIDE:
        raise KernelError(
            f"{what} is {height}x{width}, above the limit of {MAX_KERNEL_SIDE} taps per side"
        )


def origin_from_centre(centre: tuple[int, int], shape: tuple[int, int], what: str):
    """The scipy-style origin of a kernel whose centre tap is at index ``centre`` (row, col)."""
    for index, side, axis in zip(centre, shape, ("row", "column"), strict=True):
        if not 0 <= index < side:
            raise KernelError(
                f"{what}: centre {axis} {index} is outside the {shape[0]}x{shape[1]} kernel "
                f"(rows and columns count from 0)"
            )
    return (centre[0] - shape[0] // 2, centre[1] - shape[1] // 2)


# ------------------------------------------------------------------------------ numbers


def parse_number(token: str, what: str) -> float:
    """A finite float from ``token`` (plain decimal or exponent notation), or KernelError."""
    if len(token) > MAX_NUMBER_CHARS:
        raise KernelError(f"{what}: a value of {len(token):,} characters is not a number")
    if not NUMBER_RE.fullmatch(token):
        hint = " (scale the whole matrix with a trailing /N instead)" if "/" in token else ""
        shown = quoted(token)
        raise KernelError(
            f"{what}: {shown} is not a number{hint}" if shown else f"{what} is not a number"
        )
    value = float(token)
    if not math.isfinite(value):
        raise KernelError(f"{what}: {quoted(token) or 'a value'} is too large")
    return value


def parse_scale(text: str) -> Scale:
    """Parse a scale such as ``2``, ``1/16``, ``50%``, ``!``, ``^`` or ``2!``."""
    compact = "".join(text.split())
    m = _SCALE_RE.fullmatch(compact) if len(compact) <= 2 * MAX_NUMBER_CHARS + 4 else None
    flags = m.group("flags") if m else ""
    if (
        not compact
        or m is None
        or flags.count("%") > 1
        or len(flags.replace("%", "")) > 1
        or (m.group("num") is None and ("%" in flags or m.group("den") is not None))
    ):
        raise KernelError(
            f"scale{_quoting(text)} not understood; use a number (2, 0.5, 1/16), a percentage "
            "(50%), ! (normalise to sum 1), ^ (positives to 1, negatives to -1), or both (2!)"
        )
    factor = parse_number(m.group("num"), "scale") if m.group("num") else 1.0
    divisor = parse_number(m.group("den"), "scale") if m.group("den") else 1.0
    if divisor == 0:
        raise KernelError(f"scale{_quoting(text)} divides by zero")
    if "%" in flags:
        factor *= 0.01
    normalize = {"!": "sum", "^": "zero-sum"}.get(flags.replace("%", ""))
    return Scale(compact, factor, divisor, normalize)


def parse_centre(text: str, what: str) -> tuple[int, int]:
    """``ROW,COL`` (or ``ROW COL``): the 0-based index of the centre tap."""
    parts = tokens(text, 2)
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        got = f", got{_quoting(text)}" if quoted(text) else ""
        raise KernelError(f"{what}: expected the centre as ROW,COL (whole numbers from 0){got}")
    return (side(parts[0], what), side(parts[1], what))


# ----------------------------------------------------------------------------- matrices


def parse_rows(text: str, what: str = "matrix") -> np.ndarray:
    """A 2-D array from rows separated by ``;``, values by spaces/commas, optional brackets.

    Rows and values are counted against :data:`MAX_KERNEL_SIDE` before any is converted.
    """
    body = _ROW_BREAK.sub(";", text.strip())
    inner = body.lstrip("[ \t\r\n\f\v")
    opened, body = body[: len(body) - len(inner)].count("["), inner
    inner = body.rstrip("] \t\r\n\f\v")
    closed, body = body[len(inner) :].count("]"), inner
    if opened != closed or "[" in body or "]" in body:
        raise KernelError(f"{what}: unbalanced brackets{_quoting(text, ' in ')}")
    if body.count(";") > MAX_KERNEL_SIDE:  # one more ';' than rows is a trailing one
        raise KernelError(
            f"{what} has more than {MAX_KERNEL_SIDE} rows, above the limit of "
            f"{MAX_KERNEL_SIDE} taps per side"
        )
    rows = body.split(";")
    if len(rows) > 1 and not rows[-1].strip():
        rows.pop()  # a trailing ';' (as MATLAB allows) ends the last row, it adds none
    values: list[list[float]] = []
    for number, row in enumerate(rows, 1):
        found = tokens(row, MAX_KERNEL_SIDE)
        if not found:
            raise KernelError(f"{what}: {'it is empty' if not body else f'row {number} is empty'}")
        if len(found) > MAX_KERNEL_SIDE:
            raise KernelError(
                f"{what}: row {number} has more than {MAX_KERNEL_SIDE} values, above the "
                f"limit of {MAX_KERNEL_SIDE} taps per side"
            )
        values.append(
            [parse_number(t, f"{what}, row {number}, value {i}") for i, t in enumerate(found, 1)]
        )
    width = len(values[0])
    for number, parsed in enumerate(values, 1):
        if len(parsed) != width:
            raise KernelError(
                f"{what}: row {number} has {len(parsed)} value{'s' * (len(parsed) != 1)} but row 1 "
                f"has {width}; "
                "all rows need the same length"
            )
    check_side(len(values), width, what)
    return np.array(values, dtype=np.float64)


def parse_matrix_spec(text: str) -> MatrixData:
    """An inline matrix spec: ``"[1 2 1; 2 4 2; 1 2 1]/16"``, ``"1 -1"``, ``"[1,2;3,4]*0.5"``."""
    m = _MATRIX_SUFFIX.search(text)
    scale = None
    if m and text[: m.start()].strip():
        text, number = text[: m.start()], parse_number(m.group("num"), "matrix scale")
        if m.group("op") == "/":
            if number == 0:
                raise KernelError("matrix scale: division by zero")
            scale = Scale(f"1/{m.group('num')}", divisor=number)
        else:
            scale = Scale(m.group("num"), factor=number)
    return MatrixData(parse_rows(text), scale=scale)


# -------------------------------------------------------------------------- ImageMagick


def looks_like_imagemagick(text: str) -> bool:
    """True for ``WxH...: values`` (inline matrices never contain ``:``)."""
    stripped = text.lstrip().lstrip("'")
    return bool(stripped[:1].isdigit()) and ":" in stripped


def reject_imagemagick_flags(text: str) -> None:
    """Refuse ImageMagick's kernel-list flags (``3x3@:``, ``>``, ``<``) before ``@`` is split."""
    if looks_like_imagemagick(text) and any(f in text.partition(":")[0] for f in "@<>"):
        raise KernelError(
            "ImageMagick kernel expansion flags (@, <, >) make kernel lists, which are not "
            "supported; give one kernel"
        )


def parse_imagemagick(text: str) -> MatrixData:
    """An ImageMagick user kernel ``WxH[+X+Y]: values``, with IM's default centre."""
    head, _, body = text.strip().strip("'").partition(":")
    g = _IM_GEOMETRY.fullmatch(head)
    if g is None:
        raise KernelError(
            f"ImageMagick kernel geometry{_quoting(head)} not understood: expected W, WxH or "
            "WxH+X+Y (X, Y: centre column and row from 0); kernel lists and the @ < > "
            "expansion flags are not supported"
        )
    what = "ImageMagick kernel"
    width = side(g.group(1), what)
    height = side(g.group(2), what) if g.group(2) else width
    check_side(height, width, what)
    x = side(g.group(3), what) if g.group(3) else (width - 1) // 2
    y = side(g.group(4), what) if g.group(4) else (height - 1) // 2
    if ";" in body:
        raise KernelError("ImageMagick kernel lists (';') are not supported; give one kernel")
    found = tokens(body, MAX_KERNEL_SIDE**2)
    if len(found) != width * height:
        got = counted(found, MAX_KERNEL_SIDE**2)
        raise KernelError(f"{what} {width}x{height} needs {width * height} values, got {got}")
    # nan / '-' mark taps outside the neighbourhood; for a weighted sum that is weight 0,
    # and a 0 changes neither the sum nor the positive/negative totals used to normalise.
    absent = [t.lower() in ("nan", "-") for t in found]
    if all(absent):
        raise KernelError("ImageMagick kernel has no values, only nan/- taps")
    values = [
        0.0 if a else parse_number(t, f"{what}, value {i}")
        for i, (t, a) in enumerate(zip(found, absent, strict=True), 1)
    ]
    weights = np.array(values, dtype=np.float64).reshape(height, width)
    origin = origin_from_centre((y, x), (height, width), "ImageMagick kernel")
    return MatrixData(weights, origin=origin)

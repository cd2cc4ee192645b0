"""The parameters of named kernels and steps: :class:`Param` and the one spec grammar.

A named kernel (``gaussian:sigma=2``) or step (``grad:sobel``, ``maxpool:2``) declares its
parameters as :class:`Param` values: a kind, a default, a range, a line of help. Python
calls, spec text, error messages and the ``convtool kernels`` listing all read these
declarations, and :func:`parse_params` parses ``NAME:ARGS`` for kernels and steps alike.
This module knows no kernel: the builders (:mod:`convtool.kernels.builders`) and the steps
(:mod:`convtool.pipeline.parsing`) declare theirs.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from dataclasses import dataclass
from typing import Any

from convtool.errors import KernelError, excerpt
from convtool.kernels import formats as fmt

__all__ = ["Param", "parse_params", "spec_name"]


@dataclass(frozen=True)
class Param:
    """One typed, range-checked parameter of a named kernel (as in ``gaussian:sigma=2``)."""

    name: str
    kind: str  # "int", "float", "choice" or "size" (N or HxW)
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the value must be > low rather than >= low
    odd: bool = False
    choices: tuple[Any, ...] = ()
    auto: str = ""  # how a default of None is worked out, e.g. "2*ceil(3*sigma)+1"

    def allowed(self) -> str:
        """What values are allowed, in words: ``"an odd integer from 1 to 1025"``."""
        if self.kind == "choice":
            return " or ".join(str(c) for c in self.choices)
        if self.kind == "size":
            return f"N or HxW, integers from {self.low:g} to {self.high:g}"
        noun = "an odd integer" if self.odd else "an integer" if self.kind == "int" else "a number"
        if self.low is not None and self.high is not None:
            return f"{noun} from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {self.low:g}"
        return noun

    def describe(self) -> str:
        """``name=default`` for the kernel list, e.g. ``sigma=1`` or ``size=2*ceil(3*sigma)+1``."""
        return f"{self.name}={self.auto if self.default is None else self.format(self.default)}"

    def format(self, value: Any) -> str:
        if self.kind == "size":
            h, w = self.check(value, "")
            return f"{h}" if h == w else f"{h}x{w}"
        return f"{value:.15g}" if isinstance(value, float) else str(value)

    def parse(self, raw: str, owner: str) -> Any:
        """The value of ``raw`` (text from a spec), checked; KernelError names the parameter."""
        text = raw.strip().lower()
        value: Any = None
        if len(text) > fmt.MAX_NUMBER_CHARS:
            pass  # no parameter needs it; int() of 5000 digits would even raise
        elif self.kind == "int" and re.fullmatch(r"[+-]?\d+", text):
            value = int(text)
        elif self.kind == "float" and fmt.NUMBER_RE.fullmatch(text):
            value = float(text)
        elif self.kind == "choice":
            value = next((c for c in self.choices if str(c) == text), None)
        elif self.kind == "size" and (m := re.fullmatch(r"(\d+)(?:x(\d+))?", text)):
            value = (int(m.group(1)), int(m.group(2) or m.group(1)))
        if value is None:
            self._fail(raw, owner)
        return self.check(value, owner, raw)

    def check(self, value: Any, owner: str, raw: Any = None) -> Any:
        """``value`` (from Python or parsed) in canonical form, or KernelError."""
        shown = value if raw is None else raw
        if value is None and self.default is None:
            return None
        if self.kind == "choice":
            match = next((c for c in self.choices if str(c) == str(value).lower()), None)
            if match is None:
                self._fail(shown, owner)
            return match
        if self.kind == "size":
            pair = (value, value) if isinstance(value, numbers.Integral) else value
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                self._fail(shown, owner)
            return tuple(self._number(v, shown, owner, integral=True) for v in pair)
        return self._number(value, shown, owner, integral=self.kind == "int")

    def _number(self, value: Any, shown: Any, owner: str, integral: bool) -> Any:
        kind = numbers.Integral if integral else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            self._fail(shown, owner)
        value = int(value) if integral else float(value)
        if not math.isfinite(value):
            self._fail(shown, owner)
        too_low = self.low is not None and (
            value <= self.low if self.low_open else value < self.low
        )
        too_high = self.high is not None and value > self.high
        if too_low or too_high or (self.odd and value % 2 == 0):
            self._fail(shown, owner)
        return value

    def _fail(self, shown: Any, owner: str) -> None:
        raise KernelError(f"{owner}: {self.name} must be {self.allowed()}, got {_shown(shown)}")


def _shown(value: Any) -> str:
    """A parameter value as a message shows it: spec text as an excerpt, else its repr."""
    if isinstance(value, str):
        return excerpt(value)
    try:
        text = repr(value)
    except ValueError:  # an int of thousands of digits
        return "a number of thousands of digits"
    return text if len(text) <= 60 else text[:57] + "..."


def parse_params(owner: str, params: tuple[Param, ...], args: str | None) -> dict[str, Any]:
    """The one spec grammar, for kernels and steps alike: ``NAME:ARGS`` with ``ARGS`` as
    ``key=value,...`` or one bare value for the first parameter, then key=values.

    ``args`` None (no ``:``) gives no values, so every parameter takes its default; each
    value is parsed and range-checked by its :class:`Param`.
    """
    values: dict[str, Any] = {}
    if args is None:
        return values
    by_name = {p.name: p for p in params}
    if not args.strip():
        raise KernelError(f"{owner}: nothing after ':'; give {params[0].name} or key=value")
    for index, item in enumerate(part.strip() for part in args.split(",")):
        key, eq, raw = item.partition("=")
        key = key.strip().lower()
        if not item:
            raise KernelError(f"{owner}: empty parameter in {excerpt(args)}")
        if not eq:
            if index:
                raise KernelError(
                    f"{owner}: {excerpt(item)} needs a name (key=value); only the first value may "
                    f"be given bare, for {params[0].name}"
                )
            key, raw = params[0].name, item
        if key not in by_name:
            close = difflib.get_close_matches(key, by_name, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise KernelError(
                f"{owner}: unknown parameter {excerpt(key)}; {hint}parameters: {', '.join(by_name)}"
            )
        if key in values:
            raise KernelError(f"{owner}: {key} given twice")
        values[key] = by_name[key].parse(raw, owner)
    return values


def spec_name(owner: str, params: tuple[Param, ...], values: tuple[Any, ...]) -> str:
    """The canonical spec of a built kernel: non-default parameters as key=value."""
    parts = [
        f"{p.name}={p.format(v)}"
        for p, v in zip(params, values, strict=True)
        if v is not None and v != p.check(p.default, owner)
    ]
    return owner + (":" + ",".join(parts) if parts else "")

"""Padding modes: one enum, its aliases, and the help text every surface shares."""

from __future__ import annotations

import difflib
from enum import Enum

from convtool.errors import UsageError


class Padding(str, Enum):
    """How the image is extended beyond its border (numpy's names)."""

    ZERO = "zero"
    CONSTANT = "constant"
    EDGE = "edge"
    REFLECT = "reflect"
    SYMMETRIC = "symmetric"
    WRAP = "wrap"
    VALID = "valid"
    FULL = "full"

    @property
    def keeps_size(self) -> bool:
        """True for the modes whose output has the input's size (before stride)."""
        return self not in (Padding.VALID, Padding.FULL)


PICTURES = {
    Padding.ZERO: "0 0 0 | a b c d | 0 0 0",
    Padding.CONSTANT: "V V V | a b c d | V V V   (V = --cval)",
    Padding.EDGE: "a a a | a b c d | d d d",
    Padding.REFLECT: "d c b | a b c d | c b a",
    Padding.SYMMETRIC: "c b a | a b c d | d c b",
    Padding.WRAP: "b c d | a b c d | a b c",
    Padding.VALID: "no padding; output shrinks by k-1",
    Padding.FULL: "zero padding of k-1; output grows by k-1",
}

ALIASES = {
    "zeros": Padding.ZERO,
    "replicate": Padding.EDGE,
    "nearest": Padding.EDGE,
    "mirror": Padding.REFLECT,
    "reflect101": Padding.REFLECT,
    "reflect-101": Padding.REFLECT,
    "half-sample": Padding.SYMMETRIC,
    "circular": Padding.WRAP,
    "periodic": Padding.WRAP,
}


def parse_padding(text: str | Padding) -> Padding:
    """Turn a user's padding name (or alias, any case) into a :class:`Padding`."""
    if isinstance(text, Padding):
        return text
    key = str(text).strip().lower().replace("_", "-")
    for mode in Padding:
        if mode.value == key:
            return mode
    if key in ALIASES:
        return ALIASES[key]
    names = [m.value for m in Padding] + list(ALIASES)
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UsageError(
        f"unknown padding {text!r}{hint}; choose one of {', '.join(m.value for m in Padding)}"
    )


def help_text() -> str:
    """The padding table as plain text, for --help and the README."""
    alias_of: dict[Padding, list[str]] = {}
    for alias, mode in ALIASES.items():
        alias_of.setdefault(mode, []).append(alias)
    lines = []
    for mode in Padding:
        extra = f"  (aliases: {', '.join(alias_of[mode])})" if mode in alias_of else ""
        lines.append(f"{mode.value:<10} {PICTURES[mode]}{extra}")
    return "\n".join(lines)

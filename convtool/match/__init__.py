"""Template matching by zero-mean normalised cross-correlation (ZNCC)."""

from __future__ import annotations

from convtool.match.scores import (
    GEOMETRIES,
    SCORE_RANGES,
    Match,
    draw_overlay,
    find_matches,
    match_template,
    score_picture,
)

__all__ = [
    "GEOMETRIES",
    "SCORE_RANGES",
    "Match",
    "match_template",
    "score_picture",
    "find_matches",
    "draw_overlay",
]

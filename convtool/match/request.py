"""``convtool match`` as a library call: read two images, score, write what was asked.

The numerics live in :mod:`convtool.match`; this module only connects them to files, as
:mod:`convtool.batch` does for ``filter``.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass

import numpy as np

from convtool import images
from convtool.errors import UsageError
from convtool.match.scores import (
    Match,
    check_threshold,
    draw_overlay,
    find_matches,
    match_template,
    score_picture,
)


@dataclass(frozen=True)
class MatchRequest:
    """What ``convtool match`` was asked to do (see its --help for each field)."""

    scene: str
    template: str
    output: str | None = None
    as_json: bool = False
    overlay: str | None = None
    threshold: float = 0.8
    max_matches: int | None = None
    geometry: str = "valid"
    per_channel: bool = False
    range_mode: str | None = None
    depth: str | None = None
    format: str | None = None
    thickness: int = 2
    method: str = "auto"
    threads: int | None = None
    max_pixels: int | None = images.DEFAULT_MAX_PIXELS
    compress_level: int = 1

    def check(self) -> None:
        if not (self.output or self.as_json or self.overlay):
            raise UsageError(
                "nothing to do: give -o for the score map, --json for the matches, "
                "or --overlay for the boxes"
            )
        to_stdout = [self.output == "-", self.as_json, self.overlay == "-"]
        if sum(to_stdout) > 1:
            raise UsageError("only one of -o -, --overlay - and --json can use stdout")
        if self.scene == "-" and self.template == "-":
            raise UsageError("only one of SCENE and TEMPLATE can be read from stdin")
        check_threshold(self.threshold)  # before the work, not after it


@dataclass(frozen=True)
class MatchOutcome:
    scores: np.ndarray
    matches: list[Match]
    threshold: float

    def summary(self) -> str:
        best = float(np.max(self.scores)) if self.scores.size else float("nan")
        if not self.matches:
            return f"no match >= {self.threshold:.2f} (best score {best:.3f})"
        top = self.matches[0]
        count = len(self.matches)
        noun = "match" if count == 1 else "matches"
        return (
            f"{count} {noun} >= {self.threshold:.2f} (best {top.score:.3f} at x={top.x}, y={top.y})"
        )


def run(request: MatchRequest) -> MatchOutcome:
    """Score the template over the scene and write the map and/or the overlay."""
    request.check()
    stdin_bytes = None
    if "-" in (request.scene, request.template):
        stdin_bytes = images.read_stream(sys.stdin.buffer, "-", request.max_pixels)

    def read(path: str, gray: bool) -> images.Image:
        # stdin may be read twice (luminance to match, colour to draw on), so keep its bytes
        stream = io.BytesIO(stdin_bytes) if path == "-" else None
        return images.read_image(
            path, gray=gray, max_pixels=request.max_pixels, stdin=stream, frames="first"
        )

    gray = not request.per_channel
    scene, template = read(request.scene, gray), read(request.template, gray)
    scores = match_template(
        scene.pixels,
        template.pixels,
        geometry=request.geometry,
        per_channel=request.per_channel,
        method=request.method,
        threads=request.threads,
    )
    if request.output:
        _write_scores(request, scores)
    # Always: the summary reports the hits, whatever was asked to be written.
    hits = find_matches(
        scores,
        template.pixels.shape,
        threshold=request.threshold,
        max_matches=request.max_matches,
        geometry=request.geometry,
    )
    if request.overlay:
        display = scene if request.per_channel else read(request.scene, gray=False)
        top = display.max_value or 1.0
        drawn = draw_overlay(
            display.pixels, hits, colour=(top, 0.0, 0.0), thickness=request.thickness
        )
        picture = images.Image(drawn, alpha=display.alpha, depth=display.depth)
        images.write_image(request.overlay, picture, compress_level=request.compress_level)
    return MatchOutcome(scores, hits, request.threshold)


def _write_scores(request: MatchRequest, scores: np.ndarray) -> None:
    fmt = images.format_for(request.output, request.format)
    raw = request.depth == "float" or (request.depth is None and fmt == "npy")
    if raw:
        values = scores if request.range_mode is None else score_picture(scores, request.range_mode)
        picture = images.Image(values, depth="float")
    else:
        levels = score_picture(scores, request.range_mode or "clip", top=255.0)
        picture = images.Image(levels, depth=8)
    images.write_image(
        request.output,
        picture,
        format=request.format,
        depth=request.depth,
        compress_level=request.compress_level,
    )

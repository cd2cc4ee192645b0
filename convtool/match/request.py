"""``convtool match`` as a library call: read two images, score, write what was asked.

The numerics live in :mod:`convtool.match`; this module only connects them to files, as
:mod:`convtool.batch` does for ``filter``.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass

import numpy as np

from convtool import images, resources
from convtool._system import cpu_count
from convtool.engine import native
from convtool.engine.memory import engine_peak_bytes
from convtool.errors import ImageReadError, UsageError
from convtool.images import outputs
from convtool.match import tiled
from convtool.match.scores import (
    Match,
    check_threshold,
    draw_overlay,
    find_matches,
    match_template,
    score_picture,
    uses_tiles,
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
        written = [("-o", self.output), ("--overlay", self.overlay)]
        for option, path in written:
            if path:
                outputs.check_name(path, option)
        outputs.check_not_inputs(
            [(option, path) for option, path in written if path], [self.scene, self.template]
        )
        if self.output:
            images.format_for(self.output, self.format)  # an unknown format: before the work
        if self.overlay:
            images.format_for(self.overlay)
        check_threshold(self.threshold)  # before the work, not after it


@dataclass(frozen=True)
class MatchOutcome:
    """What one ``convtool match`` found: the score map, the hits and the threshold used."""

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
        stream = None
        if path == "-":
            assert stdin_bytes is not None, "stdin was read above, as an input is -"
            stream = io.BytesIO(stdin_bytes)
        return images.read_image(
            path, gray=gray, max_pixels=request.max_pixels, stdin=stream, frames="first"
        )

    gray = not request.per_channel
    scene, template = read(request.scene, gray), read(request.template, gray)
    _check_before_matching(request, scene, template)
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


def _check_before_matching(
    request: MatchRequest, scene: images.Image, template: images.Image
) -> None:
    """Finite values (naming the file), output formats that hold the sizes, memory enough."""
    for path, image in ((request.scene, scene), (request.template, template)):
        if not (np.isfinite(np.min(image.pixels)) and np.isfinite(np.max(image.pixels))):
            raise ImageReadError(
                "the image has NaN or infinite pixel values, which cannot be matched; "
                "replace them first (e.g. with 0)",
                path="stdin" if path == "-" else path,
            )
    height, width, channels = scene.pixels.shape
    h, w = template.pixels.shape[:2]
    if h > height or w > width:
        return  # match_template says so, naming both sizes
    if request.output:
        shape = (height, width) if request.geometry == "same" else (height - h + 1, width - w + 1)
        fmt = images.format_for(request.output, request.format)
        outputs.check_size(request.output, fmt, *shape, 1, option="-o")
    if request.overlay:
        fmt = images.format_for(request.overlay)
        outputs.check_size(request.overlay, fmt, height, width, 3, option="--overlay")
    need = peak_bytes(
        (height, width, channels),
        (h, w),
        method=request.method,
        threads=request.threads,
        overlay=bool(request.overlay),
    )
    resources.check_fits(
        need,
        f"matching a {w}×{h} template in this {width}×{height} scene",
        "a smaller scene or template, or fewer --threads",
        path="stdin" if request.scene == "-" else request.scene,
    )


def peak_bytes(
    scene_shape: tuple[int, int, int],
    template_shape: tuple[int, int],
    *,
    method: str = "auto",
    threads: int | None = None,
    overlay: bool = False,
) -> int:
    """Bytes :func:`run` allocates at its peak beyond the scene and template as read.

    An upper bound, array by array. Templates matched band by band (``scores.uses_tiles``):
    each channel's score map, the sum of them, an image-sized map for ``same``, and the tiles
    (``tiled.peak_bytes``); others: the float64 stack of the scene's channels, per channel
    the centred copy, the engine's correlation (``engine_peak_bytes``), the two window sums
    made at once (each a running-sum pass, its transposed copy and the second pass), the
    score arithmetic. Then what writing the score map and drawing the overlay take.
    """
    height, width, channels = scene_shape
    h, w = template_shape
    plane = height * width * 8
    scores = max(0, height - h + 1) * max(0, width - w + 1) * 8
    if h <= height and w <= width and uses_tiles(h, w, method):
        workers = threads or cpu_count()
        tiles = tiled.peak_bytes(height, width, h, w, workers, native.module() is not None)
        matching = tiles + (2 if channels > 1 else 1) * scores + plane
    else:
        engine = engine_peak_bytes(
            1, height, width, (h, w), itemsize=8, padding="valid", method=method, threads=threads
        )
        prefix = 8 * (height * (1024 + w) + width * (1024 + h))
        per_channel = plane + engine + plane + 2 * (3 * plane + prefix) + 6 * scores
        matching = channels * plane + per_channel + 2 * scores
    writing = scores + 3 * scores + scores // 8 * 5  # score picture, levels, samples, PNG
    drawing = (height * width * 3 * 4) * 4 + height * width * 4 if overlay else 0
    return max(matching, scores + writing, scores + drawing)


def _write_scores(request: MatchRequest, scores: np.ndarray) -> None:
    assert request.output is not None, "called only when an output is asked for"
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

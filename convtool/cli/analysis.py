"""The analysis commands: ``convtool match`` (template matching) and ``convtool compare``.

They read images and call :mod:`convtool.matching` and :mod:`convtool.sheet`; the numbers
are computed there. :func:`register` adds them to the app in :mod:`convtool.cli`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from convtool.choices import Depth, Geometry, Method, RangeMode
from convtool.cli import terminal
from convtool.cli.options import (
    CompressLevel,
    Debug,
    MaxPixels,
    Quiet,
    Threads,
    depth_option,
    fail,
    format_option,
    interruptible,
    method_option,
    pixel_limit,
    range_option,
    refuse_terminals,
)

COMPARE_EPILOG = """Examples:

\b
  convtool compare in.png blur.png edges.png -o sheet.png
  convtool compare a.png b.png --label before --label after --height 256 -o s.png
"""

MATCH_EPILOG = """Examples:

\b
  convtool match scene.png template.png -o response.png
  convtool match scene.png template.png --threshold 0.8 --json
  convtool match scene.png template.png -t 0.9 -m 5 --overlay hits.png
  convtool match scene.png template.png -o scores.npy        (raw scores, valid geometry)
"""


def match(
    scene_path: Annotated[
        str,
        typer.Argument(
            metavar="SCENE",
            help="The image to search; '-' reads it from stdin.",
            show_default=False,
        ),
    ],
    template_path: Annotated[
        str,
        typer.Argument(
            metavar="TEMPLATE",
            help="The pattern to look for (smaller than the scene).",
            show_default=False,
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            help="Write the score map (ZNCC, -1..1) as an image; '-' "
            "for stdout. .npy or --depth float keep the raw scores.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the matches as a JSON list on stdout, best "
            "first: x, y (top-left corner in the scene), score, width, height.",
        ),
    ] = False,
    overlay: Annotated[
        str | None,
        typer.Option(
            help="Write the scene with a box around each match; '-' for stdout.", show_default=False
        ),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(
            "-t",
            "--threshold",
            min=-1.0,
            max=1.0,
            help="Lowest score that counts as a match (-1..1; 1 is a perfect match).",
        ),
    ] = 0.8,
    max_matches: Annotated[
        int | None,
        typer.Option(
            "-m",
            "--max-matches",
            min=1,
            help="Report at most N matches (the best). Default: all.",
            show_default=False,
        ),
    ] = None,
    geometry: Annotated[
        Geometry,
        typer.Option(
            help="Score map layout: valid = one pixel per window position, "
            "(H-h+1)x(W-w+1), pixel (x, y) is the window with top-left corner "
            "(x, y); same = the scene's size, each score on its window's "
            "centre, 0 where no window fits."
        ),
    ] = Geometry.valid,
    per_channel: Annotated[
        bool,
        typer.Option(
            "--per-channel",
            help="Match each colour channel and average the "
            "scores (default: match on BT.601 luminance).",
        ),
    ] = False,
    range_mode: Annotated[
        RangeMode | None,
        range_option(
            "Scores to grey levels: clip (default: negative black, 1 "
            "white), abs, offset (-1 black, 0 grey, 1 white), rescale."
        ),
    ] = None,
    depth: Annotated[
        Depth | None,
        depth_option("Score map depth: 8, 16 or float (raw scores; the default for .npy)."),
    ] = None,
    format: Annotated[  # noqa: A002
        str | None,
        format_option("Score map format; default: from the -o extension, png for stdout."),
    ] = None,
    thickness: Annotated[
        int, typer.Option(min=1, help="Box line width for --overlay (inside the window).")
    ] = 2,
    method: Annotated[
        Method, method_option("How to compute the correlation; same scores within 1e-12.")
    ] = Method.auto,
    threads: Threads = None,
    max_pixels: MaxPixels = None,
    compress_level: CompressLevel = 1,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Find a template in a scene by zero-normalised cross-correlation (ZNCC).

    Scores lie in -1..1 (OpenCV's TM_CCOEFF_NORMED): 1 = the window equals the template up
    to brightness and contrast, 0 = unrelated or flat, -1 = inverted. Give -o for the score
    map, --json for the matches, --overlay for the scene with the matches boxed.
    """
    with interruptible():  # a signal mid-write leaves no temporary file
        try:
            from convtool.match import request as matching

            refuse_terminals(
                reads_stdin="-" in (scene_path, template_path),
                writes_stdout="-" in (output, overlay),
            )
            request = matching.MatchRequest(
                scene=scene_path,
                template=template_path,
                output=output,
                as_json=as_json,
                overlay=overlay,
                threshold=threshold,
                max_matches=max_matches,
                geometry=geometry.value,
                per_channel=per_channel,
                range_mode=range_mode.value if range_mode else None,
                depth=depth.value if depth else None,
                format=format,
                thickness=thickness,
                method=method.value,
                threads=threads,
                max_pixels=pixel_limit(max_pixels),
                compress_level=compress_level,
            )
            outcome = matching.run(request)
            if as_json:
                import json

                print(json.dumps([m.to_dict() for m in outcome.matches], indent=2))
            if not quiet:
                terminal.note(outcome.summary())
        except Exception as err:  # noqa: BLE001
            hint = "a smaller scene or template, or fewer --threads"
            raise fail(err, debug, memory_hint=hint) from None


def compare(
    paths: Annotated[
        list[str],
        typer.Argument(metavar="IMAGES...", help="Images to put side by side.", show_default=False),
    ],
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            help="The contact sheet (PNG, ...; '-' for stdout).",
            show_default=False,
        ),
    ],
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            "-l",
            help="Caption per image, in order (default: file names).",
            show_default=False,
        ),
    ] = None,
    height: Annotated[
        int | None,
        typer.Option(
            min=8,
            help="Common height of the tiles (default: the tallest image's).",
            show_default=False,
        ),
    ] = None,
    debug: Debug = False,
) -> None:
    """Put images side by side at a common height, each labelled: a contact sheet."""
    with interruptible():  # a signal mid-write leaves no temporary file
        try:
            from convtool.images import sheet

            refuse_terminals(reads_stdin="-" in paths, writes_stdout=output == "-")
            sheet.compare(paths, output, label, height=height)
        except Exception as err:  # noqa: BLE001
            raise fail(err, debug, memory_hint="a smaller --height or fewer images") from None


def register(app: typer.Typer) -> None:
    """Add ``match`` and ``compare`` to ``app``."""
    app.command(epilog=MATCH_EPILOG)(match)
    app.command(epilog=COMPARE_EPILOG)(compare)

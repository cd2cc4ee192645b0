"""The ``convtool`` command line: options become a chain of steps and library calls.

Only this module imports typer and rich. It parses, calls the library, draws progress
and tables on stderr, and turns :class:`~convtool.errors.ConvtoolError` into one line
on stderr and an exit code (2 for usage, 1 for failures). numpy and the engine are
imported inside the commands, so ``--version`` and ``--help`` start quickly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import warnings
from enum import Enum
from typing import Annotated

import typer
from typer.core import TyperGroup

from . import __version__, terminal
from .errors import ConvtoolError
from .padding import Padding
from .padding import help_text as padding_help

DEBUG_ENV = "CONVTOOL_DEBUG"


class OneLineErrors(TyperGroup):
    """Render every error as one line on stderr; tracebacks only with --debug."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        if not _debug_enabled("--debug" in (args if args is not None else sys.argv)):
            # a library's warning on stderr would break the one-line promise; --debug shows them
            warnings.simplefilter("ignore")
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except (typer.Abort, KeyboardInterrupt):
            terminal.error_line("interrupted")
            sys.exit(130)
        except Exception as err:
            if not _is_click_error(err):
                raise
            if type(err).__name__ == "NoArgsIsHelpError":  # bare `convtool`: the help itself
                print(err.format_message(), file=sys.stderr)
                sys.exit(err.exit_code)
            hint = ""
            if err.exit_code == 2:  # a usage error: point at the command's help
                ctx = getattr(err, "ctx", None)
                command = ctx.command_path if ctx is not None else "convtool"
                hint = f" (see '{command} --help')"
            terminal.error_line(f"{err.format_message()}{hint}")
            sys.exit(err.exit_code)
        sys.exit(result if isinstance(result, int) else 0)


def _is_click_error(err: BaseException) -> bool:
    """Click's own errors (bad option, missing argument), whichever click typer bundles."""
    return hasattr(err, "format_message") and isinstance(getattr(err, "exit_code", None), int)


app = typer.Typer(
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
kernels_app = typer.Typer(
    cls=OneLineErrors,
    help="List the named kernels, or show one as it will be applied.",
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=True,
    rich_markup_mode=None,
)
app.add_typer(kernels_app, name="kernels")


def _debug_enabled(flag: bool) -> bool:
    return flag or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _fail(err: BaseException, debug: bool) -> typer.Exit:
    """Print ``err`` as one line (or re-raise it with --debug) and give the exit to raise."""
    if _debug_enabled(debug):
        raise err
    if isinstance(err, ConvtoolError):
        terminal.error_line(str(err))
        return typer.Exit(err.exit_code)
    if isinstance(err, MemoryError):
        terminal.error_line(
            "out of memory; try a smaller image, --precision single or fewer --threads"
        )
        return typer.Exit(1)
    terminal.error_line(
        f"internal error: {type(err).__name__}: {err} (run with --debug for details)"
    )
    return typer.Exit(1)


def _version(value: bool) -> None:
    if value:
        print(f"convtool {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Exact, fast 2-D convolution of images: named or custom kernels, every padding mode.

    Examples:

      convtool filter photo.png -k sobel-x -o edges.png

      convtool filter in.png -k box:5 -o - | convtool filter - -k grad:sobel -o out.png

      convtool kernels show gaussian:sigma=1 -n 3
    """


# ------------------------------------------------------------------------------ filter


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


FILTER_EPILOG = """Examples:

  convtool filter samples/camera.png -k sobel-x --range offset -o edges.png

  convtool filter photo.jpg -k gaussian:sigma=2 -k sharpen:amount=1.5 -o out.png

  convtool filter in.png -k box:5 -o - | convtool filter - -k grad:sobel -o out.png

  convtool filter in.png -k "[1 2 1; 2 4 2; 1 2 1]/16" -n 3 --padding edge -o blurred.png

  convtool filter in.png -k sobel-x --depth float -o gx.tif     (raw signed results)

  convtool filter photos/ -o edges/ -r -j 2 -k grad:sobel --skip-existing

\b
Padding modes (k = kernel side):
""" + "\n".join("  " + line for line in padding_help().splitlines())

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


@app.command(epilog=FILTER_EPILOG)
def filter(  # noqa: A001 - the command is called `filter`
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUTS",
            help="Input images or folders; '-' reads an image from stdin.",
            show_default=False,
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            help="Output file, or folder when there are several "
            "inputs or a folder; '-' for stdout.",
            show_default=False,
        ),
    ],
    kernel: Annotated[
        list[str],
        typer.Option(
            "-k",
            "--kernel",
            help="Kernel spec, repeatable, applied in order: NAME, "
            "NAME:ARGS, an inline matrix, a kernel file, grad:OP, maxpool:N, avgpool:N. "
            "See `convtool kernels`.",
            show_default=False,
        ),
    ],
    padding: Annotated[
        str,
        typer.Option(
            "--padding",
            "-p",
            help="Border mode: zero, constant (with --cval), edge, reflect, symmetric, wrap, "
            "valid, full, or an alias (mirror, replicate, circular, ...); pictures below.",
        ),
    ] = Padding.REFLECT.value,
    cval: Annotated[
        float, typer.Option(help="Value outside the image for --padding constant.")
    ] = 0.0,
    iterations: Annotated[
        int, typer.Option("-n", "--iterations", help="Apply the whole chain N times.")
    ] = 1,
    correlate: Annotated[
        bool,
        typer.Option(
            "--correlate",
            help="Apply kernels as written (cross-correlation) "
            "instead of true convolution (kernel flipped).",
        ),
    ] = False,
    stride: Annotated[int, typer.Option(help="Keep every S-th output pixel of each step.")] = 1,
    dilation: Annotated[int, typer.Option(help="Space kernel taps D pixels apart.")] = 1,
    normalize: Annotated[
        bool,
        typer.Option(
            "--normalize",
            help="Divide each kernel by its sum (zero-sum kernels: "
            "positive weights to 1, negative to -1).",
        ),
    ] = False,
    precision: Annotated[
        Precision, typer.Option(help="Floating point inside: float32 or float64.")
    ] = Precision.single,
    method: Annotated[
        Method, typer.Option(help="How to compute; all give the same result within tolerance.")
    ] = Method.auto,
    threads: Threads = None,
    range_mode: Annotated[
        RangeMode | None,
        typer.Option(
            "--range",
            help="Map results into an integer output: clip (default), abs, "
            "offset (add half the range), rescale (min..max to full range).",
            show_default=False,
        ),
    ] = None,
    depth: Annotated[
        Depth | None,
        typer.Option(
            help="Output depth: 8, 16 or float (32-bit float TIFF / .npy, raw values). "
            "Default: the input's depth where the format holds it.",
            show_default=False,
        ),
    ] = None,
    gray: Annotated[
        bool, typer.Option("--gray", help="Convert colour input to luminance first (BT.601).")
    ] = False,
    format: Annotated[  # noqa: A002
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="Output format (png, jpg, tif, bmp, webp, ppm, npy); "
            "default: from the -o extension, png for stdout.",
            show_default=False,
        ),
    ] = None,
    compress_level: CompressLevel = 1,
    alpha: Annotated[
        AlphaMode,
        typer.Option(
            help="carry: keep alpha as is; weighted: premultiply so hidden "
            "colour does not bleed; filter: filter alpha like a channel."
        ),
    ] = AlphaMode.carry,
    channels: Annotated[
        str,
        typer.Option(
            help="Channels to filter: all, luma (BT.601 luminance of RGB, colour "
            "kept), or names/indices like R,G or 0,2; the rest pass unfiltered."
        ),
    ] = "all",
    max_pixels: MaxPixels = None,
    recursive: Annotated[
        bool,
        typer.Option("-r", "--recursive", help="Descend into the subfolders of input folders."),
    ] = False,
    suffix: Annotated[
        str,
        typer.Option(
            help="Add this to each output name, before the extension (with an output folder)."
        ),
    ] = "",
    jobs: Annotated[
        int | None,
        typer.Option(
            "-j",
            "--jobs",
            min=1,
            help="Worker processes (default: the number of CPUs).",
            show_default=False,
        ),
    ] = None,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing",
            help="Skip files whose output is already there (resume an interrupted run).",
        ),
    ] = False,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Stop at the first file that fails.")
    ] = False,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            metavar="ADDRESS",
            help="Send the files to this Dask scheduler "
            "(e.g. tcp://host:8786); its workers must see the same paths. Needs "
            "pip install 'convtool[dask]'.",
            show_default=False,
        ),
    ] = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Filter images with one or more kernels (true convolution by default).

    One input and -o FILE (or -) filters one image; several inputs or a folder need -o
    FOLDER and run as a batch in parallel, going on past bad files.
    """
    try:
        from . import batch
        from .pipeline import Chain, FilterOptions, parse_steps

        chain = Chain(
            steps=parse_steps(kernel),
            options=FilterOptions(
                padding=padding,
                cval=cval,
                stride=stride,
                dilation=dilation,
                correlate=correlate,
                normalize=normalize,
                method=method.value,
                threads=threads,
            ),
            iterations=iterations,
            alpha_mode=alpha.value,
            channels=channels,
        )
        settings = batch.Settings(
            chain=chain,
            read=batch.ReadOptions(
                precision=precision.value,
                gray=gray,
                max_pixels=_max_pixels(max_pixels),
            ),
            write=batch.WriteOptions(
                format=format,
                depth=depth.value if depth else None,
                range_mode=range_mode.value if range_mode else None,
                compress_level=compress_level,
            ),
        )
        plan = batch.plan(
            inputs,
            output,
            recursive=recursive,
            suffix=suffix,
            format=format,
            skip_existing=skip_existing,
        )
        if plan.single:
            if plan.jobs:
                with batch.sigterm_raises():  # SIGTERM cleans up as Ctrl-C does
                    batch.process(plan.jobs[0], settings)
            elif not quiet:
                print(f"convtool: {output}: skipped, the output exists", file=sys.stderr)
            return
        results = batch.run(
            plan.jobs, settings, workers=jobs, fail_fast=fail_fast, dask_address=dask
        )
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (batch.Interrupted)
        terminal.error_line("interrupted; no partial output was left")
        raise typer.Exit(128 + getattr(err, "signum", signal.SIGINT)) from None
    except Exception as err:  # noqa: BLE001 - every failure becomes one line
        raise _fail(err, debug) from None
    raise typer.Exit(_draw_batch(plan, results, quiet, debug))


def _draw_batch(plan, results, quiet: bool, debug: bool) -> int:
    """Draw a batch's progress and summary on stderr as results arrive; return the exit code."""
    import time

    from . import batch

    collected = []
    start = time.monotonic()
    try:
        with contextlib.closing(results), terminal.batch_progress(len(plan.jobs), quiet) as show:
            for result in results:
                collected.append(result)
                show(result)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (batch.Interrupted)
        summary = batch.summarize(collected, plan)
        terminal.print_summary(summary, time.monotonic() - start, quiet, interrupted=True)
        return 128 + getattr(err, "signum", signal.SIGINT)
    except ConvtoolError as err:  # the output folder cannot be made, Dask unreachable, ...
        raise _fail(err, debug) from None
    summary = batch.summarize(collected, plan)
    terminal.print_summary(summary, time.monotonic() - start, quiet)
    return summary.exit_code


def _max_pixels(value: int | None) -> int | None:
    from .images import DEFAULT_MAX_PIXELS

    if value is None:
        return DEFAULT_MAX_PIXELS
    return None if value == 0 else value


# ------------------------------------------------------------------------------ match


class Geometry(str, Enum):
    valid = "valid"
    same = "same"


MATCH_EPILOG = """Examples:

  convtool match scene.png template.png -o response.png

  convtool match scene.png template.png --threshold 0.8 --json

  convtool match scene.png template.png -t 0.9 -m 5 --overlay hits.png

  convtool match scene.png template.png -o scores.npy        (raw scores, valid geometry)
"""


@app.command(epilog=MATCH_EPILOG)
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
        typer.Option(
            "--range",
            help="Scores to grey levels: clip (default: negative black, 1 "
            "white), abs, offset (-1 black, 0 grey, 1 white), rescale.",
            show_default=False,
        ),
    ] = None,
    depth: Annotated[
        Depth | None,
        typer.Option(
            help="Score map depth: 8, 16 or float (raw scores; the default for .npy).",
            show_default=False,
        ),
    ] = None,
    format: Annotated[  # noqa: A002
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="Score map format; default: from the -o extension, png for stdout.",
            show_default=False,
        ),
    ] = None,
    thickness: Annotated[
        int, typer.Option(min=1, help="Box line width for --overlay (inside the window).")
    ] = 2,
    method: Annotated[
        Method, typer.Option(help="How to compute the correlation; same scores within 1e-12.")
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
    try:
        from . import matching

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
            max_pixels=_max_pixels(max_pixels),
            compress_level=compress_level,
        )
        outcome = matching.run(request)
        if as_json:
            import json

            print(json.dumps([m.to_dict() for m in outcome.matches], indent=2))
        if not quiet:
            terminal.note(outcome.summary())
    except Exception as err:  # noqa: BLE001
        raise _fail(err, debug) from None


# ---------------------------------------------------------------------------- compare


@app.command(
    epilog="Examples:\n\n  convtool compare in.png blur.png edges.png -o sheet.png\n\n"
    "  convtool compare a.png b.png --label before --label after --height 256 -o s.png"
)
def compare(
    paths: Annotated[
        list[str],
        typer.Argument(metavar="IMAGES", help="Images to put side by side.", show_default=False),
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
    try:
        from . import images, sheet
        from .errors import UsageError

        labels = list(label or [])
        if labels and len(labels) != len(paths):
            raise UsageError(
                f"--label given {len(labels)} times for {len(paths)} images; "
                "give one per image or none"
            )
        pictures = []
        for path in paths:
            image = images.read_image(path)
            pictures.append(sheet.display_rgb(image.pixels, image.alpha, image.max_value))
        labels = labels or [os.path.basename(p) if p != "-" else "stdin" for p in paths]
        result = sheet.contact_sheet(pictures, labels, height=height)
        images.write_image(output, images.Image(result, depth=8))
    except Exception as err:  # noqa: BLE001
        raise _fail(err, debug) from None


# ----------------------------------------------------------------------------- kernels


@kernels_app.callback()
def kernels_list(
    ctx: typer.Context,
    debug: Debug = False,
) -> None:
    """List the named kernels: name, size, parameters with defaults, description.

    Examples:

      convtool kernels

      convtool kernels show sobel-x

      convtool kernels show binomial:3 -n 2
    """
    if ctx.invoked_subcommand is not None:
        return
    try:
        from . import kernels, pipeline

        rows = [(e.name, e.size, e.params or "-", e.description) for e in kernels.list_kernels()]
        terminal.print_kernel_table(rows + pipeline.step_entries())
    except Exception as err:  # noqa: BLE001
        raise _fail(err, debug) from None


@kernels_app.command(
    "show",
    epilog="Examples:\n\n  convtool kernels show sobel-x\n\n"
    "  convtool kernels show binomial:3 -n 2\n\n"
    '  convtool kernels show "[1 2 1]/4" --correlate',
)
def kernels_show(
    spec: Annotated[str, typer.Argument(help="A kernel spec, as given to -k.", show_default=False)],
    iterations: Annotated[
        int, typer.Option("-n", "--iterations", help="Show the one kernel equal to N applications.")
    ] = 1,
    correlate: Annotated[
        bool, typer.Option("--correlate", help="Show it as applied by --correlate.")
    ] = False,
    normalize: Annotated[
        bool, typer.Option("--normalize", help="Apply --normalize first.")
    ] = False,
    debug: Debug = False,
) -> None:
    """Show a kernel's matrix, sum and separability, as it will be applied."""
    try:
        from . import kernelview

        reports = kernelview.report(
            spec, iterations=iterations, correlate=correlate, normalize=normalize
        )
        if terminal.rich_stdout():
            terminal.print_heat_maps(reports)
        else:
            print(kernelview.format_plain(reports))
    except Exception as err:  # noqa: BLE001
        raise _fail(err, debug) from None


def main() -> None:
    """Console-script entry point."""
    app()

"""The ``convtool`` command line: the app, ``filter`` and ``kernels``.

Options become a chain of steps and library calls; the CLI modules (this one,
:mod:`convtool.cli_analysis`, :mod:`convtool.cli_shared`) are the only ones that import
typer, and rich is drawn through :mod:`convtool.terminal`. Errors become one line on
stderr and an exit code (2 for usage, 1 for failures). numpy and the engine are imported
inside the commands, so ``--version`` and ``--help`` start quickly.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import warnings
from typing import Annotated

import typer
from typer.core import TyperGroup

from convtool import __version__
from convtool.cli import analysis as cli_analysis
from convtool.cli import terminal
from convtool.cli.options import (
    AlphaMode,
    CompressLevel,
    Debug,
    Depth,
    MaxPixels,
    Method,
    Precision,
    Quiet,
    RangeMode,
    Threads,
    debug_enabled,
    fail,
    pixel_limit,
)
from convtool.errors import ConvtoolError
from convtool.padding import Padding
from convtool.padding import help_text as padding_help


class OneLineErrors(TyperGroup):
    """Render every error as one line on stderr; tracebacks only with --debug."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        if not debug_enabled("--debug" in (args if args is not None else sys.argv)):
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
        from convtool import batch
        from convtool.kernels.specs import files_read
        from convtool.pipeline import Chain, FilterOptions, parse_steps

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
                max_pixels=pixel_limit(max_pixels),
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
            kernel_files=[path for spec in kernel for path in files_read(spec)],
        )
        if plan.single:
            if plan.jobs:
                with batch.sigterm_raises():  # SIGTERM cleans up as Ctrl-C does
                    batch.process(plan.jobs[0], settings)
            elif not quiet:
                terminal.note(f"{output}: skipped, the output exists")
            return
        results = batch.run(
            plan.jobs, settings, workers=jobs, fail_fast=fail_fast, dask_address=dask
        )
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (batch.Interrupted)
        terminal.error_line("interrupted; no partial output was left")
        raise typer.Exit(128 + getattr(err, "signum", signal.SIGINT)) from None
    except Exception as err:  # noqa: BLE001 - every failure becomes one line
        raise fail(err, debug) from None
    raise typer.Exit(_draw_batch(plan, results, quiet, debug))


def _draw_batch(plan, results, quiet: bool, debug: bool) -> int:
    """Draw a batch's progress and summary on stderr as results arrive; return the exit code."""
    import time

    from convtool import batch

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
        raise fail(err, debug) from None
    summary = batch.summarize(collected, plan)
    terminal.print_summary(summary, time.monotonic() - start, quiet)
    return summary.exit_code


cli_analysis.register(app)


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
        from convtool import kernels, pipeline

        rows = [(e.name, e.size, e.params or "-", e.description) for e in kernels.list_kernels()]
        terminal.print_kernel_table(rows + pipeline.step_entries())
    except Exception as err:  # noqa: BLE001
        raise fail(err, debug, memory_hint="a smaller kernel or -n") from None


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
        from convtool.pipeline import report as kernelview

        reports = kernelview.report(
            spec, iterations=iterations, correlate=correlate, normalize=normalize
        )
        if terminal.rich_stdout():
            terminal.print_heat_maps(reports)
        else:
            print(kernelview.format_plain(reports))
    except Exception as err:  # noqa: BLE001
        raise fail(err, debug, memory_hint="a smaller kernel or -n") from None


def main() -> None:
    """Console-script entry point."""
    app()

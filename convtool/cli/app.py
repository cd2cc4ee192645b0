"""The ``convtool`` command line: the app, ``filter`` and ``kernels``.

Options become library settings and calls (``filter``'s in :mod:`convtool.cli.filtering`);
the CLI modules (this one, :mod:`convtool.cli.analysis`, :mod:`convtool.cli.teach`,
:mod:`convtool.cli.options`) are the only ones that import typer, and rich is drawn through
:mod:`convtool.cli.terminal`. Errors become one line on stderr and an exit code (2 for
usage, 1 for failures). numpy and the engine are imported inside the commands, so
``--version`` and ``--help`` start quickly.

Past 400 lines because ``filter`` declares its 45 options here, with their help texts, as
Typer wants them in the command's signature; the options shared with other commands live in
:mod:`convtool.cli.options`, and nothing here but the declarations and the error lines.
"""

from __future__ import annotations

import signal
import sys
import warnings
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from convtool import __version__, stdio
from convtool.choices import AlphaMode, Compression, Frames, Method, Precision, Subsampling
from convtool.cli import analysis as cli_analysis
from convtool.cli import teach as cli_teach
from convtool.cli import terminal
from convtool.cli.options import (
    Bias,
    CompressLevel,
    Correlate,
    Cval,
    Debug,
    DepthOption,
    Dilation,
    Gray,
    Groups,
    Iterations,
    KernelSpecs,
    MaxPixels,
    MethodOption,
    Normalize,
    PaddingMode,
    PrecisionOption,
    Quiet,
    RangeOption,
    Stride,
    Threads,
    Transposed,
    debug_enabled,
    fail,
    format_option,
    refuse_terminals,
    reset_debug,
)
from convtool.errors import StdoutError
from convtool.padding import Padding
from convtool.padding import help_text as padding_help


class OneLineErrors(TyperGroup):
    """Render every error as one line on stderr; tracebacks only with --debug.

    Stdout is checked too (:mod:`convtool.stdio`): whatever a command, its help or
    ``--version`` writes there either all arrives or the run fails with one line (exit 1),
    or quietly with 141 when the reader of a pipe has gone (``| head``).
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        stdio.install()
        try:
            code = self._run(args, prog_name, complete_var, **extra)
            stdio.flush()
        except StdoutError as err:
            if not getattr(err, "quiet", False):
                terminal.error_line(str(err))
            code = err.exit_code
        sys.exit(code)

    def _run(self, args, prog_name, complete_var, **extra) -> int:
        reset_debug()  # each run starts without the --debug of an earlier one (tests)
        if not debug_enabled("--debug" in (args if args is not None else sys.argv)):
            # a library's warning on stderr would break the one-line promise; --debug shows them
            warnings.simplefilter("ignore")
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except (typer.Abort, KeyboardInterrupt):
            terminal.error_line("interrupted")
            return 130
        except StdoutError:
            raise
        except Exception as caught:
            if not _is_click_error(caught):
                raise
            err: Any = caught  # click's exception, whichever click typer bundles
            if type(err).__name__ == "NoArgsIsHelpError":  # bare `convtool`: the help itself
                terminal.print_stderr(err.format_message())
                return err.exit_code
            hint = ""
            if err.exit_code == 2:  # a usage error: point at the command's help
                ctx = getattr(err, "ctx", None)
                command = ctx.command_path if ctx is not None else "convtool"
                hint = f" (see '{command} --help')"
            terminal.error_line(f"{err.format_message()}{hint}")
            return err.exit_code
        return result if isinstance(result, int) else 0


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
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=True,
    rich_markup_mode=None,
)
app.add_typer(kernels_app, name="kernels")


def _version(value: bool) -> None:
    if value:
        print(f"convtool {__version__}")
        raise typer.Exit()


@app.callback(
    epilog="Examples:\n\n\b\n"
    "  convtool filter photo.png -k sobel-x -o edges.png\n"
    "  convtool filter in.png -k box:5 -o - | convtool filter - -k grad:sobel -o out.png\n"
    "  convtool filter photos/ -o edges/ -k grad:sobel -j 2\n"
    "  convtool kernels show gaussian:sigma=1 -n 3\n"
    "  convtool match scene.png template.png --json\n"
    "  convtool compare in.png edges.png -o sheet.png\n"
    '  convtool explain "[10 20 30; 40 50 60; 70 80 90]" -k sharpen --at 1,1\n'
    "  convtool animate --size 5x5 -k box:3 --stride 2 -o conv.gif"
)
def main_callback(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Debug = False,
) -> None:
    """Exact, fast 2-D convolution of images: named or custom kernels, every padding mode."""


# ------------------------------------------------------------------------------ filter


FILTER_EPILOG = """Examples:

\b
  convtool filter samples/camera.png -k sobel-x --range offset -o edges.png
  convtool filter photo.jpg -k unsharp:sigma=2,amount=1.5 -o sharper.png
  convtool filter in.png -k box:5 -o - | convtool filter - -k grad:sobel -o out.png
  convtool filter in.png -k "[1 2 1; 2 4 2; 1 2 1]/16" -n 3 --padding edge -o blurred.png
  convtool filter in.png -k sobel-x --depth float -o gx.tif     (raw signed results)
  convtool filter photos/ -o edges/ -r -j 2 -k grad:sobel --skip-existing
  convtool filter photo.jpg -k sharpen --quality 85 --subsampling 4:2:0 -o out.jpg
  convtool filter anim.gif -k box:3 -o anim.webp     (every frame; --frames first: one)
  convtool filter in.png -k binomial:3@scale=4 --transposed --stride 2 -o up.png  (2x bilinear)
  convtool filter in.png -k sobel-x -k sobel-y --stack -o g.npy           (H x W x 2)
  convtool filter rgb.png -k dw.npy -k pw.npy --correlate --padding zero -o f.npy

\b
Padding modes (k = kernel side):
""" + "\n".join("  " + line for line in padding_help().splitlines())


@app.command(epilog=FILTER_EPILOG)
def filter(  # noqa: A001 - the command is called `filter`
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUTS...",
            help="Input images or folders; '-' reads an image from stdin.",
            show_default=False,
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            help="Output file, or folder when there are several inputs or a folder; "
            "'-' for stdout (not a terminal). A name with an image extension (x.png) is "
            "always a file; a trailing / makes any name a folder.",
            show_default=False,
        ),
    ],
    kernel: KernelSpecs,
    padding: PaddingMode = Padding.REFLECT.value,
    cval: Cval = 0.0,
    iterations: Iterations = 1,
    correlate: Correlate = False,
    stride: Stride = 1,
    dilation: Dilation = 1,
    normalize: Normalize = False,
    transposed: Transposed = False,
    stack: Annotated[
        bool,
        typer.Option(
            "--stack",
            help="Filter bank: apply each -k to the input on its own and stack the results as "
            "channels (kernel by kernel); .npy/.tif keep them, image formats get a contact sheet.",
        ),
    ] = False,
    groups: Groups = None,
    bias: Bias = None,
    precision: PrecisionOption = Precision.single,
    method: MethodOption = Method.auto,
    threads: Threads = None,
    range_mode: RangeOption = None,
    depth: DepthOption = None,
    gray: Gray = False,
    format: Annotated[  # noqa: A002
        str | None,
        format_option(
            "Output format (png, apng, jpg, tif, bmp, webp, gif, ppm, npy, zarr), or zarr2 "
            "for a zarr v2 store; default: from the -o extension (which must agree), png for "
            "stdout."
        ),
    ] = None,
    compress_level: CompressLevel = 1,
    quality: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=100,
            help="JPEG quality 1-100 (default 92); for WebP, lossy at this quality instead "
            "of lossless; for TIFF with --compression jpeg.",
            show_default=False,
        ),
    ] = None,
    subsampling: Annotated[
        Subsampling | None,
        typer.Option(
            help="JPEG chroma subsampling (default 4:4:4: filtered edges keep their colour).",
            show_default=False,
        ),
    ] = None,
    progressive: Annotated[
        bool, typer.Option("--progressive", help="Write progressive JPEG.")
    ] = False,
    compression: Annotated[
        Compression | None,
        typer.Option(
            help="TIFF compression (default deflate at --compress-level; none at 0). "
            "lzw, zstd, jpeg and packbits use imagecodecs when installed, else Pillow.",
            show_default=False,
        ),
    ] = None,
    strip: Annotated[
        bool,
        typer.Option(
            "--strip",
            help="Write no metadata (ICC profile, EXIF, XMP, DPI, text); by default it is "
            "kept where the output format holds it.",
        ),
    ] = False,
    frames: Annotated[
        Frames,
        typer.Option(
            help="all: filter every frame of an animation (GIF, APNG, WebP) or page of a "
            "TIFF; first: only the first.",
        ),
    ] = Frames.all,
    background: Annotated[
        str | None,
        typer.Option(
            metavar="COLOR",
            help="Colour that alpha is composited over for JPEG, BMP and PNM: a name, "
            "#rrggbb or R,G,B (default white, with a warning).",
            show_default=False,
        ),
    ] = None,
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
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="Read, filter and write band by band (tiled/striped TIFF, zarr, .npy in; "
            "tiled BigTIFF, zarr, .npy out), as images too large for memory are anyway.",
        ),
    ] = False,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            metavar="ADDRESS",
            help="Send a batch's files to this Dask scheduler "
            "(e.g. tcp://host:8786); its workers must see the same paths. One input with "
            "-o OUT.zarr: that image is cut into chunks across the cluster. Needs "
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
        if len(inputs) == 1 and not stream and dask is None:
            # the input's pixels are read and inflated on a thread while numpy imports
            from convtool.images import readahead

            readahead.start(inputs[0], max_pixels)
        from convtool.cli import filtering

        settings = filtering.settings_from_options(
            kernel=kernel,
            groups=groups,
            bias=bias,
            padding=padding,
            cval=cval,
            stride=stride,
            dilation=dilation,
            correlate=correlate,
            normalize=normalize,
            method=method,
            threads=threads,
            transposed=transposed,
            iterations=iterations,
            alpha=alpha,
            channels=channels,
            stack=stack,
            precision=precision,
            gray=gray,
            max_pixels=max_pixels,
            frames=frames,
            format=format,
            depth=depth,
            range_mode=range_mode,
            compress_level=compress_level,
            quality=quality,
            subsampling=subsampling,
            progressive=progressive,
            compression=compression,
            background=background,
            strip=strip,
            stream=stream,
        )
        refuse_terminals(reads_stdin="-" in inputs, writes_stdout=output == "-")
        if debug_enabled(debug):
            from convtool.engine import native

            terminal.note(f"engine: {native.implementation()}")
        plan = filtering.plan_jobs(
            inputs, output, settings, kernel, bias, recursive, suffix, format, skip_existing
        )
        if plan.single:
            filtering.filter_one(plan, settings, output, dask, quiet)
            return
        results = filtering.start_batch(plan, inputs, settings, jobs, fail_fast, dask)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (batch.Interrupted)
        terminal.error_line("interrupted; no partial output was left")
        raise typer.Exit(128 + getattr(err, "signum", signal.SIGINT)) from None
    except Exception as err:  # noqa: BLE001 - every failure becomes one line
        raise fail(err, debug) from None
    raise typer.Exit(filtering.draw_batch(plan, results, quiet, debug))


cli_analysis.register(app)
cli_teach.register(app)


# ----------------------------------------------------------------------------- kernels


@kernels_app.callback(
    epilog="Examples:\n\n\b\n  convtool kernels\n  convtool kernels show sobel-x\n"
    "  convtool kernels show sharpen:amount=1.5     (its sum: 1/2)\n"
    "  convtool kernels show binomial:3 -n 2"
)
def kernels_list(
    ctx: typer.Context,
    debug: Debug = False,
) -> None:
    """List the named kernels and steps (size, parameters, description), or show one.

    Sizes are rows x columns (HxW), as in box:3x5.
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
    epilog="Examples:\n\n\b\n  convtool kernels show sobel-x\n"
    "  convtool kernels show binomial:3 -n 2\n"
    '  convtool kernels show "[1 2 1]/4" --correlate\n'
    '  convtool kernels show "5x3: 1 2 3 4 5 1 2 3 4 5 1 2 3 4 5"   (ImageMagick: WxH)\n'
    "  convtool kernels show log:sigma=2 --image log.png",
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
    image: Annotated[
        str | None,
        typer.Option(
            "--image",
            metavar="PATH",
            help="Also write the kernel as a heat map picture (PNG, or the format of "
            "PATH's extension): red for positive weights, blue for negative.",
            show_default=False,
        ),
    ] = None,
    debug: Debug = False,
) -> None:
    """Show a kernel's matrix, sum and separability, as it will be applied."""
    try:
        from convtool.pipeline import report as kernelview

        reports = kernelview.report(
            spec, iterations=iterations, correlate=correlate, normalize=normalize
        )
        if image is not None:
            refuse_terminals(writes_stdout=image == "-")
            from convtool import images
            from convtool.images.heatmap import heat_map

            picture = heat_map([kernelview.heat_map_cells(rep) for rep in reports])
            images.write_image(image, images.Image(picture.astype("float32"), depth=8))
            if image == "-":
                return  # stdout holds the picture: no listing beside it
        if terminal.rich_stdout():
            terminal.print_heat_maps(reports)
        else:
            print(kernelview.format_plain(reports))
    except Exception as err:  # noqa: BLE001
        raise fail(err, debug, memory_hint="a smaller kernel or -n") from None


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        leave(code)
        raise


def leave(code: int) -> None:
    """End the process now with *code*, without the interpreter's teardown, when that is safe.

    Tearing down an interpreter that has imported numpy and filtered a 4K image (modules,
    arrays, the engine's idle band threads) took 40-65 ms of a 0.45 s run here. By the time
    a command returns, every output is written, fsynced and renamed, so the only work left
    is flushing the standard streams and the atexit handlers (multiprocessing's, Dask's),
    which run here. It is skipped (the ordinary exit runs) when a thread other than the
    engine's idle band threads is still alive, or a stream cannot be flushed: Python then
    reports that as it always does.
    """
    import threading

    schedule = sys.modules.get("convtool.engine.schedule")  # loaded if bands ever ran
    band_threads = schedule.BAND_THREAD_PREFIX if schedule is not None else None
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.daemon:
            continue
        if band_threads is None or not thread.name.startswith(band_threads):
            return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    import atexit
    import os

    atexit._run_exitfuncs()  # noqa: SLF001 - the handlers an exit runs, and only those
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code)

"""``convtool filter`` behind its options: the options as library settings, then one call.

:func:`settings_from_options` turns the command's options into :class:`convtool.batch.Settings`
(a :class:`convtool.pipeline.Chain` and how to read and write); :func:`plan_jobs` turns the
inputs and ``-o`` into jobs (:func:`convtool.batch.plan`); then either :func:`filter_one`
(``batch.process`` on the one job, or the one image across a Dask cluster) or
:func:`start_batch` (``batch.run``), whose results :func:`draw_batch` shows as they come.
The command (:mod:`convtool.cli.app`) only declares the options and turns errors into lines.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator, Sequence

from convtool import batch
from convtool.cli import terminal
from convtool.cli.options import fail, pixel_limit
from convtool.errors import ConvtoolError


def settings_from_options(
    *,
    kernel: list[str],
    groups,
    bias,
    padding,
    cval: float,
    stride,
    dilation,
    correlate: bool,
    normalize: bool,
    method,
    threads: int | None,
    transposed: bool,
    iterations: int,
    alpha,
    channels: str,
    stack: bool,
    precision,
    gray: bool,
    max_pixels,
    frames,
    format: str | None,  # noqa: A002 - the option's name
    depth,
    range_mode,
    compress_level: int,
    quality: int | None,
    subsampling,
    progressive: bool,
    compression,
    background: str | None,
    strip: bool,
    stream: bool,
) -> batch.Settings:
    """The ``filter`` options (Typer's values: enums, strings) as library settings."""
    from convtool.padding import parse_padding
    from convtool.pipeline import Chain, FilterOptions, parse_steps, with_layer_options

    chain = Chain(
        steps=tuple(with_layer_options(parse_steps(kernel), groups or [], bias or [])),
        options=FilterOptions(
            padding=parse_padding(padding),
            cval=cval,
            stride=stride,
            dilation=dilation,
            correlate=correlate,
            normalize=normalize,
            method=method.value,
            threads=threads,
            transposed=transposed,
        ),
        iterations=iterations,
        alpha_mode=alpha.value,
        channels=channels,
        stack=stack,
    )
    return batch.Settings(
        chain=chain,
        read=batch.ReadOptions(
            precision=precision.value,
            gray=gray,
            max_pixels=pixel_limit(max_pixels),
            stream_max_pixels=pixel_limit(max_pixels) if max_pixels is not None else None,
            frames=frames.value,
        ),
        write=batch.WriteOptions(
            format=format,
            depth=depth.value if depth else None,
            range_mode=range_mode.value if range_mode else None,
            compress_level=compress_level,
            quality=quality,
            subsampling=subsampling.value if subsampling else None,
            progressive=progressive,
            compression=compression.value if compression else None,
            background=background,
            strip=strip,
        ),
        stream=stream,
    )


def plan_jobs(
    inputs: Sequence[str],
    output: str,
    settings: batch.Settings,
    kernel: Sequence[str],
    bias,
    recursive: bool,
    suffix: str,
    format: str | None,  # noqa: A002 - the option's name
    skip_existing: bool,
) -> batch.JobPlan:
    """The jobs for ``inputs`` and ``-o``; every output checked before any work starts
    (none may be an input, a kernel file or a ``--bias`` file)."""
    from convtool.kernels.specs import files_read

    plan = batch.plan(
        inputs,
        output,
        recursive=recursive,
        suffix=suffix,
        format=format,
        skip_existing=skip_existing,
        kernel_files=[path for spec in kernel for path in files_read(spec)] + list(bias or []),
    )
    settings.write.check(job.dest for job in plan.jobs)  # a usage error before any work
    return plan


def filter_one(
    plan: batch.JobPlan, settings: batch.Settings, output: str, dask: str | None, quiet: bool
) -> None:
    """One input to one output: here, or cut into chunks across a Dask cluster for a zarr
    output; a skipped existing output is said on stderr."""
    if plan.jobs and dask is not None and batch.writes_zarr(plan.jobs[0], settings):
        from convtool import dask as cluster  # imports dask, only when asked for
        from convtool.batch import dask_runner

        dask_runner.require_dask()
        with batch.sigterm_raises(), terminal.chunk_progress(quiet) as progress:
            cluster.filter_file(plan.jobs[0], settings, dask, progress=progress)
        return
    if dask is not None and not quiet:
        terminal.note(
            "--dask sends batches (several inputs or a folder) to a cluster, and one "
            "image only with a zarr output (-o NAME.zarr); this one file is filtered here"
        )
    if not plan.jobs:
        if not quiet:
            terminal.note(f"{output}: skipped, the output exists")
        return
    job = plan.jobs[0]
    # SIGTERM, SIGHUP, ... clean up as Ctrl-C does
    with batch.signals_raise(), terminal.image_progress(quiet) as progress:
        notes = batch.process(job, settings, progress=progress)
    for note in [] if quiet else notes:
        terminal.warning_line(f"{job.dest}: {note}")


def start_batch(
    plan: batch.JobPlan,
    inputs: Sequence[str],
    settings: batch.Settings,
    jobs: int | None,
    fail_fast: bool,
    dask: str | None,
) -> Iterator[batch.JobResult]:
    """The batch's results as they come (a usage error, like no images, raised here)."""
    batch.require_images(plan, inputs)
    batch.keep_freed_memory()  # image after image here too with -j 1: reuse their memory
    return batch.run(plan.jobs, settings, workers=jobs, fail_fast=fail_fast, dask_address=dask)


def draw_batch(plan: batch.JobPlan, results, quiet: bool, debug: bool) -> int:
    """Draw a batch's progress and summary on stderr as results arrive; return the exit code."""
    import time

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

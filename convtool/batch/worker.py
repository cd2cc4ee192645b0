"""One job's processing: read, check memory, filter, write; or a failed result instead."""

from __future__ import annotations

import errno
import time
from dataclasses import replace

import numpy as np

from convtool import images
from convtool.batch import streaming
from convtool.batch.jobs import DONE, FAILED, Job, JobResult, Settings
from convtool.engine import native
from convtool.engine.integer import integer_form
from convtool.errors import MAX_LINE, ConvtoolError, ImageWriteError, UsageError, one_line
from convtool.images import outputs
from convtool.images.atomic import write_error_reason
from convtool.pipeline import ConvolveStep, Progress, shapes
from convtool.pipeline import memory as limits


def process(job: Job, settings: Settings, progress: Progress | None = None) -> list[str]:
    """Read, filter and write one job; raises :class:`ConvtoolError` on failure.

    Returns the writer's notes (what the output format could not hold). ``progress``
    follows the filtering (see :data:`convtool.pipeline.Progress`). Before filtering: the
    output is not the input and its name fits the file system, the output format can hold
    the result's size, and the work fits in memory. Band by band
    (:mod:`convtool.batch.streaming`) when asked, or when the image would not fit in memory
    and its formats allow it; else whole, refused if it does not fit.
    """
    outputs.check_name(job.dest)
    outputs.check_not_inputs([("-o", job.dest)], [job.source])
    if streaming.wants_stream(job, settings):
        return streaming.process_streaming(job, settings, progress=progress)
    write = settings.write
    fmt = images.format_for(job.dest, write.format)
    route = uint8_route(settings, fmt)
    image = images.read_image(
        job.source,
        precision=settings.read.precision,
        gray=settings.read.gray,
        max_pixels=settings.read.max_pixels,
        frames=settings.read.frames,
        keep_8bit=route is not None,  # one step: quick, no progress to draw
    )
    images.check_frames(fmt, image.frame_count, job.source)  # before the work, not after
    height, width = _planned_shape(settings, image, fmt)
    outputs.check_size(job.dest, fmt, height, width, image.channels)
    # refuse with a clear message now rather than be ended by the OOM killer halfway
    if image.pixels.dtype == np.uint8:  # counted as the float path, which it may take
        floats = 8 if settings.read.precision == "double" else 4
        limits.check_memory(
            settings.chain, image, share=settings.workers, itemsize=floats, held=False
        )
    else:
        limits.check_memory(settings.chain, image, share=settings.workers)
    result = None
    if image.pixels.dtype == np.uint8:  # 8 bits in, 8 bits out: no float image
        work_dtype = None if route == "integer" else route
        filtered = settings.chain.apply_uint8(image.pixels, image.alpha, work_dtype)
        if filtered is not None:
            result = replace(image, pixels=filtered[0], alpha=filtered[1])
    if result is None:
        image = images.float_image(image, settings.read.precision)  # (as read, if float)
        if progress is None:
            result = settings.chain.apply_to(image)
        else:
            result = settings.chain.apply_to(image, progress=progress)
    channels = image.channels
    del image  # its pixels need not be held through the write
    range_mode = write.range_mode
    if settings.chain.stack and fmt not in ("npy", "tiff"):
        result, range_mode = _stack_sheet(result, settings, channels), None  # mapped already
    if write.strip:
        result = replace(result, metadata=images.Metadata())
    return images.write_image(
        job.dest,
        result,
        format=write.format,
        depth=write.depth,
        range_mode=range_mode,
        compress_level=write.compress_level,
        background=write.background,
        inside=job.root,  # its folders are opened with no symbolic link followed
        **write.controls_for(fmt),
    )


def uint8_route(settings: Settings, fmt: str) -> str | None:
    """How an 8-bit input may go straight to 8-bit results (``Chain.apply_uint8``) for this
    output, to the same bytes as the float path: ``"integer"`` (the exact integer kernels,
    see :func:`integer_route`), ``"float32"`` / ``"float64"`` (``--precision``: computed in
    that dtype from the 8-bit samples and rounded band by band, which is the float path's
    arithmetic without its float image or its mapping pass; with the compiled kernels only,
    whose sums do not depend on the row's layout), or None: the float path.
    """
    if integer_route(settings, fmt):
        return "integer"
    write, read, chain = settings.write, settings.read, settings.chain
    if read.gray or write.range_mode not in (None, "clip") or native.module() is None:
        return None
    if fmt == "npy" or write.depth not in (None, 8, "8"):
        return None
    if chain.stack or len(chain.steps) != 1 or not isinstance(chain.steps[0], ConvolveStep):
        return None
    if chain.options.transposed:
        return None
    return "float64" if read.precision == "double" else "float32"


def integer_route(settings: Settings, fmt: str) -> bool:
    """Whether an 8-bit input may be filtered in integers (``Chain.apply_uint8``) for
    this output: to the same bytes as the float path, which is what this checks.

    The output must be 8-bit with ``--range clip`` (the default: 8-bit formats, and TIFF
    and PNG from 8-bit input), the chain one convolving step whose weights are small
    integers over a power of two: there the float32 path is exact as well (every product
    and sum of 8-bit samples is a float32), and so both give the same integers. Other
    kernels (Gaussians, a 3×3 box's ninths) keep the float path, whose float32 rounding
    the integer kernels would not reproduce.
    """
    write, read, chain = settings.write, settings.read, settings.chain
    if read.precision != "single" or read.gray or write.range_mode not in (None, "clip"):
        return False
    if fmt == "npy" or write.depth not in (None, 8, "8"):
        return False
    if chain.stack or len(chain.steps) != 1 or not isinstance(chain.steps[0], ConvolveStep):
        return False
    if chain.options.cval != 0 or chain.options.transposed:
        return False
    kernel = chain.steps[0].kernel
    kernel = kernel.normalized() if chain.options.normalize else kernel
    form = integer_form(kernel.weights)
    if form is None:
        return False
    numbers, scale, denominator = form
    dyadic = denominator & (denominator - 1) == 0
    return dyadic and 255 * int(np.abs(numbers).sum()) * scale < _FLOAT32_EXACT


_FLOAT32_EXACT = 1 << 24  # integers up to here are float32s


def _planned_shape(settings: Settings, image: images.Image, fmt: str) -> tuple[int, int]:
    """The (height, width) the output will have: the chain's result, or its stack sheet."""
    chain = settings.chain
    height, width = shapes.output_shape(chain, *image.pixels.shape[:2])
    if chain.stack and fmt not in ("npy", "tiff"):
        from convtool.images.sheet import layout as sheet_layout  # Pillow's fonts: only here

        tiles = sum(1 if n in (1, 3) else n for _, n in chain.stack_sizes(image.channels))
        height, width, _ = sheet_layout([(height, width)] * tiles)
    return height, width


def _stack_sheet(result: images.Image, settings: Settings, channels: int) -> images.Image:
    """A filter bank written to an image format: its channels as a labelled contact sheet
    (of the first frame: a sheet is one picture)."""
    if settings.write.depth not in (None, "8", 8):
        raise UsageError(
            "a --stack contact sheet is 8-bit; for --depth 16 or float write .npy or .tif"
        )
    from convtool.images.sheet import stack_sheet

    groups = settings.chain.stack_sizes(channels)
    sheet = stack_sheet(result.pixels, groups, result.depth, settings.write.range_mode)
    return images.Image(sheet, depth=8, source=result.source)


def process_quietly(job: Job, settings: Settings) -> JobResult:
    """Run one job and report it as a :class:`JobResult` instead of raising.

    Any exception but an interruption becomes a failed result, so one bad file (or a bug
    that only one file meets) never ends a batch.
    """
    start = time.perf_counter()
    try:
        notes = process(job, settings)
    except ConvtoolError as err:
        return _failed(job, str(err), start, fatal=_is_fatal(err))
    except MemoryError:
        return _failed(job, "out of memory", start)
    except Exception as err:  # noqa: BLE001 - reported per file; the batch goes on
        return _failed(job, f"internal error: {type(err).__name__}: {err}", start)
    return JobResult(job, DONE, None, time.perf_counter() - start, warnings=tuple(notes))


def _failed(job: Job, message: str, start: float, *, fatal: bool = False) -> JobResult:
    """A failed result with a one-line reason.

    The reason drops a leading ``source:`` (the result names its job already); a message
    about another path (the output's) keeps that path.
    """
    message, source = one_line(message, limit=2 * MAX_LINE), one_line(job.source, limit=10**6)
    prefix = f"{source}: "
    reason = message[len(prefix) :] if message.startswith(prefix) else message
    return JobResult(job, FAILED, reason, time.perf_counter() - start, fatal)


def _fatal_write_reasons() -> tuple[str, ...]:
    return tuple(write_error_reason(OSError(e, "")) for e in _FATAL_WRITE_ERRNOS)


# A full disk or quota, or a read-only file system: every later write would fail the same
# way, so the batch stops. Not EACCES: permissions may differ from folder to folder.
_FATAL_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _is_fatal(err: ConvtoolError) -> bool:
    """A write error that every later write would meet too."""
    if getattr(err, "errno", None) in _FATAL_WRITE_ERRNOS:
        return True
    return isinstance(err, ImageWriteError) and any(r in str(err) for r in _fatal_write_reasons())


def with_threads(settings: Settings, threads: int) -> Settings:
    """``settings`` with ``threads`` engine threads per image, unless the chain sets its own."""
    options = settings.chain.options
    if options.threads is not None:
        return settings
    chain = replace(settings.chain, options=replace(options, threads=threads))
    return replace(settings, chain=chain)

"""One job's processing: read, check memory, filter, write; or a failed result instead."""

from __future__ import annotations

import errno
import os
import time
from dataclasses import replace

from convtool import images
from convtool.batch.jobs import DONE, FAILED, Job, JobResult, Settings, is_inside
from convtool.errors import MAX_LINE, ConvtoolError, ImageWriteError, one_line
from convtool.images import outputs
from convtool.images.atomic import write_error_reason
from convtool.pipeline import memory as limits


def process(job: Job, settings: Settings) -> None:
    """Read, filter and write one job; raises :class:`ConvtoolError` on failure.

    Before filtering: the output is not the input and its name fits the file system, the
    work fits in memory, and the output format can hold the result's size.
    """
    outputs.check_name(job.dest)
    outputs.check_not_inputs([("-o", job.dest)], [job.source])
    fmt = images.format_for(job.dest, settings.write.format)
    image = images.read_image(
        job.source,
        precision=settings.read.precision,
        gray=settings.read.gray,
        max_pixels=settings.read.max_pixels,
    )
    height, width = limits.output_shape(settings.chain, *image.pixels.shape[:2])
    outputs.check_size(job.dest, fmt, height, width, image.pixels.shape[2])
    # refuse with a clear message now rather than be ended by the OOM killer halfway
    limits.check_memory(settings.chain, image, share=settings.workers)
    result = settings.chain.apply_to(image)
    del image  # its pixels need not be held through the write
    if job.root is not None:
        _make_folder_inside(job.dest, job.root)
    images.write_image(
        job.dest,
        result,
        format=settings.write.format,
        depth=settings.write.depth,
        range_mode=settings.write.range_mode,
        compress_level=settings.write.compress_level,
    )


def _make_folder_inside(dest: str, root: str) -> None:
    """Create ``dest``'s folder, refusing if a symbolic link would take it out of ``root``.

    Checked before creating (so no folder is made outside) and after (the folders may
    have changed meanwhile).
    """
    root_real = os.path.realpath(root)
    if not is_inside(dest, root_real):
        raise ImageWriteError("refusing to write outside the output folder", path=dest)
    try:
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    except OSError as err:
        reason = write_error_reason(err)
        raise ImageWriteError(f"cannot create its folder: {reason}", path=dest) from None
    if not is_inside(dest, root_real):
        raise ImageWriteError("refusing to write outside the output folder", path=dest)


def process_quietly(job: Job, settings: Settings) -> JobResult:
    """Run one job and report it as a :class:`JobResult` instead of raising.

    Any exception but an interruption becomes a failed result, so one bad file (or a bug
    that only one file meets) never ends a batch.
    """
    start = time.perf_counter()
    try:
        process(job, settings)
    except ConvtoolError as err:
        return _failed(job, str(err), start, fatal=_is_fatal(err))
    except MemoryError:
        return _failed(job, "out of memory", start)
    except Exception as err:  # noqa: BLE001 - reported per file; the batch goes on
        return _failed(job, f"internal error: {type(err).__name__}: {err}", start)
    return JobResult(job, DONE, None, time.perf_counter() - start)


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

"""The types of a batch: jobs, their options, their results, the plan and its summary.

A job is one input read, filtered by a :class:`~convtool.pipeline.Chain` and written to one
output. These types are shared by planning, the worker, the pool and the Dask runner.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from convtool.errors import UsageError

if TYPE_CHECKING:  # pipeline pulls in the engine and kernels; planning needs neither
    from convtool.pipeline import Chain


DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass(frozen=True)
class ReadOptions:
    """How inputs are decoded (see :func:`convtool.images.read_image`)."""

    precision: str = "single"
    gray: bool = False
    max_pixels: int | None = None
    frames: str = "all"  # every frame or page, or "first"
    # Images read band by band need memory for their bands only: by default no pixel limit
    # (the CLI passes an explicit --max-pixels here too).
    stream_max_pixels: int | None = None


@dataclass(frozen=True)
class WriteOptions:
    """How outputs are encoded (see :func:`convtool.images.write_image`).

    The output controls (``quality``, ``subsampling``, ``progressive``, ``compression``)
    apply to the outputs whose format they concern (a batch may write several formats);
    :meth:`check` refuses one that concerns none of them. ``strip``: write no metadata.
    """

    format: str | None = None
    depth: str | None = None
    range_mode: str | None = None
    compress_level: int = 1
    quality: int | None = None
    subsampling: str | None = None
    progressive: bool = False
    compression: str | None = None
    background: str | None = None
    strip: bool = False

    def controls(self) -> dict:
        """The output controls, by the names :func:`convtool.images.write_image` takes."""
        return {
            "quality": self.quality,
            "subsampling": self.subsampling,
            "progressive": self.progressive,
            "compression": self.compression,
        }

    def controls_for(self, fmt: str) -> dict:
        """The controls that apply to a *fmt* output (the others are left at their defaults)."""
        from convtool import images

        out = {}
        for name, value in self.controls().items():
            formats = images.OUTPUT_CONTROLS[name]
            tiff_quality = name == "quality" and fmt == "tiff" and self.compression != "jpeg"
            out[name] = value if fmt in formats and not tiff_quality else None
        out["progressive"] = bool(out["progressive"])
        return out

    def check(self, destinations: Iterable[str]) -> None:
        """Refuse bad controls, and controls that apply to none of these outputs' formats."""
        from convtool import images
        from convtool.images.background import parse_colour

        if self.background is not None:
            parse_colour(self.background)
        errors = []
        formats = sorted({images.format_for(dest, self.format) for dest in destinations})
        for fmt in formats:
            try:
                images.check_output_controls(fmt, **self.controls())
            except UsageError as err:
                errors.append(err)
        if formats and len(errors) == len(formats):
            raise errors[0]


@dataclass(frozen=True)
class Job:
    """One input file (or ``-``) and the output it becomes (or ``-``).

    ``root``: the output folder the output must stay inside (checked again just before
    writing, after its folders are created); None for a single named output file.
    """

    source: str
    dest: str
    root: str | None = None


@dataclass(frozen=True)
class JobResult:
    """What happened to one job: ``done``, ``skipped`` or ``failed`` (with the reason).

    ``fatal``: the failure would recur for every other job (the disk is full), so a batch
    stops at it as with ``fail_fast``.
    """

    job: Job
    status: str
    reason: str | None = None
    seconds: float = 0.0
    fatal: bool = False
    warnings: tuple[str, ...] = ()  # what the output could not hold, and the like


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to run a job; picklable, so it crosses process pools."""

    chain: Chain
    read: ReadOptions = field(default_factory=ReadOptions)
    write: WriteOptions = field(default_factory=WriteOptions)
    workers: int = 1  # images filtered at once on this machine: each gets 1/workers of memory
    stream: bool = False  # read, filter and write band by band even when the image would fit


@dataclass
class JobPlan:
    """The jobs to run and what was left out before any work.

    ``skipped``: results with status ``skipped`` (hidden and non-image files, folders not
    descended into, outputs already there under ``skip_existing``). ``failed``: inputs that
    cannot be run at all (an unreadable folder, an extension that cannot be written without
    ``format``). ``single``: one input file to one output file (or ``-``): the CLI's
    one-file path, where :func:`process` raises instead of reporting.
    """

    jobs: list[Job]
    skipped: list[JobResult] = field(default_factory=list)
    failed: list[JobResult] = field(default_factory=list)
    single: bool = False


def is_inside(dest: str, root_real: str) -> bool:
    """Whether ``dest``'s folder, with every symbolic link resolved, is within ``root_real``."""
    parent = os.path.realpath(os.path.dirname(dest) or ".")
    return parent == root_real or parent.startswith(root_real.rstrip(os.sep) + os.sep)


@dataclass
class Summary:
    """Results counted: ``not_run`` jobs never finished (stopped early or interrupted)."""

    done: list[JobResult]
    skipped: list[JobResult]
    failed: list[JobResult]
    not_run: int = 0

    @property
    def exit_code(self) -> int:
        """1 if any file failed, else 0."""
        return 1 if self.failed else 0


def summarize(results: Iterable[JobResult], plan: JobPlan | None = None) -> Summary:
    """Sort ``results`` (and the plan's skipped and failed inputs) into a :class:`Summary`."""
    results = list(results)
    everything = results + (plan.skipped + plan.failed if plan is not None else [])
    by_status = {
        status: [r for r in everything if r.status == status] for status in (DONE, SKIPPED, FAILED)
    }
    not_run = max(0, len(plan.jobs) - len(results)) if plan is not None else 0
    return Summary(by_status[DONE], by_status[SKIPPED], by_status[FAILED], not_run)

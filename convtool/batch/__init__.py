"""Files and folders into jobs, run here, on a process pool or on Dask, one result per file."""

from __future__ import annotations

from convtool.batch.heap import keep_freed_memory
from convtool.batch.jobs import (
    DONE,
    FAILED,
    SKIPPED,
    Job,
    JobPlan,
    JobResult,
    ReadOptions,
    Settings,
    Summary,
    WriteOptions,
    is_inside,
    summarize,
)
from convtool.batch.planning import (
    plan,
    require_images,
)
from convtool.batch.run import (
    Interrupted,
    cpu_count,
    largest_first,
    run,
    signals_raise,
    sigterm_raises,
)
from convtool.batch.streaming import process_streaming, wants_stream, writes_zarr
from convtool.batch.worker import (
    process,
    process_quietly,
    with_threads,
)

__all__ = [
    "DONE",
    "SKIPPED",
    "FAILED",
    "ReadOptions",
    "WriteOptions",
    "Job",
    "JobResult",
    "Settings",
    "JobPlan",
    "is_inside",
    "Summary",
    "summarize",
    "keep_freed_memory",
    "plan",
    "require_images",
    "process",
    "process_streaming",
    "wants_stream",
    "writes_zarr",
    "process_quietly",
    "with_threads",
    "Interrupted",
    "run",
    "largest_first",
    "cpu_count",
    "sigterm_raises",
    "signals_raise",
]

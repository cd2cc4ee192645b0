"""Facts about the machine that every layer reads: one place, so they agree."""

from __future__ import annotations

import os

__all__ = ["cpu_count"]


def cpu_count() -> int:
    """CPUs this process may run on: its affinity mask where the system has one (taskset,
    cgroups, a batch scheduler's pinning), else every CPU; at least 1.

    The engine's band threads, matching, the PNG writer and batch's worker count all use it.
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1

"""What the machine allows convtool: the memory it may use, and the one refusal above it.

Every command that computes something large (``filter``, ``match``, ``compare``) estimates
its peak memory first and calls :func:`check_fits`, which raises
:class:`~convtool.errors.ResourceLimitError` with a one-line message (what needs the memory,
how much, what to try in that command's options) instead of letting the OOM killer end the
run halfway. Available memory is ``MemAvailable`` from ``/proc/meminfo`` (else
``os.sysconf``), capped by a cgroup memory limit when one is set; the environment variable
``CONVTOOL_MAX_MEMORY`` overrides it (``8G``, ``512M``, bytes; ``0`` turns the check off).
"""

from __future__ import annotations

import os
import re

from convtool.errors import ResourceLimitError, UsageError

__all__ = [
    "HEADROOM",
    "MEMORY_ENV",
    "available_memory",
    "check_fits",
    "format_bytes",
    "parse_bytes",
]

MEMORY_ENV = "CONVTOOL_MAX_MEMORY"
"""Environment variable: the memory convtool may use (``8G``, ``512M``, bytes; 0 = no check)."""

# Left for Python, the libraries and the encoder's small buffers on top of the estimate.
HEADROOM = 64 << 20

_MEMINFO = "/proc/meminfo"
_CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
    (
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",  # cgroup v1
        "/sys/fs/cgroup/memory/memory.usage_in_bytes",
    ),
)


def available_memory() -> int | None:
    """Bytes this process may still allocate, or None when not known (or not to be checked).

    ``CONVTOOL_MAX_MEMORY`` wins when set (``0``: None, no check). Otherwise the smaller of
    the system's available memory (``MemAvailable``, or free pages from ``os.sysconf``) and
    what a cgroup memory limit leaves.
    """
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text:
        value = parse_bytes(text, MEMORY_ENV)
        return value or None
    known = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    if not known:
        known = [v for v in (_sysconf_available(),) if v is not None]
    return min(known) if known else None


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_bytes(text: str, what: str = "size") -> int:
    """``"8G"``, ``"512M"``, ``"1.5GB"``, ``"4096"`` → bytes (K, M, G, T are powers of 1024)."""
    match = _SIZE.match(text)
    if match is None:
        raise UsageError(f"{what} must be a size like 8G, 512M or a number of bytes, got {text!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


def _meminfo_available() -> int | None:
    try:
        with open(_MEMINFO, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _sysconf_available() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_available() -> int | None:
    for limit_file, usage_file in _CGROUP_FILES:
        try:
            with open(limit_file, encoding="ascii") as f:
                limit = f.read().strip()
            with open(usage_file, encoding="ascii") as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 1 << 60:  # v1 writes a huge number for none
            return None
        return max(0, int(limit) - usage)
    return None


def _about(count: int) -> str:
    text = format_bytes(count)
    return text if text.startswith("more") else f"about {text}"


def format_bytes(count: float) -> str:
    """1536 → ``1.5 KB``; 3.2e9 → ``3.0 GB`` (powers of 1024, one decimal)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB", "EB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return "more than 1000 EB"


def check_fits(
    need: int,
    what: str,
    hint: str,
    *,
    path: str | None = None,
    available: int | None = None,
    share: int = 1,
) -> None:
    """Raise ResourceLimitError if ``need`` bytes (plus HEADROOM) are more than available.

    The one refusal of every command (filter, match, compare): ``what`` says what needs the
    memory ("matching this 64×64 template"), ``hint`` what to try, in the command's own
    options. ``available`` and ``share`` as for :func:`check_memory`.
    """
    if available is None:
        available = available_memory()
    if available is None:
        return
    available //= max(1, share)
    if need + HEADROOM > available:
        raise ResourceLimitError(
            f"{what} needs {_about(need)} of memory, more than the "
            f"{format_bytes(available)} available; try {hint} ({MEMORY_ENV}=0 skips this check)",
            path=path,
        )

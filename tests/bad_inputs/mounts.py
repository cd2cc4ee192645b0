"""Folders that refuse writes, for the corpus and the fault tests.

As root, permission bits do not stop writes, so a read-only or a full folder needs a file
system of its own: a small tmpfs mounted over an empty folder (and unmounted after). Not
as root, a read-only folder is ``chmod 555``, and a full disk cannot be made: the tests
that need one skip.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def mount_tmpfs(folder: Path, *options: str) -> bool:
    """Mount a tmpfs on ``folder`` with ``options`` (``size=256k``, ``ro``); False if refused."""
    folder.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(folder)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def unmount(folder: Path) -> None:
    for command in (["umount", str(folder)], ["umount", "-l", str(folder)]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run(command, capture_output=True, timeout=20).returncode == 0:
                return


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "256k") -> Iterator[bool]:
    """A tmpfs of ``size`` on ``folder`` while inside; yields False when it cannot be made."""
    mounted = IS_ROOT and mount_tmpfs(folder, f"size={size}", "mode=0755")
    try:
        yield mounted
    finally:
        if mounted:
            unmount(folder)


@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[str]:
    """Make ``folder`` (created empty) refuse new files; yields the reason writes will give."""
    if IS_ROOT:
        if not mount_tmpfs(folder, "ro", "size=64k"):
            raise RuntimeError(f"cannot mount a read-only tmpfs on {folder}")
        try:
            yield "read-only file system"
        finally:
            unmount(folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    try:
        yield "permission denied"
    finally:
        folder.chmod(0o755)


def can_make_read_only_folders(scratch: Path) -> bool:
    try:
        with read_only_folder(scratch / "probe"):
            return True
    except RuntimeError:
        return False

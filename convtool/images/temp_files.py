"""convtool's temporary files: their names, and finding and removing those left by dead writers.

A temporary file (or a zarr store's temporary folder) is named
``.<name>.convtool-<pid>-<random>.tmp`` beside its target (:func:`temp_name_for`) and held
locked (``flock``) by its writer from creation to rename (:mod:`convtool.images.atomic`).
That lock, not the pid in the name, says whether its writer is alive: pids cannot be
compared across containers (pid namespaces) or hosts sharing a folder, a lock can (on one
kernel always; on NFS where the mount supports locks). :func:`stale_temp_files` lists and
:func:`remove_stale_temp_files` removes only temporary files whose lock it can take, working
on folder descriptors so that a folder swapped for a link cannot lead it elsewhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import stat
import sys
from pathlib import Path

__all__ = [
    "FOLDER_FLAGS", "remove_stale_temp_files", "remove_stale_temp_files_in", "stale_in",
    "stale_temp_files", "temp_name_for", "temp_path_for",
]  # fmt: skip


# Keeps "<pid>" parseable and the whole name under the usual 255-byte limit for long names.
_TEMP_PATTERN = re.compile(r"^\.(.*)\.convtool-(\d+)-[0-9a-f]+\.tmp$", re.DOTALL)
_MAX_NAME_IN_TEMP = 180
FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def temp_name_for(name: str) -> str:
    """A fresh temporary file name beside *name*: ``.<name>.convtool-<pid>-<random>.tmp``."""
    return f".{name[:_MAX_NAME_IN_TEMP]}.convtool-{os.getpid()}-{os.urandom(4).hex()}.tmp"


def temp_path_for(path: Path) -> Path:
    """Return a fresh temporary path beside *path* (see :func:`temp_name_for`)."""
    return path.with_name(temp_name_for(path.name))


def _is_temp_name(name: str, target: str | None = None) -> bool:
    match = _TEMP_PATTERN.match(name)
    return match is not None and (target is None or match.group(1) == target[:_MAX_NAME_IN_TEMP])


def _take_if_stale(folder: int, name: str) -> int | None:
    """Open and lock the temporary file *name* if its writer is gone; None if it lives.

    The lock can be taken only when no process holds it, that is when nothing writes the
    file any more (a killed writer's lock goes with it). The returned descriptor keeps the
    lock, and is checked to be the file the name still points to.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=folder)
    except OSError:
        return None  # gone, a link, or not ours to read: leave it
    try:
        held = os.fstat(fd)
        if stat.S_ISREG(held.st_mode) or stat.S_ISDIR(held.st_mode):  # files, zarr folders
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a live writer
            now = os.stat(name, dir_fd=folder, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                return fd
    except OSError:
        pass
    os.close(fd)
    return None


def stale_in(folder: int, target: str | None = None) -> list[str]:
    """Names of the stale temporary files in the open *folder* (of *target* only, if given)."""
    stale = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if not _is_temp_name(entry.name, target):
                continue
            fd = _take_if_stale(folder, entry.name)
            if fd is not None:
                os.close(fd)
                stale.append(entry.name)
    return sorted(stale)


def remove_stale_temp_files_in(folder: int, target: str | None = None) -> list[str]:
    """Remove the stale temporary files in the open *folder*; return the names removed."""
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        names = [entry.name for entry in entries if _is_temp_name(entry.name, target)]
    for name in sorted(names):
        fd = _take_if_stale(folder, name)
        if fd is None:
            continue
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                if sys.version_info < (3, 11):  # rmtree takes dir_fd from 3.11 (as zarr 3 needs)
                    continue
                shutil.rmtree(name, dir_fd=folder)  # a zarr store's temporary folder
            else:
                os.unlink(name, dir_fd=folder)  # while holding its lock: no writer can start
            removed.append(name)
        except OSError:
            pass  # another cleaner got there first, or not ours to remove
        finally:
            os.close(fd)
    return removed


def _open_folder(folder: str | os.PathLike[str]) -> int | None:
    try:
        return os.open(folder, FOLDER_FLAGS)
    except OSError:
        return None


def stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """List the convtool temporary files in *folder* that no live writer holds.

    Only names of the form ``.<name>.convtool-<pid>-<random>.tmp`` are considered, and a
    file is stale only when its lock can be taken: a writer holds it from creating the
    file to renaming it, wherever that writer runs (another container, another host on a
    file system with shared locks). The pid in the name is not trusted.
    """
    fd = _open_folder(folder)
    if fd is None:
        return []
    try:
        return [Path(folder) / name for name in stale_in(fd)]
    finally:
        os.close(fd)


def remove_stale_temp_files(
    folder: str | os.PathLike[str], *, recursive: bool = False
) -> list[Path]:
    """Remove the files :func:`stale_temp_files` finds in *folder*; return those removed.

    ``recursive``: also in every folder below it (what a batch run does to its output
    tree, before and after). The walk never follows a symbolic link and works on folder
    descriptors (``os.fwalk``), so a folder swapped for a link meanwhile cannot lead it out
    of *folder*.
    """
    if recursive:
        removed: list[Path] = []
        with contextlib.suppress(OSError):
            for path, subfolders, _files, dir_fd in os.fwalk(folder, follow_symlinks=False):
                subfolders.sort()
                removed += [Path(path) / name for name in remove_stale_temp_files_in(dir_fd)]
        return removed
    fd = _open_folder(folder)
    if fd is None:
        return []
    try:
        return [Path(folder) / name for name in remove_stale_temp_files_in(fd)]
    finally:
        os.close(fd)

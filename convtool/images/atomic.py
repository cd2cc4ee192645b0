"""Safe file output: atomic replacement, same-file checks and stale temporary files.

A result is first written to a temporary file in the target's own folder, named
``.<name>.convtool-<pid>-<random>.tmp``, flushed, fsync'ed and then moved over the target
with :func:`os.replace`. Readers therefore see either the old file or the complete new one,
never half an image; a crash leaves only a hidden temporary file, which
:func:`remove_stale_temp_files` deletes once the process that wrote it is gone. Outputs that
are folders (zarr stores) are built under such a temporary name too and renamed when
complete (:func:`atomic_directory`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from convtool.errors import ImageWriteError

# Keeps "<pid>" parseable and the whole name under the usual 255-byte limit for long names.
_TEMP_PATTERN = re.compile(r"^\..*\.convtool-(\d+)-[0-9a-f]+\.tmp$", re.DOTALL)
_MAX_NAME_IN_TEMP = 180

_ERRNO_REASONS = {
    errno.ENOENT: "the folder does not exist",
    errno.ENOTDIR: "a parent of the path is not a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EISDIR: "is a directory",
    errno.ENAMETOOLONG: "file name too long",
}


def write_error_reason(err: OSError) -> str:
    """Return a one-line, user-facing reason for an OSError met while writing."""
    reason = _ERRNO_REASONS.get(err.errno)
    return reason if reason else (err.strerror or str(err)).rstrip(".").lower()


def temp_path_for(path: Path) -> Path:
    """Return a fresh temporary path beside *path*: ``.<name>.convtool-<pid>-<random>.tmp``."""
    name = path.name[:_MAX_NAME_IN_TEMP]
    return path.with_name(f".{name}.convtool-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Create or replace *path* with what ``write(fileobj)`` writes, all at once.

    The bytes go to a temporary file in the same folder (so the final rename stays on one
    file system), which is fsync'ed and then renamed over *path*. An existing target keeps
    its permission bits. On any error the temporary file is removed and
    :class:`ImageWriteError` is raised with a one-line reason (missing folder, permission
    denied, disk full, is a directory, ...); errors raised by *write* itself that are not
    OSErrors propagate unchanged after the clean-up.
    """
    target = Path(path)
    if target.is_dir():
        raise ImageWriteError("cannot write: is a directory", path=str(path))
    temp = temp_path_for(target)
    try:
        # "x" (O_EXCL): never write through a file or symlink that someone else put there.
        fileobj = open(temp, "xb")  # noqa: SIM115 - closed in the block below
    except OSError as err:
        raise ImageWriteError(f"cannot write: {write_error_reason(err)}", path=str(path)) from None
    except BaseException:  # a signal just as open() returned: the file is ours, and new
        _remove_quietly(temp)
        raise
    try:
        with fileobj:
            write(fileobj)
            fileobj.flush()
            os.fsync(fileobj.fileno())
        _copy_mode(target, temp)
        os.replace(temp, target)
    except BaseException as err:
        _remove_quietly(temp)
        if isinstance(err, OSError):
            message = f"cannot write: {write_error_reason(err)}"
            raise ImageWriteError(message, path=str(path)) from None
        raise


@contextlib.contextmanager
def atomic_directory(
    path: str | os.PathLike[str], replaceable: Callable[[Path], bool]
) -> Iterator[Path]:
    """Build a folder output (a zarr store) under a temporary name; rename it when complete.

    Yields the temporary folder's path (created empty, beside *path*). When the block ends
    without error it is renamed to *path*; an existing *path* is replaced only if
    ``replaceable(path)`` (a zarr store, say), so a folder of someone's files is never
    deleted. The old store is moved to a temporary name first and removed after, so *path*
    is at every moment either the old complete store, absent, or the new complete one. On
    any error (or interruption) the temporary folder is removed; a killed process leaves a
    hidden one that :func:`remove_stale_temp_files` deletes later.
    """
    target = Path(path)
    if target.exists() and not (target.is_dir() and replaceable(target)):
        what = "a folder that is not a zarr store" if target.is_dir() else "a file"
        raise ImageWriteError(f"cannot write: it exists and is {what}", path=str(path))
    temp = temp_path_for(target)
    try:
        os.mkdir(temp)
    except OSError as err:
        raise ImageWriteError(f"cannot write: {write_error_reason(err)}", path=str(path)) from None
    except BaseException:  # a signal just as mkdir() returned: the folder is ours
        _remove_tree(temp)
        raise
    try:
        yield temp
        old = temp_path_for(target) if target.exists() else None
        if old is not None:
            os.replace(target, old)
        os.replace(temp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as err:
        _remove_tree(temp)
        if isinstance(err, OSError):
            message = f"cannot write: {write_error_reason(err)}"
            raise ImageWriteError(message, path=str(path)) from None
        raise


def _remove_tree(path: Path, patience: float = 2.0) -> None:
    """Remove a folder that a writer's own threads may still be adding to.

    An interruption stops this thread, not the I/O threads of a library writing into the
    folder (zarr's event loop finishes the chunk it was writing): remove, and again while
    files keep appearing, for up to ``patience`` seconds.
    """
    deadline = time.monotonic() + patience
    while True:
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path) or time.monotonic() > deadline:
            return
        time.sleep(0.02)


def _copy_mode(target: Path, temp: Path) -> None:
    """Give *temp* the permission bits of an existing *target* (a replace should not chmod)."""
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return
    os.chmod(temp, mode)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Tell whether *a* and *b* name the same existing file (so output would overwrite input).

    ``"-"`` (stdin/stdout) is never the same file as anything; a path that does not exist
    yet cannot be an input, so it is not the same file either.
    """
    if str(a) == "-" or str(b) == "-":
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _pid_is_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, but owned by another user
    except (OverflowError, OSError):
        return False  # not a possible pid
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A process that has exited but was not reaped (Linux): it writes nothing any more.

    Where nothing reaps orphans (an init that does not wait, as in some containers), a
    killed writer stays a zombie indefinitely; its temporary file is stale all the same.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # the state follows the command name, which is in parentheses and may hold spaces
            return stat.read().rpartition(b")")[2].split()[:1] == [b"Z"]
    except OSError:
        return False  # no /proc (not Linux) or the process just went: keep the safe side


def stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """List convtool temporary files (and folders) in *folder* whose writer no longer runs.

    Only names of the form ``.<name>.convtool-<pid>-<random>.tmp`` are considered, and a
    file is stale only when ``os.kill(pid, 0)`` reports no such process; files of live
    processes (including other users' and this one's) are never listed. A recycled pid
    keeps a stale file around, which is the safe side.
    """
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    stale = []
    for entry in entries:
        match = _TEMP_PATTERN.match(entry.name)
        alive = match is None or _pid_is_running(int(match.group(1)))
        if not alive and (
            entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False)
        ):
            stale.append(Path(entry.path))
    return sorted(stale)


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the files :func:`stale_temp_files` finds in *folder*; return those removed."""
    removed = []
    for path in stale_temp_files(folder):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue  # another cleaner got there first
        except OSError:
            continue  # not ours to force; leave it
        removed.append(path)
    return removed

"""Safe file output: atomic replacement through a folder descriptor.

A result is first written to a temporary file in the target's own folder, named
``.<name>.convtool-<pid>-<random>.tmp``, flushed, fsync'ed and then renamed over the
target. Readers therefore see either the old file or the complete new one, never half an
image.

Every step happens relative to one open descriptor of the target's folder, never through a
path that could be resolved twice: the folder is opened once, the temporary file is created
in it with ``O_EXCL | O_NOFOLLOW`` and renamed within it. With ``inside=`` (a batch's output
folder), the folders between it and the target are created and opened one by one with
``O_NOFOLLOW``, so a symbolic link swapped in for one of them at any moment cannot redirect
a write out of the output folder: the write fails instead.

While it is written, a temporary file is held locked (``flock``): that lock says its writer
is alive, and :mod:`convtool.images.temp_files` (the names, and the stale files of dead
writers; re-exported here) removes only temporary files whose lock it can take. A writer
whose file disappears anyway reports that, not a misleading missing folder.

Outputs that are folders (zarr stores) are built under such a temporary name too, held
locked the same way, and renamed when complete (:func:`atomic_directory`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from convtool.errors import ImageWriteError
from convtool.images.temp_files import (
    FOLDER_FLAGS,
    remove_stale_temp_files,
    remove_stale_temp_files_in,
    stale_temp_files,
    temp_name_for,
    temp_path_for,
)

__all__ = [
    "FOLDER_REMOVED", "OUTSIDE", "TEMP_REMOVED", "atomic_directory", "atomic_write",
    "remove_stale_temp_files", "same_file", "stale_temp_files", "temp_name_for",
    "temp_path_for", "write_error_reason",
]  # fmt: skip

# Attempts at a fresh temporary name when a cleaner removed the previous one just after it
# was created (before its lock was taken).
_CREATE_ATTEMPTS = 5

_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

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

OUTSIDE = "refusing to write outside the output folder"
FOLDER_REMOVED = "cannot write: its folder was removed (or replaced) while it was written"
TEMP_REMOVED = (
    "cannot write: its temporary file was removed by another process while it was written "
    "(another program cleaning this folder?); run again"
)


def write_error_reason(err: OSError) -> str:
    """Return a one-line, user-facing reason for an OSError met while writing."""
    reason = None if err.errno is None else _ERRNO_REASONS.get(err.errno)
    return reason if reason else (err.strerror or str(err)).rstrip(".").lower()


# ------------------------------------------------------------------------------ writing


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[BinaryIO], object],
    *,
    inside: str | os.PathLike[str] | None = None,
) -> None:
    """Create or replace *path* with what ``write(fileobj)`` writes, all at once.

    The bytes go to a locked temporary file in the same folder (so the final rename stays
    on one file system), which is fsync'ed and then renamed over *path*, all relative to
    one descriptor of the folder. An existing target keeps its permission bits.

    ``inside``: a folder *path* must stay in (a batch's output folder). It is created if
    missing; the folders between it and *path* are created as needed and never followed
    through a symbolic link (a link there fails the write). Without it, *path*'s folder
    is used as named, and stale temporary files of the same target left there by dead
    runs are removed first.

    On any error the temporary file is removed and :class:`ImageWriteError` is raised with
    a one-line reason (missing folder, permission denied, disk full, is a directory, ...);
    errors raised by *write* itself that are not OSErrors propagate unchanged after the
    clean-up.
    """
    where = str(path)
    with _target_folder(where, inside) as (folder, name):
        try:
            info: os.stat_result | None = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        except OSError as err:
            raise _write_error(err, where) from None
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise ImageWriteError("cannot write: is a directory", path=where)
        if inside is None:
            remove_stale_temp_files_in(folder, target=name)
        made: list[tuple[int, str]] = []  # (fd or -1, name): what the clean-up removes
        try:
            # in the try, with the name listed before the file exists: a signal just as it
            # is created (the moment another process sees it) must still remove it
            fd, temp = _create_locked_temp(folder, name, where, made)
            with os.fdopen(fd, "wb", closefd=False) as fileobj:
                fileobj.raw.name = temp  # type: ignore[attr-defined]  # a name, not the fd number
                write(fileobj)
                fileobj.flush()
                os.fsync(fd)
            if info is not None and stat.S_ISREG(info.st_mode):
                os.fchmod(fd, stat.S_IMODE(info.st_mode))  # a replace should not chmod
            _rename_while_locked(fd, folder, temp, name, where)
        except BaseException as err:
            for _, made_temp in made:
                with contextlib.suppress(OSError):
                    os.unlink(made_temp, dir_fd=folder)
            if isinstance(err, OSError):
                raise _write_error(err, where) from None
            raise
        finally:
            for made_fd, _ in made:
                if made_fd >= 0:
                    os.close(made_fd)  # releases the lock


def _write_error(err: OSError, where: str) -> ImageWriteError:
    return ImageWriteError(f"cannot write: {write_error_reason(err)}", path=where)


def _create_locked_temp(
    folder: int, name: str, where: str, made: list[tuple[int, str]]
) -> tuple[int, str]:
    """Create a temporary file for *name* in *folder* and hold its lock; (fd, its name).

    "x" (O_EXCL) and O_NOFOLLOW: never write through a file or symbolic link that someone
    else put there. Between the creation and the lock a cleaner may find the file unlocked
    and remove it; a file found unlinked once locked is given up for a fresh name. Each
    name goes into *made* before its file is created, for the caller's clean-up.
    """
    for _ in range(_CREATE_ATTEMPTS):
        temp = temp_name_for(name)
        made.append((-1, temp))
        try:
            fd = os.open(temp, _TEMP_FLAGS, 0o666, dir_fd=folder)
        except FileNotFoundError:
            made.pop()  # (O_EXCL: a name taken by someone else would be theirs, not ours)
            if os.fstat(folder).st_nlink == 0:  # the folder went after it was opened
                raise ImageWriteError(FOLDER_REMOVED, path=where) from None
            raise ImageWriteError("cannot write: the folder does not exist", path=where) from None
        except OSError as err:
            made.pop()
            raise _write_error(err, where) from None
        made[-1] = (fd, temp)
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while a cleaner looks at it
        if os.fstat(fd).st_nlink > 0:
            return fd, temp
        made.pop()
        os.close(fd)
    raise ImageWriteError(TEMP_REMOVED, path=where)


def _rename_while_locked(fd: int, folder: int, temp: str, name: str, where: str) -> None:
    """Move the finished temporary file over *name*, telling a removed temp from the rest."""
    _check_still_there(fd, folder, where)
    try:
        os.rename(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except FileNotFoundError:
        _check_still_there(fd, folder, where)
        raise


def _check_still_there(fd: int, folder: int, where: str) -> None:
    """Say honestly why a rename cannot work: the folder, or the temporary file, is gone."""
    if os.fstat(folder).st_nlink == 0:
        raise ImageWriteError(FOLDER_REMOVED, path=where)
    if os.fstat(fd).st_nlink == 0:
        raise ImageWriteError(TEMP_REMOVED, path=where)


@contextlib.contextmanager
def atomic_directory(
    path: str | os.PathLike[str],
    replaceable: Callable[[Path], bool],
    *,
    inside: str | os.PathLike[str] | None = None,
) -> Iterator[Path]:
    """Build a folder output (a zarr store) under a temporary name; rename it when complete.

    Yields the temporary folder's path (created empty beside *path* and held locked, as a
    temporary file is). When the block ends without error it is renamed to *path*; an
    existing *path* is replaced only if ``replaceable(path)`` (a zarr store, say), so a
    folder of someone's files is never deleted. The old store is renamed to a temporary
    name first and removed after, so *path* is at every moment the old complete store,
    absent, or the new complete one. On any error or interruption the temporary folder is
    removed; a killed process leaves a hidden one that :func:`remove_stale_temp_files`
    removes once its lock is free. ``inside``: as for :func:`atomic_write`.
    """
    where = str(path)
    with _target_folder(where, inside) as (folder, name):
        target = Path(os.path.dirname(where) or ".") / name
        if target.exists() and not (target.is_dir() and replaceable(target)):
            what = "a folder that is not a zarr store" if target.is_dir() else "a file"
            raise ImageWriteError(f"cannot write: it exists and is {what}", path=where)
        remove_stale_temp_files_in(folder, target=name)
        made: list[tuple[int, str]] = []
        try:
            temp = _create_locked_folder(folder, name, where, made)
            yield target.with_name(temp)
            old = temp_name_for(name) if target.exists() else None
            if old is not None:
                os.rename(name, old, src_dir_fd=folder, dst_dir_fd=folder)
            os.rename(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
            if old is not None:
                shutil.rmtree(target.with_name(old), ignore_errors=True)
        except BaseException as err:
            for _, made_temp in made:
                _remove_tree(target.with_name(made_temp))
            if isinstance(err, OSError):
                raise _write_error(err, where) from None
            raise
        finally:
            for made_fd, _ in made:
                if made_fd >= 0:
                    os.close(made_fd)


def _create_locked_folder(folder: int, name: str, where: str, made: list[tuple[int, str]]) -> str:
    """Create a temporary folder for *name* in *folder* and hold its lock; its name (listed
    in *made* before it exists, as :func:`_create_locked_temp` lists its files)."""
    temp = temp_name_for(name)
    made.append((-1, temp))
    try:
        os.mkdir(temp, 0o777, dir_fd=folder)
    except OSError as err:
        made.pop()
        raise _write_error(err, where) from None
    fd = os.open(temp, FOLDER_FLAGS | os.O_NOFOLLOW, dir_fd=folder)
    made[-1] = (fd, temp)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return temp


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


@contextlib.contextmanager
def _target_folder(where: str, inside: str | os.PathLike[str] | None) -> Iterator[tuple[int, str]]:
    """Yield (descriptor of the target's folder, the target's name in it); closed after."""
    parent, name = os.path.split(where)
    if not name:
        raise ImageWriteError("cannot write: is a directory", path=where)
    if inside is None:
        try:
            folder = os.open(parent or ".", FOLDER_FLAGS)
        except OSError as err:
            raise _write_error(err, where) from None
    else:
        folder = _open_inside(str(inside), parent, where)
    try:
        yield folder, name
    finally:
        os.close(folder)


def _open_inside(root: str, parent: str, where: str) -> int:
    """Open *parent* (a folder at or below *root*) one component at a time, with no link.

    *root* is opened as named (made again if it was removed meanwhile); each folder below
    it is created if missing and opened relative to its parent's descriptor with
    O_NOFOLLOW, so no swap of a folder for a symbolic link can lead the write elsewhere.
    """
    parts = _components_below(root, parent, where)
    try:
        folder = os.open(root, FOLDER_FLAGS)
    except FileNotFoundError:
        try:
            os.makedirs(root, exist_ok=True)
            folder = os.open(root, FOLDER_FLAGS)
        except OSError as err:
            raise _folder_error(err, where) from None
    except OSError as err:
        raise _folder_error(err, where) from None
    try:
        for part in parts:
            below = _make_and_open(part, folder, where)
            os.close(folder)
            folder = below
    except BaseException:
        os.close(folder)
        raise
    return folder


def _components_below(root: str, parent: str, where: str) -> list[str]:
    relative = os.path.relpath(os.path.abspath(parent or "."), os.path.abspath(root))
    parts = [] if relative == "." else relative.split(os.sep)
    if any(part in ("", ".", "..") for part in parts):
        raise ImageWriteError(OUTSIDE, path=where)
    return parts


def _make_and_open(part: str, folder: int, where: str) -> int:
    """Create the folder *part* in *folder* if missing, and open it, never through a link."""
    for _ in range(_CREATE_ATTEMPTS):
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o777, dir_fd=folder)
        try:
            return _open_no_link(part, folder, where)
        except FileNotFoundError:
            continue  # removed between the two calls (a folder deleted mid-batch): again
    raise ImageWriteError("cannot create its folder: it keeps disappearing", path=where)


def _open_no_link(part: str, folder: int, where: str) -> int:
    try:
        return os.open(part, FOLDER_FLAGS | os.O_NOFOLLOW, dir_fd=folder)
    except FileNotFoundError:
        raise
    except OSError as err:
        # A symbolic link fails with ELOOP, or ENOTDIR (Linux, with O_DIRECTORY), as does a
        # file; only a file that is still there now was not a link.
        if err.errno not in (errno.ELOOP, errno.ENOTDIR) or _is_file(part, folder):
            raise _folder_error(err, where) from None
        message = f"{OUTSIDE}: its folder {part!r} is a symbolic link"
        raise ImageWriteError(message, path=where) from None


def _is_file(name: str, folder: int) -> bool:
    try:
        mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
    except OSError:
        return False
    return not (stat.S_ISLNK(mode) or stat.S_ISDIR(mode))


def _folder_error(err: OSError, where: str) -> ImageWriteError:
    return ImageWriteError(f"cannot create its folder: {write_error_reason(err)}", path=where)


# --------------------------------------------------------------------------- same file


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

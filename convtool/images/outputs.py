"""Checks on output paths, made once for every command that writes, before any work.

- :func:`check_not_inputs`: no output is an input file (or a kernel file, or another
  output). Files are compared by identity, ``(st_dev, st_ino)``, so ``./a.png``,
  ``sub/../a.png``, a symbolic link and a hard link to ``a.png`` are all ``a.png``.
- :func:`name_problem` / :func:`check_name`: every part of the output's path fits the file
  system (``NAME_MAX`` bytes a name, 255 on most; ``PATH_MAX`` in all), so a long name is
  refused before filtering rather than by the final write.
- :func:`size_problem` / :func:`check_size`: the format can hold the planned image (GIF and
  JPEG store sides in 16 bits, WebP in 14, BMP its size in 32), checked from the shape the
  result will have, before it is computed; the encoder's own message never shows.

All of them raise :class:`~convtool.errors.UsageError` (exit 2) naming the option; the
``*_problem`` variants return the reason instead, for a batch to fail one file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from convtool.errors import UsageError, excerpt

__all__ = [
    "FORMAT_MAX_SIDE",
    "check_name",
    "check_not_inputs",
    "check_size",
    "file_id",
    "name_problem",
    "size_problem",
]

FORMAT_MAX_SIDE = {
    "gif": 65535,  # 16-bit logical screen width and height
    "jpeg": 65500,  # libjpeg's JPEG_MAX_DIMENSION
    "webp": 16383,  # libwebp's WEBP_MAX_DIMENSION (14 bits)
    "png": 2**31 - 1,  # the PNG specification's limit for IHDR
    "bmp": 2**31 - 1,  # signed 32-bit width and height
}
"""Largest width or height each output format can store (formats not listed: no limit)."""

# A BMP file records its own size in 32 bits: rows of 4-byte-aligned pixels plus a header.
_BMP_MAX_BYTES = 2**32 - 1 - 1024
_DEFAULT_NAME_MAX = 255
_DEFAULT_PATH_MAX = 4096


def file_id(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of an existing file (links followed), else None (``-`` too)."""
    if str(path) == "-":
        return None
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def check_not_inputs(
    outputs: Iterable[tuple[str, str]],
    inputs: Iterable[str],
    *,
    kernel_files: Iterable[str] = (),
) -> None:
    """Refuse outputs that would overwrite a file the command reads, or each other.

    ``outputs``: ``(option, path)`` pairs such as ``("-o", "out.png")``, ``("--overlay",
    "hits.png")``; ``-`` (stdout) is never a file. ``inputs`` and ``kernel_files``: every
    file the command reads; ``-`` and missing files are skipped. Two outputs clash when
    they are the same existing file or, not existing yet, the same resolved path. Raises
    one :class:`UsageError` naming the file and the option (several clashes: the first five).
    """
    sources: dict[tuple[int, int], tuple[str, str]] = {}
    for what, paths in (("input", inputs), ("kernel", kernel_files)):
        for path in paths:
            identity = file_id(path)
            if identity is not None:
                sources.setdefault(identity, (what, str(path)))
    overwritten: list[tuple[str, str, tuple[str, str]]] = []  # (option, output, what it is)
    seen: dict[object, tuple[str, str]] = {}
    for option, path in outputs:
        path = str(path)
        if path == "-":
            continue
        found = file_id(path)
        if found is not None and found in sources:
            overwritten.append((option, path, sources[found]))
        key: object = found if found is not None else os.path.normcase(_resolved(path))
        if key in seen:
            first_option, first = seen[key]
            raise UsageError(
                f"{option} and {first_option} name the same file ({first}); give each output "
                "its own name",
                path=path,
            )
        seen.setdefault(key, (option, path))
    if len(overwritten) == 1 and len(seen) == 1:
        option, path, (what, source) = overwritten[0]
        same = "" if os.path.normpath(source) == os.path.normpath(path) else f" {source}"
        raise UsageError(
            f"the output is the {what} file{same}; choose another {option} so the {what} is "
            "not overwritten",
            path=path,
        )
    if overwritten:
        names = [f"{path} (the same file as {source})" for _, path, (_, source) in overwritten]
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        options = " or ".join(sorted({option for option, _, _ in overwritten}))
        raise UsageError(
            f"outputs would overwrite inputs: {'; '.join(names[:5])}{more}; choose another "
            f"{options}"
        )


def _resolved(path: str) -> str:
    """``path`` with its symbolic links resolved, as far as they can be right now.

    realpath itself raises when a folder on the way is swapped while it looks (a link read
    just as it is replaced): then the path as written, made absolute, stands for it.
    """
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.abspath(path)


def name_problem(path: str | os.PathLike[str]) -> str | None:
    """Why the file system would refuse ``path`` as a name (too long), or None."""
    text = os.fspath(path)
    if text == "-":
        return None
    encoded = os.fsencode(text)
    folder = _existing_folder(text)
    name_max = _pathconf(folder, "PC_NAME_MAX", _DEFAULT_NAME_MAX)
    for part in encoded.split(b"/"):
        if len(part) > name_max:
            shown = excerpt(os.fsdecode(part))
            return (
                f"the name {shown} is {len(part)} bytes, more than the {name_max} the file "
                "system allows"
            )
    path_max = _pathconf(folder, "PC_PATH_MAX", _DEFAULT_PATH_MAX)
    if len(encoded) >= path_max:
        return f"the path is {len(encoded)} bytes, more than the {path_max - 1} the system allows"
    return None


def check_name(path: str | os.PathLike[str], option: str = "-o") -> None:
    """Raise :class:`UsageError` if ``path`` cannot be a file name here (see :func:`name_problem`)."""
    problem = name_problem(path)
    if problem:
        raise UsageError(f"{problem}; choose a shorter {option}", path=_short(os.fspath(path)))


def size_problem(fmt: str, height: int, width: int, channels: int = 3) -> str | None:
    """Why format ``fmt`` (png, jpeg, gif, ...) cannot hold a ``width`` × ``height`` image."""
    largest = FORMAT_MAX_SIDE.get(fmt)
    name = fmt.upper()
    if largest is not None and max(height, width) > largest:
        return (
            f"the result would be {width}×{height} pixels, but {name} holds at most "
            f"{largest:,} a side; write .png, .tif or .npy instead"
        )
    if fmt == "bmp" and height * (-(-width * min(channels, 4) // 4) * 4) > _BMP_MAX_BYTES:
        return (
            f"the result would be {width}×{height} pixels, more than a BMP file can hold "
            "(4 GB); write .png, .tif or .npy instead"
        )
    return None


def check_size(
    path: str, fmt: str, height: int, width: int, channels: int = 3, option: str = "-o"
) -> None:
    """Raise :class:`UsageError` (naming ``option``) if ``fmt`` cannot hold the planned image."""
    problem = size_problem(fmt, height, width, channels)
    if problem:
        raise UsageError(problem, path=_short(path) if path != "-" else option)


def _short(path: str) -> str:
    """A path for a message: a name over 255 bytes is shown by its ends only."""
    return path if len(path) <= 120 else path[:60] + "…" + path[-40:]


def _existing_folder(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    while folder and not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder or "."


def _pathconf(folder: str, name: str, default: int) -> int:
    try:
        value = os.pathconf(folder, name)
    except (OSError, ValueError, AttributeError):
        return default
    return value if value and value > 0 else default

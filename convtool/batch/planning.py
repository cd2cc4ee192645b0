"""Turning input files and folders into jobs: output names, what is skipped, safety checks.

The rules are :func:`convtool.batch.plan`'s. Paths are built lexically: each output is the
output folder joined with the input's path relative to its input folder, which never
contains ``..``; then every output's folder, with symbolic links resolved, must lie inside
the output folder, no output may be an input, and no two inputs may share an output.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from convtool.batch.jobs import FAILED, SKIPPED, Job, JobPlan, JobResult, is_inside
from convtool.errors import ImageReadError, UsageError


def plan(
    inputs: Iterable[str],
    output: str,
    *,
    recursive: bool = False,
    suffix: str = "",
    format: str | None = None,  # noqa: A002 - the name users know from the CLI
    skip_existing: bool = False,
    kernel_files: Iterable[str] = (),
) -> JobPlan:
    """Expand input files and folders into jobs writing under ``output``.

    One input file with ``output`` a file name (not an existing folder, no trailing ``/``)
    or ``-`` is a single job. Otherwise ``output`` names a folder: each file keeps its path
    relative to its input folder (a file named as an input goes to the top), with
    ``suffix`` before the extension and ``format`` choosing the extension. Inside folders,
    hidden files and folders, files without an image extension, symbolic links to folders
    and (unless ``recursive``) subfolders are skipped; named input files are skipped only
    for their extension. The output folder is never read as input. Raises
    :class:`UsageError` before any work when two inputs would map to one output, an output
    would overwrite an input (or one of the ``kernel_files`` the run reads) or
    land outside the output folder, or ``output`` is unusable (a name too long for the file
    system). In a folder, an output whose name would be too long fails that file only.
    """
    inputs = [str(i) for i in inputs]
    kernel_files = [str(p) for p in kernel_files]
    if not inputs:
        raise UsageError("no input given; name image files or folders (or '-' for stdin)")
    if not all(inputs):
        raise UsageError("an input is an empty name (''); name an image file, a folder or '-'")
    if not output:
        raise UsageError("no output given; add -o FILE, -o FOLDER or -o -")
    if suffix and any(sep in suffix for sep in _separators()):
        raise UsageError(f"--suffix must not contain a path separator, got {suffix!r}")
    extension = _format_extension(format)
    if _is_single(inputs, output):
        _check_output_file(output, format)
        if suffix:
            raise UsageError(
                "--suffix names files in an output folder; with one output file, name it in -o"
            )
        from convtool.images import outputs

        job = Job(inputs[0], output)
        outputs.check_name(output)
        outputs.check_not_inputs([("-o", output)], inputs, kernel_files=kernel_files)
        if skip_existing and output != "-" and _is_complete(output):
            return JobPlan([], [JobResult(job, SKIPPED, "output exists")], single=True)
        return JobPlan([job], single=True)
    from convtool.images import outputs

    _check_output_folder(inputs, output)
    found, result = _find_inputs(inputs, os.path.realpath(output), recursive)
    candidates = []
    for source, relative in found:
        name = _output_name(os.path.basename(relative), suffix, extension)
        if name is None:
            ext = os.path.splitext(source)[1]
            reason = f"cannot write {ext!r} files; add --format to choose an output format"
            result.failed.append(JobResult(Job(source, ""), FAILED, reason))
            continue
        dest = os.path.join(output, os.path.dirname(relative), name)
        problem = outputs.name_problem(dest)
        if problem:
            reason = f"cannot name its output: {problem}; use a shorter --suffix or -o"
            result.failed.append(JobResult(Job(source, dest), FAILED, reason))
            continue
        candidates.append(Job(source, dest, output))
    jobs = _check_mapping(candidates, output, format, kernel_files)
    for job in jobs:
        if skip_existing and _is_complete(job.dest):
            result.skipped.append(JobResult(job, SKIPPED, "output exists"))
        else:
            result.jobs.append(job)
    return result


def require_images(plan: JobPlan, inputs: Iterable[str]) -> None:
    """Raise :class:`ImageReadError` when a batch's inputs held no image file at all.

    An empty folder (or one of text files only) is most likely the wrong folder, so it is
    an error (exit 1) rather than ``0 done``. Outputs skipped because they exist
    (``skip_existing``) and inputs that failed count as found: that run did its work.
    """
    if plan.single or plan.jobs or plan.failed:
        return
    if any(result.reason == "output exists" for result in plan.skipped):
        return
    from collections import Counter

    from convtool.images import IMAGE_EXTENSIONS

    where = ", ".join(str(i) for i in inputs)
    reasons = Counter(result.reason for result in plan.skipped)
    left_out = ", ".join(f"{n} {why}" for why, n in reasons.most_common())
    extensions = " ".join(sorted(IMAGE_EXTENSIONS))
    raise ImageReadError(
        f"no images found in {where}"
        + (f" (skipped: {left_out})" if left_out else "")
        + f"; image files are named {extensions}"
    )


def _separators() -> tuple[str, ...]:
    return tuple(s for s in (os.sep, os.altsep) if s)


def _format_extension(format: str | None) -> str | None:  # noqa: A002
    """The output extension for ``--format`` in the user's spelling (jpg → .jpg, jpeg → .jpeg)."""
    if format is None:
        return None
    from convtool import images

    images.format_for("-", format)  # UsageError for an unknown format
    return "." + format.lower().lstrip(".")


def _is_single(inputs: list[str], output: str) -> bool:
    """One input file to one output file: ``-o -``, or a name that is not a folder.

    A name with an image extension (``x.png``) is always a file, even where a folder of
    that name exists; a trailing separator (``x.png/``) makes any name a folder.
    """
    if len(inputs) != 1 or (inputs[0] != "-" and _is_folder(inputs[0])):
        return False
    if output == "-" or names_a_file(output):
        return True
    return not (_is_folder(output) or output.endswith(_separators()))


def _is_folder(path: str) -> bool:
    """A folder of inputs or outputs; a zarr store is a folder too, but one image."""
    if not os.path.isdir(path):
        return False  # (a file: the tiled-store module is not even imported)
    from convtool.images import tiles

    return not tiles.is_zarr_store(path)


def names_a_file(output: str) -> bool:
    """Whether ``-o output`` names an image file: an image extension, no trailing separator."""
    from convtool import images

    return not output.endswith(_separators()) and images.is_image_path(output)


def _check_output_file(output: str, format: str | None) -> None:  # noqa: A002
    """Refuse a one-file output that is a folder, or whose extension ``format`` contradicts."""
    from convtool import images

    if output == "-":
        return
    if _is_folder(output):
        raise UsageError(
            "-o names a folder, but a name with an image extension is taken as an output "
            f"file; rename or remove the folder, or write -o {output}{os.sep} to put the "
            "output inside it",
            path=output,
        )
    images.check_format_agrees(output, format)


def _check_output_folder(inputs: list[str], output: str) -> None:
    if "-" in inputs:
        raise UsageError("'-' (stdin) must be the only input, with -o naming a file or '-'")
    if output == "-":
        raise UsageError("several inputs or a folder need -o to name an output folder, not '-'")
    if names_a_file(output):
        what = "several inputs need" if len(inputs) > 1 else "a folder input needs"
        raise UsageError(
            f"-o {output} names a file (it has an image extension), but {what} an "
            f"output folder; name a folder (-o out{os.sep}), or write -o {output}{os.sep} "
            "to use this name as one"
        )
    if os.path.lexists(output) and not os.path.isdir(output):
        raise UsageError(
            "-o names a file, but several inputs or a folder need an output folder", path=output
        )
    out_real = os.path.realpath(output)
    for source in inputs:
        if os.path.isdir(source) and os.path.realpath(source) == out_real:
            raise UsageError(
                "the output folder is the input folder; choose another -o (a folder inside "
                "the input folder is fine)",
                path=source,
            )


def _find_inputs(inputs: list[str], out_real: str, recursive: bool) -> tuple[list, JobPlan]:
    """(source, path relative to its input folder) for each input file, in a stable order."""
    found: list[tuple[str, str]] = []
    result = JobPlan([])
    for source in inputs:
        if os.path.isdir(source):
            _walk(source, out_real, recursive, found, result)
        elif not os.path.lexists(source):
            found.append((source, os.path.basename(source)))  # fails when read: "no such file"
        else:
            # A named file is read even if hidden: the user chose it, no shell glob did.
            why = _why_not_read(os.path.basename(source), source, hidden_ok=True)
            if why:
                result.skipped.append(JobResult(Job(source, ""), SKIPPED, why))
            else:
                found.append((source, os.path.basename(source)))
    return found, result


def _walk(root: str, out_real: str, recursive: bool, found: list, result: JobPlan) -> None:
    def unreadable(err: OSError) -> None:
        reason = (err.strerror or str(err)).lower()
        name = err.filename or root
        result.failed.append(JobResult(Job(name, ""), FAILED, f"cannot list the folder: {reason}"))

    for folder, subfolders, files in os.walk(root, onerror=unreadable):
        descend = []
        for name in sorted(subfolders):
            path = os.path.join(folder, name)
            if os.path.realpath(path) == out_real:
                continue  # the output folder inside an input folder: never read back
            why = _why_not_descend(name, path, recursive)
            if why:
                result.skipped.append(JobResult(Job(path, ""), SKIPPED, why))
            else:
                descend.append(name)
        subfolders[:] = descend
        for name in sorted(files):
            path = os.path.join(folder, name)
            why = _why_not_read(name, path)
            if why:
                result.skipped.append(JobResult(Job(path, ""), SKIPPED, why))
            else:
                found.append((path, os.path.relpath(path, root)))


def _why_not_descend(name: str, path: str, recursive: bool) -> str | None:
    if name.startswith("."):
        return "hidden folder"
    if os.path.islink(path):
        return "symbolic link to a folder (not followed)"
    if not recursive:
        return "folder (add -r to descend into it)"
    return None


def _why_not_read(name: str, path: str, *, hidden_ok: bool = False) -> str | None:
    if name.startswith(".") and not hidden_ok:
        return "hidden file"
    if not _is_image_name(name):
        return "not an image file name"
    try:
        mode = os.stat(path).st_mode  # a symbolic link to a file is read like the file
    except OSError:
        return None  # reading it will say why (broken link, permission)
    # A FIFO or device would block or never end; only plain files are images.
    return None if stat.S_ISREG(mode) else "not a regular file"


def _is_image_name(path: str) -> bool:
    from convtool import images

    return images.is_image_path(path)


def _output_name(name: str, suffix: str, extension: str | None) -> str | None:
    """``name`` with ``suffix`` before the extension and ``extension`` replacing it.

    None when the input's own extension cannot be written (and no ``extension`` is given).
    """
    from convtool import images

    stem, ext = os.path.splitext(name)
    if extension is None:
        if ext.lower() not in images.WRITE_EXTENSIONS:
            return None
        extension = ext
    return stem + suffix + extension


def _check_mapping(
    candidates: list[Job],
    output: str,
    format: str | None,  # noqa: A002
    kernel_files: list[str],
) -> list[Job]:
    """Drop repeats of one file; refuse collisions, overwritten inputs and escaping outputs."""
    jobs, by_dest, clashes = [], {}, []
    for job in candidates:
        key = os.path.normcase(os.path.normpath(job.dest))
        if key not in by_dest:
            by_dest[key] = job
            jobs.append(job)
        elif os.path.realpath(by_dest[key].source) != os.path.realpath(job.source):
            clashes.append((by_dest[key].source, job.source, job.dest))
    if clashes:
        listed = [f"{a} and {b} -> {dest}" for a, b, dest in clashes]
        raise UsageError(
            f"inputs would be written to the same output: {_listing(listed)}; "
            + _collision_hint(clashes, format)
        )
    from convtool.images import outputs

    outputs.check_not_inputs(
        [("-o", job.dest) for job in jobs], [j.source for j in jobs], kernel_files=kernel_files
    )
    out_real = os.path.realpath(output)
    escaping = [job.dest for job in jobs if not is_inside(job.dest, out_real)]
    if escaping:
        raise UsageError(
            f"outputs would be written outside the output folder {output!r} through a "
            f"symbolic link: {_listing(escaping)}"
        )
    return jobs


def _collision_hint(clashes: list[tuple[str, str, str]], format: str | None) -> str:  # noqa: A002
    """What can part the clashing inputs (--suffix cannot: it changes every name alike)."""

    def ext(path: str) -> str:
        return os.path.splitext(path)[1].lower()

    if format is not None and all(ext(a) != ext(b) for a, b, _ in clashes):
        return "they differ only in extension: leave out --format so each keeps its own"
    return (
        "run them separately with different -o folders, or give the folder that holds "
        "both with -r (outputs keep their subfolders)"
    )


def _listing(items: list[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def _is_complete(path: str) -> bool:
    """An output that exists is complete: outputs appear only by renaming a finished file."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if stat.S_ISDIR(st.st_mode):  # a zarr store appears only by renaming a finished one too
        from convtool.images import tiles

        return tiles.is_zarr_store(path)
    return stat.S_ISREG(st.st_mode) and st.st_size > 0

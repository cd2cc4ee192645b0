"""What convtool shows on the terminal: messages, tables, heat maps, batch progress.

Messages and progress go to stderr; listings (the kernel table, ``kernels show``) to
stdout. rich draws colour and bars only where the stream is a terminal and ``NO_COLOR``
is unset; otherwise the same content is plain text. Only the CLI layer imports this.
"""

from __future__ import annotations

import contextlib
import os
import sys

from convtool.errors import one_line


def say(text: str, *, indent: str = "") -> None:
    """Print one line on stderr, as every message line is printed: through
    :func:`convtool.errors.one_line` (control characters escaped, length capped)."""
    print_stderr(indent + one_line(text))


def error_line(message: str) -> None:
    """Print ``convtool: error: MESSAGE`` on stderr."""
    say(f"convtool: error: {message}")


def note(message: str) -> None:
    """Print ``convtool: MESSAGE`` on stderr."""
    say(f"convtool: {message}")


def print_stderr(text: str) -> None:
    """A message on stderr; if stderr itself fails (``2>/dev/full``) there is nowhere to say so."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)


def warning_line(message: str) -> None:
    """One warning on stderr (what an output could not hold): not an error, no exit code."""
    say(f"convtool: warning: {message}")


def rich_stdout() -> bool:
    """Whether stdout may carry colour: a terminal, and no ``NO_COLOR``."""
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def print_kernel_table(rows) -> None:
    """The kernel list: (name, size, parameters, description) rows, a table on a terminal."""
    if rich_stdout():
        from rich.console import Console
        from rich.table import Table

        table = Table("name", "size", "parameters (defaults)", "description", box=None)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[3]
        )


def print_heat_maps(reports, console=None) -> None:
    """Kernels as coloured heat maps: red for positive weights, blue for negative.

    The cells hold the numbers of the plain listing, whole: columns that do not fit the
    terminal's width go to further runs of rows, as in the plain text.
    """
    from rich.console import Console
    from rich.text import Text

    from convtool.pipeline import report as kernelview

    console = console or Console()
    for rep in reports:
        console.print(Text(kernelview.title_line(rep), style="bold"), soft_wrap=True)
        cells, cell_width = kernelview.cell_texts(rep.weights, rep.denominator)
        peak = float(abs(rep.weights).max()) or 1.0
        columns = rep.weights.shape[1]
        for block in kernelview.column_blocks(columns, cell_width + 2, console.width):
            title = kernelview.block_title(block, columns)
            if title is not None:
                console.print(title, highlight=False, soft_wrap=True)
            for row, texts in zip(rep.weights, cells, strict=True):
                line = Text(kernelview.INDENT)
                for c in block:
                    value = float(row[c])
                    level = int(40 + 160 * abs(value) / peak)
                    colour = f"rgb({level},30,30)" if value > 0 else f"rgb(30,30,{level})"
                    style = "dim" if value == 0 else f"bold white on {colour}"
                    line.append(f" {texts[c].rjust(cell_width)} ", style=style)
                console.print(line, soft_wrap=True)  # never cropped: the runs fit the width
        for detail in kernelview.detail_lines(rep, console.width):
            console.print(detail, highlight=False, soft_wrap=True)


def _bar(console, unit: str):
    """The progress bar's look, shared by a batch and one long image."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    count = MofNCompleteColumn() if unit == "images" else TaskProgressColumn()
    return Progress(
        TextColumn("filtering"),
        BarColumn(),
        count,
        TextColumn("{task.fields[failed]}"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        TextColumn("left"),
        console=console,
        transient=True,
    )


# One image draws a bar only when it takes longer than this: quick ones would just flicker.
IMAGE_BAR_AFTER = 0.5  # seconds


@contextlib.contextmanager
def image_progress(quiet: bool):
    """Yield a ``progress(done, total)`` for one image's filtering, or None.

    A bar on stderr, in the batch bar's style, drawn only on a terminal, not with
    ``quiet``, and only once the image has taken :data:`IMAGE_BAR_AFTER` seconds.
    """
    if quiet or not sys.stderr.isatty():
        yield None
        return
    import time

    from rich.console import Console

    start = time.monotonic()
    progress, task = None, None

    def show(done: float, total: int) -> None:
        nonlocal progress, task
        if progress is None:
            if time.monotonic() - start < IMAGE_BAR_AFTER:
                return
            progress = _bar(Console(stderr=True), "steps")
            progress.start()
            task = progress.add_task("filter", total=total, rate="", failed="")
        progress.update(task, completed=done, total=total)

    try:
        yield show
    finally:
        if progress is not None:
            progress.stop()


@contextlib.contextmanager
def batch_progress(total: int, quiet: bool):
    """Yield ``show(result)``: a rich bar on a terminal, one line per file otherwise."""
    if quiet:
        yield lambda result: None
        return
    if not sys.stderr.isatty():

        def line(result) -> None:
            detail = f": {result.reason}" if result.reason else f" -> {result.job.dest}"
            say(f"{result.status} {result.job.source}{detail}")
            for warning in result.warnings:
                warning_line(f"{result.job.dest}: {warning}")

        yield line
        return
    from rich.console import Console

    # Failures are counted on the bar, not printed as they come: the summary lists each
    # once with its reason (printed here too, they appeared twice on the screen).
    progress = _bar(Console(stderr=True), "images")
    with progress:
        task = progress.add_task("filter", total=total, rate="", failed="")
        failures = 0

        def bar(result) -> None:
            nonlocal failures
            failures += result.status == "failed"
            for warning in result.warnings:  # the summary does not repeat these
                line = one_line(f"convtool: warning: {result.job.dest}: {warning}")
                progress.console.print(line, highlight=False, markup=False)
            elapsed = progress.tasks[task].elapsed or 0.0
            done = progress.tasks[task].completed + 1
            rate = f"{done / elapsed:.1f} images/s" if elapsed > 0 else ""
            failed = f"{failures} failed" if failures else ""
            progress.update(task, advance=1, rate=rate, failed=failed)

        yield bar


@contextlib.contextmanager
def chunk_progress(quiet: bool):
    """Yield ``show(done, total)`` for the chunks of one image: a rich bar on a terminal,
    a line at every tenth otherwise."""
    if quiet:
        yield lambda done, total: None
        return
    if not sys.stderr.isatty():
        shown = [-1]

        def line(done: int, total: int) -> None:
            tenth = done * 10 // max(1, total)
            if tenth != shown[0]:
                shown[0] = tenth
                print(f"convtool: {done}/{total} chunks", file=sys.stderr, flush=True)

        yield line
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(
        TextColumn("chunks"), BarColumn(), MofNCompleteColumn(),
        console=Console(stderr=True), transient=True,
    )  # fmt: skip
    with progress:
        task = progress.add_task("chunks", total=None)

        def bar(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield bar


def print_summary(summary, seconds: float, quiet: bool, *, interrupted: bool = False) -> None:
    """The end-of-batch summary on stderr: counts, rate, failed files with reasons."""
    from collections import Counter

    finished = len(summary.done) + len(summary.failed)
    if quiet:
        for result in summary.failed:
            error_line(f"{result.job.source}: {result.reason}")
        if interrupted:
            error_line(f"interrupted after {finished} of {finished + summary.not_run} files")
        return
    rate = f", {len(summary.done) / seconds:.1f} images/s" if seconds > 0 and summary.done else ""
    counts = (
        f"{len(summary.done)} done, {len(summary.skipped)} skipped, {len(summary.failed)} failed"
    )
    if summary.not_run:
        counts += f", {summary.not_run} not run"
    say(f"convtool: {counts} ({seconds:.1f} s{rate})")
    reasons = Counter(result.reason for result in summary.skipped)
    if reasons:
        say("skipped: " + ", ".join(f"{n} {why}" for why, n in reasons.most_common()), indent="  ")
    for r in summary.failed:
        say(f"failed: {r.job.source}: {r.reason}", indent="  ")
    if interrupted:
        say(
            f"convtool: interrupted after {finished} of {finished + summary.not_run} "
            "files; run again with --skip-existing to finish"
        )

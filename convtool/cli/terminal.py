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
    print(indent + one_line(text), file=sys.stderr, flush=True)


def error_line(message: str) -> None:
    say(f"convtool: error: {message}")


def note(message: str) -> None:
    say(f"convtool: {message}")


def rich_stdout() -> bool:
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
    """Kernels as coloured heat maps: red for positive weights, blue for negative."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from convtool.pipeline import report as kernelview

    console = console or Console()
    for rep in reports:
        plain = kernelview.format_plain([rep]).splitlines()
        console.print(Text(plain[0], style="bold"))
        peak = float(abs(rep.weights).max()) or 1.0
        table = Table(show_header=False, box=None, padding=(0, 1))
        for row in rep.weights:
            cells = []
            for value in row:
                share = abs(float(value)) / peak
                level = int(40 + 160 * share)
                colour = f"rgb({level},30,30)" if value > 0 else f"rgb(30,30,{level})"
                style = "dim" if value == 0 else f"bold white on {colour}"
                cells.append(Text(kernelview.format_number(value, rep.denominator), style=style))
            table.add_row(*cells)
        console.print(table)
        rows = rep.weights.shape[0]
        for line in plain[1 + rows :]:
            console.print(line, highlight=False)


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

        yield line
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("filtering"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        TextColumn("left"),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task("filter", total=total, rate="")

        def bar(result) -> None:
            if result.status == "failed":
                line = one_line(f"failed {result.job.source}: {result.reason}")
                progress.console.print(line, highlight=False, markup=False)
            elapsed = progress.tasks[task].elapsed or 0.0
            done = progress.tasks[task].completed + 1
            rate = f"{done / elapsed:.1f} images/s" if elapsed > 0 else ""
            progress.update(task, advance=1, rate=rate)

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

"""The help and the README cannot drift from the CLI (as sqlite-utils' test_docs.py).

Every command and subcommand of the Typer app has an ``Examples:`` section whose lines are
whole commands that the CLI accepts (each is parsed by the command it names); and the
README has an option table for each, marked ``<!-- options: convtool ... -->``, that lists
exactly the CLI's options (and, for a choice, exactly its choices).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from convtool.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
runner = CliRunner()
HELP_OPTIONS = {"-h", "--help"}  # every command has them; the README says so once


def walk(command, path=()):
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, (*path, name))


COMMANDS = dict(walk(typer.main.get_command(app)))
IDS = [" ".join(("convtool", *path)) for path in COMMANDS]


def help_text(path) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.stdout


def examples(text: str) -> list[str]:
    """The lines of the Examples section; a broken line ends it and fails the caller."""
    lines = text.splitlines()
    assert "Examples:" in (line.strip() for line in lines), text
    start = next(i for i, line in enumerate(lines) if line.strip() == "Examples:")
    found = []
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("convtool "):
            # only another section's heading may follow the examples, never a wrapped tail
            assert stripped.endswith(":"), f"a broken example line: {stripped!r}"
            break
        found.append(stripped)
    return found


def parse_example(example: str) -> list[tuple[tuple[str, ...], list[str]]]:
    """Each command of a pipeline, as (command path, its arguments), checked by the CLI."""
    parsed = []
    for piece in re.sub(r"\s+\([^()]*\)$", "", example).split(" | "):
        words = shlex.split(piece)
        assert words[0] == "convtool", example
        path, args = (), words[1:]
        while args and args[0] in getattr(COMMANDS[path], "commands", {}):
            path, args = (*path, args[0]), args[1:]
        command = COMMANDS[path]
        # make_context parses and checks every option and argument, runs nothing
        command.make_context(" ".join(("convtool", *path)), list(args))
        parsed.append((path, args))
    return parsed


@pytest.mark.parametrize("path", list(COMMANDS), ids=IDS)
def test_every_command_has_examples_that_the_cli_accepts(path):
    found = examples(help_text(path))
    assert found, f"no examples in the help of {' '.join(path)}"
    commands = [p for example in found for p, _ in parse_example(example)]
    if path:  # the app's own help shows its commands; each command shows itself
        assert path in commands, f"no example of {' '.join(('convtool', *path))} itself"


def test_a_broken_example_is_caught():
    with pytest.raises(AssertionError, match="broken"):
        examples("Examples:\n\n  convtool filter in.png -k box -o\n  out.png\n")
    with pytest.raises(Exception, match="-o"):
        parse_example("convtool filter in.png -k box -o")


# --------------------------------------------------------------------- option tables


def readme_table(command_id: str) -> list[str]:
    marker = f"<!-- options: {command_id} -->"
    assert marker in README, f"the README has no option table for {command_id} ({marker})"
    after = README.split(marker, 1)[1].lstrip("\n").splitlines()
    rows = []
    for line in after:
        if not line.startswith("|"):
            break
        rows.append(line)
    assert len(rows) > 2, f"no table after {marker}"
    return rows[2:]  # without the header and the --- line


def table_options(rows: list[str]) -> dict[str, set[str] | None]:
    """``{option: its choices or None}`` from each row's first cell (`-k, --kernel SPEC`)."""
    options: dict[str, set[str] | None] = {}
    for row in rows:
        first = re.split(r"(?<!\\)\|", row)[1]
        for span in re.findall(r"`([^`]+)`", first):
            for item in span.replace("\\|", "|").split(", "):
                name, _, value = item.partition(" ")
                if name.startswith("-"):
                    choices = set(value.split("|")) if "|" in value else None
                    options[name] = choices
    return options


def cli_options(command) -> dict[str, set[str] | None]:
    options: dict[str, set[str] | None] = {}
    for param in command.params:
        if param.param_type_name != "option":
            continue
        choices = getattr(param.type, "choices", None)
        for name in (*param.opts, *param.secondary_opts):
            if name not in HELP_OPTIONS:
                options[name] = {str(getattr(c, "value", c)) for c in choices} if choices else None
    return options


@pytest.mark.parametrize("path", list(COMMANDS), ids=IDS)
def test_the_readme_option_table_lists_exactly_the_cli_options(path):
    command_id = " ".join(("convtool", *path))
    documented = table_options(readme_table(command_id))
    actual = cli_options(COMMANDS[path])
    assert sorted(set(actual) - set(documented)) == [], "in the CLI, not in the README"
    assert sorted(set(documented) - set(actual)) == [], "in the README, not in the CLI"
    for name, choices in actual.items():
        if choices is not None:
            assert documented[name] == choices, f"{name}: the README's choices differ"


def test_the_table_reader_sees_options_and_choices():
    rows = ["| `-k, --kernel SPEC` | a kernel |", "| `--depth 8\\|16\\|float` | depth |"]
    assert table_options(rows) == {"-k": None, "--kernel": None, "--depth": {"8", "16", "float"}}


# ----------------------------------------------------------------- what help promises


def test_the_format_help_names_every_output_format():
    from convtool.images import WRITE_EXTENSIONS

    text = " ".join(help_text(("filter",)).split())
    listed = re.search(r"Output format \(([^)]*)\)", text).group(1).split(", ")
    assert {WRITE_EXTENSIONS["." + name] for name in listed} == set(WRITE_EXTENSIONS.values())


def test_the_iterations_help_gives_the_range_the_chain_enforces():
    from convtool.pipeline.steps import MAX_ITERATIONS

    assert f"(1-{MAX_ITERATIONS})" in " ".join(help_text(("filter",)).split())


@pytest.mark.parametrize(("path", "metavar"), [(("filter",), "INPUTS..."),
                                               (("compare",), "IMAGES...")])  # fmt: skip
def test_usage_lines_show_repeatable_arguments(path, metavar):
    usage = help_text(path).splitlines()[0]
    assert usage.endswith(metavar), usage
    assert f"convtool {path[0]} {metavar}" in README

"""The command line: a thin Typer app over the library (``convtool.cli.app``)."""

from __future__ import annotations

from convtool.cli.app import app, main

__all__ = ["app", "main"]

"""``python -m convtool`` runs the command line."""

from convtool.cli import main

main()

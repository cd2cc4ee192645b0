"""``python -m convtool`` runs the command line."""

from .cli import main

main()

"""Subcommands of the ``minivae`` CLI, one module per group (see minivae/cli.py)."""

"""Subcommands of the ``harness`` CLI; each module adds its own parser."""

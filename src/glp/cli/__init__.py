"""The command line: ``glp prune | show | export | evaluate | profile | report | drop`` (typer)."""

from glp.cli.app import app, main

__all__ = ["app", "main"]

"""``glp drop``'s table: layers and parameters before and after (the work is `glp.commands.drop`)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from glp.commands.drop import Dropped


def print_dropped(d: Dropped, out: Path) -> None:
    """The table of layers and parameters before and after, and where the model went."""
    table = Table(title=f"glp drop: {d.model_class}, removed layers {d.removed}")
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_row("layers", str(d.layers[0]), str(d.layers[1]))
    table.add_row("parameters", f"{d.params[0]:,}", f"{d.params[1]:,}")
    console = Console()
    console.print(table)
    console.print(f"saved to {out}" + ("" if d.tokenizer else " (no tokenizer found)"))

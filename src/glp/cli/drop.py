"""``glp drop``'s work: remove given layers from a model, save it so it loads with plain transformers, and the table
of what changed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from glp import models
from glp.cli.args import parse_indices
from glp.errors import ConfigError
from glp.layers import config_num_layers, drop_layers, find_layer_stack, parameter_count, validate_indices


@dataclass(frozen=True)
class Dropped:
    """What `drop_and_save` did: the model's class, the layers removed, layers and parameters before and after."""

    model_class: str
    removed: list[int]
    layers: tuple[int, int]
    params: tuple[int, int]
    tokenizer: bool  # a tokenizer was found and saved with the model


def drop_and_save(model: str, remove: str, out: Path, overwrite: bool, trust_remote_code: bool) -> Dropped:
    """Remove the layers ``remove`` ("3,1") from ``model`` and save it (safetensors + tokenizer) to ``out``."""
    import transformers  # here, not at the top: transformers is slow to import and `glp --help` needs none of it

    transformers.utils.logging.disable_progress_bar()
    indices = parse_indices(remove)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"output directory {str(out)!r} exists and is not empty; pass --overwrite to write into it")

    source = models.resolve(model, trust_remote_code=trust_remote_code)
    config = models.load_config(source)
    if (count := config_num_layers(config)) is not None:
        validate_indices(indices, count)  # fail before loading the weights
    net = models.load_saved(source)
    tokenizer = models.load_tokenizer(source, required=False)
    layers_before = len(find_layer_stack(net).layers)
    removed = validate_indices(indices, layers_before)
    params_before = parameter_count(net)
    drop_layers(net, removed)
    layers_after = len(find_layer_stack(net).layers)
    params_after = parameter_count(net)

    out.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(out, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    layers, params = (layers_before, layers_after), (params_before, params_after)
    return Dropped(type(net).__name__, list(removed), layers, params, tokenizer is not None)


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

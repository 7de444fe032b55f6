"""``glp drop``: remove given layers from a model and save it so it loads with plain transformers (no search)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from glp import models
from glp.atomic import write_dir_atomic
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


def drop_and_save(
    model: str, indices: list[int], out: Path, overwrite: bool = False, trust_remote_code: bool = False
) -> Dropped:
    """Remove the layers ``indices`` (0-based) from ``model`` and save it (safetensors + tokenizer) to ``out``,
    whole or not at all (`glp.atomic.write_dir_atomic`)."""
    import transformers  # here, not at the top: transformers is slow to import and `glp --help` needs none of it

    transformers.utils.logging.disable_progress_bar()
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

    def write(folder: Path) -> None:  # into a hidden sibling of out, renamed to out when complete
        net.save_pretrained(folder, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)

    write_dir_atomic(out, write, overwrite)
    layers, params = (layers_before, layers_after), (params_before, params_after)
    return Dropped(type(net).__name__, list(removed), layers, params, tokenizer is not None)

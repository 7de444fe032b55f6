"""glp: greedy layer pruning for Hugging Face transformers."""

from glp.layers import drop_layers, find_layer_stack, num_layers

__version__ = "0.1.0"

__all__ = ["__version__", "drop_layers", "find_layer_stack", "num_layers"]

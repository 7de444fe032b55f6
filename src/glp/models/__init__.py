"""The one model loader: where a model comes from and loading it (`glp.models.loader`: sources, config, tokenizer,
saved models, each failure one `ModelLoadError`), and the candidates of a task built from the pre-trained weights
kept in memory, in the precision they are loaded in (`glp.models.candidates`: `pretrained`, `build`)."""

from glp.errors import ModelLoadError
from glp.models.candidates import (
    Pretrained,
    build,
    clear_cache,
    count_parameters,
    pretrained,
    quantization,
    weights_dtype,
)
from glp.models.loader import (
    PACKAGE_PREFIX,
    ModelSource,
    describe,
    from_record,
    load_config,
    load_error,
    load_saved,
    load_tokenizer,
    quiet_transformers,
    recorded_hash,
    resolve,
    saved_class,
    weights_revision,
)

__all__ = [
    "PACKAGE_PREFIX",
    "ModelLoadError",
    "ModelSource",
    "Pretrained",
    "build",
    "clear_cache",
    "count_parameters",
    "describe",
    "from_record",
    "load_config",
    "load_error",
    "load_saved",
    "load_tokenizer",
    "pretrained",
    "quantization",
    "quiet_transformers",
    "recorded_hash",
    "resolve",
    "saved_class",
    "weights_dtype",
    "weights_revision",
]

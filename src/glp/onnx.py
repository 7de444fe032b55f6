"""ONNX Runtime: an encoder classifier exported to ONNX, its int8 version, and a session that runs either.

``glp export --onnx`` (``model.onnx`` beside the PyTorch files; ``model.int8.onnx`` with ``--quantize int8``) and
``glp profile --runtime`` (every model of the profile exported to a temporary file and timed) share this module.

- Export: ``torch.onnx.export`` with the dynamo exporter (torch's default and recommended one; optimum-onnx, which
  would do the same, pins transformers < 4.58). Batch and sequence axes are dynamic; the inputs are named as the
  tokenizer gives them (``input_ids``, ``attention_mask``, ``token_type_ids`` where the model takes it), the one
  output ``logits``.
- int8: ONNX Runtime's dynamic quantization (``onnxruntime.quantization.quantize_dynamic``, no calibration data):
  weights int8 per output channel with ``reduce_range`` (7 bits: ONNX Runtime's advice for x86 CPUs without VNNI,
  where 8-bit products can saturate), activations quantized to uint8 at run time; ONNX Runtime's default op types
  (MatMul, Gemm, and Gather: the embedding tables too, so the file is about a quarter of the float32 one).
- Session: the CPU execution provider, ``intra_op_num_threads`` = the threads asked for, one inter-op thread,
  sequential execution, all graph optimizations, and thread spinning off (idle session threads would otherwise
  spin on the cores the next timed model needs).

Only sequence and token classifiers are exported: serving a decoder LLM (causal-lm) through ONNX Runtime needs its
KV cache as graph inputs and outputs, which this export does not write; ship its PyTorch directory.

Optional: ``pip install 'glp[onnx]'`` (onnx, onnxruntime, onnxscript), imported when first needed.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from glp.errors import ConfigError, UnsupportedModelError

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
QUANTIZATIONS = ("int8",)
OUTPUT = "logits"
# the task kinds whose models are exported, and optimum's class that loads each export
ORT_CLASSES = {
    "sequence-classification": "ORTModelForSequenceClassification",
    "token-classification": "ORTModelForTokenClassification",
}
INT8 = {
    "method": "onnxruntime.quantization.quantize_dynamic",
    "weights": "int8, per output channel, reduce_range (7 bits)",
    "activations": "uint8, quantized at run time",
    "ops": "ONNX Runtime's default set: MatMul, Gemm, Gather (the embeddings too)",
}
EXAMPLE = ["glp exports a pruned model.", "ONNX Runtime serves it on a CPU, in float32 or int8."]
_EXTERNAL_BYTES = 1_800_000_000  # weights above this go to an external data file (a protobuf holds at most 2 GB)


def require() -> Any:
    """onnxruntime, after checking that the ONNX extra (onnx, onnxruntime, onnxscript) is installed."""
    try:
        for name in ("onnx", "onnxscript", "onnxruntime"):
            module = importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(
            f"ONNX export and timing need onnx, onnxruntime and onnxscript ({exc.name or exc} is missing): "
            "pip install 'glp[onnx]'"
        ) from None
    return module


def check_kind(kind: str) -> None:
    """Refuse a task kind whose models are not exported to ONNX (decoder LLMs)."""
    if kind not in ORT_CLASSES:
        raise ConfigError(
            f"--onnx exports encoder classifiers ({', '.join(ORT_CLASSES)}), not {kind} models: a decoder LLM is "
            "not exported to ONNX (it needs its KV cache in the graph); ship its PyTorch directory"
        )


def _check_model(model: Any) -> None:
    check = getattr(model, "can_generate", None)
    if callable(check) and check():
        raise UnsupportedModelError(
            f"{type(model).__name__} is a decoder LLM: ONNX export and --runtime onnxruntime cover encoder "
            "classifiers (sequence and token classification) only; time it with --runtime torch"
        )


def example_inputs(model: Any, tokenizer: Any = None) -> dict[str, Any]:
    """Two example sentences as the tokenizer gives them (only the inputs the model's ``forward`` takes), padded to
    one length; without a tokenizer, random ``input_ids`` and an ``attention_mask`` of the same shape."""
    import inspect

    import torch

    if tokenizer is None:
        vocab = int(getattr(model.config, "vocab_size", 100) or 100)
        ids = torch.randint(min(5, vocab - 1), vocab, (2, 12), generator=torch.Generator().manual_seed(0))
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    enc = tokenizer(EXAMPLE, padding=True, return_tensors="pt")
    takes = inspect.signature(model.forward).parameters
    names = [n for n in getattr(tokenizer, "model_input_names", enc.keys()) if n in enc and n in takes]
    return {n: enc[n] for n in names}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's and the quantizer's warnings and log lines off (torchvision not installed, a graph
    pre-processing hint, ...): the user sees glp's own lines."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def export_model(model: Any, path: str | os.PathLike[str], inputs: Mapping[str, Any]) -> Path:
    """``model`` (a transformers classifier, float32, on the CPU) as ONNX at ``path``: ``inputs`` name the graph's
    inputs (their batch and sequence axes dynamic), ``logits`` is its output."""
    require()
    _check_model(model)
    import torch

    path = Path(path)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    names = list(inputs)
    external = sum(p.numel() * p.element_size() for p in model.parameters()) > _EXTERNAL_BYTES
    model = model.eval()
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(
            model,
            (),
            kwargs=dict(inputs),
            input_names=names,
            output_names=[OUTPUT],
            dynamic_shapes={n: {0: batch, 1: seq} for n in names},
            dynamo=True,
            verbose=False,
        )
        program.save(str(path), external_data=external)
    return path


def quantize_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """ONNX Runtime's dynamic int8 quantization of the ONNX model ``src`` into ``dst`` (see `INT8`)."""
    require()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    external = Path(f"{src}.data").exists()
    with _quiet():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            use_external_data_format=external,
        )
    return Path(dst)


def session(path: str | os.PathLike[str], threads: int | None = None) -> Any:
    """An ONNX Runtime session of ``path`` on the CPU: ``threads`` intra-op threads (default: ONNX Runtime's),
    one inter-op thread, sequential execution, all graph optimizations, no thread spinning."""
    ort = require()
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run(sess: Any, inputs: Mapping[str, Any]) -> Any:
    """The session's ``logits`` (a numpy array) for ``inputs`` (torch tensors or numpy arrays)."""
    feed = {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in inputs.items()}
    return sess.run([OUTPUT], feed)[0]


class SessionModel:
    """An ONNX Runtime session called like the transformers model it was exported from (``model(**inputs)``), with
    that model's ``config``: what ``glp profile`` times beside the torch models."""

    def __init__(self, sess: Any, config: Any):
        self.session = sess
        self.config = config

    def __call__(self, **inputs: Any) -> Any:
        return run(self.session, inputs)


def versions() -> dict[str, str]:
    """The versions of what exports and runs the ONNX models."""
    import torch

    ort = require()
    import onnx

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__}

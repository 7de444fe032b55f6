"""Layer surgery (glp.layers) and `glp drop`, on tiny random models built from configs (CPU, offline)."""

from __future__ import annotations

import inspect
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import transformers
from safetensors.torch import save_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
)

import glp
from glp.errors import LayerIndexError, UnsupportedModelError
from glp.layers import find_layer_stack, layer_parameter_count, num_layers, validate_indices

COMMON = dict(
    hidden_size=32,
    num_attention_heads=4,
    num_hidden_layers=4,
    intermediate_size=37,
    vocab_size=100,
    max_position_embeddings=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
GQA = dict(num_key_value_heads=2)

ENCODERS = {
    "bert": ("bert", {}),
    "roberta": ("roberta", {}),
    "xlm-roberta": ("xlm-roberta", {}),
    "distilbert": ("distilbert", dict(hidden_dim=37)),
    "electra": ("electra", dict(embedding_size=24)),
    "deberta-v2": ("deberta-v2", dict(relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=8)),
    "mpnet": ("mpnet", {}),
    "modernbert": (
        "modernbert",
        dict(cls_token_id=2, sep_token_id=3, global_attn_every_n_layers=2, local_attention=4),
    ),
}
DECODERS = {
    "llama": ("llama", GQA),
    "mistral": ("mistral", dict(GQA, sliding_window=4)),
    "qwen2": ("qwen2", dict(GQA, use_sliding_window=True, sliding_window=4, max_window_layers=2)),
    "qwen3": ("qwen3", dict(GQA, head_dim=8)),
    "gemma": ("gemma", dict(GQA, head_dim=8)),
    "gemma2": ("gemma2", dict(GQA, head_dim=8, sliding_window=4, query_pre_attn_scalar=8)),
    "smollm3": ("smollm3", dict(GQA, no_rope_layer_interval=2)),
    "phi": ("phi", {}),
    "gpt_neox": ("gpt_neox", {}),
    "falcon": ("falcon", {}),
    "gpt2": ("gpt2", {}),
    "opt": ("opt", dict(ffn_dim=37, word_embed_proj_dim=32)),
}
ARCHS = {**ENCODERS, **DECODERS}
# tiny models on 2 shared cores: one thread is several times faster than many competing ones
SUBPROCESS_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True, scope="module")
def _quiet():
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    yield
    transformers.logging.set_verbosity(verbosity)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def make_config(arch: str, **overrides):
    model_type, extra = ARCHS[arch]
    return AutoConfig.for_model(model_type, **{**COMMON, **extra, **overrides})


def make_model(arch: str, head: bool = False, **overrides):
    config = make_config(arch, **overrides)
    if not head:
        cls = AutoModel
    elif arch in DECODERS:
        cls = AutoModelForCausalLM
    else:
        cls = AutoModelForSequenceClassification
        config.num_labels = 3
    return cls.from_config(config).eval()


def make_inputs(seed: int = 0, batch: int = 2, length: int = 9):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 100, (batch, length), generator=g)
    attention_mask = torch.ones_like(input_ids)
    if batch > 1:
        attention_mask[1, -3:] = 0  # right padding in the second row
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def run(model, arch: str, inputs) -> torch.Tensor:
    kwargs = dict(inputs)
    if arch in DECODERS:
        kwargs["use_cache"] = False
    with torch.no_grad():
        out = model(**kwargs)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def _identity_hook(module, args, kwargs, output):
    """Make a block return its input (blocks return a tensor or a tuple, depending on the architecture)."""
    if args:
        hidden = args[0]
    else:
        first = next(iter(inspect.signature(module.forward).parameters))
        hidden = kwargs[first]
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def reference_output(model, arch: str, removed, inputs) -> torch.Tensor:
    """The original model with the blocks `removed` turned into the identity."""
    layers = find_layer_stack(model).layers
    handles = [layers[i].register_forward_hook(_identity_hook, with_kwargs=True) for i in removed]
    try:
        return run(model, arch, inputs)
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("head", [False, True], ids=["base", "head"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_pruned_equals_identity_blocks_and_param_count(arch, head):
    model = make_model(arch, head=head)
    removed = [3, 1] if head else [2, 0]
    if arch == "modernbert":
        removed = [3, 1] if head else [2, 1]  # block 0 differs from the others (see test_modernbert_block_0)
    inputs = make_inputs()
    expected = reference_output(model, arch, removed, inputs)
    full = run(model, arch, inputs)
    params_before = sum(p.numel() for p in model.parameters())
    removed_params = layer_parameter_count(model, removed)
    layers = find_layer_stack(model).layers
    assert removed_params == sum(p.numel() for i in removed for p in layers[i].parameters()) > 0

    pruned = glp.drop_layers(model, removed)
    assert pruned is model
    assert sum(p.numel() for p in model.parameters()) == params_before - removed_params
    assert num_layers(pruned) == 2
    stack = find_layer_stack(pruned)
    assert getattr(pruned.config, stack.count_attr) == 2
    assert pruned.config.num_hidden_layers == 2
    got = run(pruned, arch, inputs)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert (got - full).abs().max() > 1e-6  # the removed blocks did something


def test_find_layer_stack_paths():
    expected = {
        "bert": ("bert.encoder.layer", "num_hidden_layers"),
        "distilbert": ("distilbert.transformer.layer", "n_layers"),
        "deberta-v2": ("deberta.encoder.layer", "num_hidden_layers"),
        "modernbert": ("model.layers", "num_hidden_layers"),
    }
    for arch, (path, count_attr) in expected.items():
        stack = find_layer_stack(make_model(arch, head=True))
        assert (stack.path, stack.count_attr, len(stack.layers)) == (path, count_attr, 4)
    for arch, path in {"gpt2": "transformer.h", "opt": "model.decoder.layers", "llama": "model.layers"}.items():
        stack = find_layer_stack(make_model(arch, head=True))
        assert stack.path == path
    assert find_layer_stack(make_model("gpt2")).count_attr == "n_layer"


@pytest.mark.parametrize("arch", ["mistral", "qwen2", "gemma2", "smollm3", "gpt2", "opt"])
def test_generate_with_cache_after_pruning(arch):
    model = make_model(arch, head=True)
    glp.drop_layers(model, [0, 2])
    indices = [m.layer_idx for m in model.modules() if isinstance(getattr(m, "layer_idx", None), int)]
    assert indices and set(indices) == {0, 1}
    prompt = make_inputs(seed=1, batch=1, length=5)["input_ids"]
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        cached = model.generate(prompt, use_cache=True, **kwargs)
        uncached = model.generate(prompt, use_cache=False, **kwargs)
    assert cached.shape == (1, 13)
    assert torch.equal(cached, uncached)


def test_per_layer_config_lists_are_sliced():
    model = make_model("qwen2", head=True)
    assert model.config.layer_types == ["full_attention"] * 2 + ["sliding_attention"] * 2
    glp.drop_layers(model, [0, 3])
    assert model.config.layer_types == ["full_attention", "sliding_attention"]

    model = make_model("smollm3")
    flags = list(model.config.no_rope_layers)
    glp.drop_layers(model, [1])
    assert model.config.no_rope_layers == [flags[0], flags[2], flags[3]]

    model = make_model("modernbert")
    types = list(model.config.layer_types)
    glp.drop_layers(model, [2])
    assert model.config.layer_types == [types[0], types[1], types[3]]


def test_config_rule_is_conservative(caplog):
    # 4 layers: a list of length 4 that is not per-layer data stays as it is; index lists are remapped
    model = make_model("llama", eos_token_id=[2, 3, 4, 5], mlp_only_layers=[0, 1, 3])
    with caplog.at_level(logging.WARNING, logger="glp.layers"):
        glp.drop_layers(model, [1])
    assert model.config.eos_token_id == [2, 3, 4, 5]
    assert "eos_token_id" in caplog.text
    assert model.config.mlp_only_layers == [0, 2]
    assert model.config.num_hidden_layers == 3


def test_index_list_remap_and_reload_check_on_moe():
    moe = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=8, shared_expert_intermediate_size=8)
    config = AutoConfig.for_model("qwen2_moe", **COMMON, **GQA, **moe, mlp_only_layers=[0, 3])
    model = AutoModelForCausalLM.from_config(config).eval()
    inputs = make_inputs()
    expected = reference_output(model, "llama", [1], inputs)
    glp.drop_layers(model, [1])
    assert model.config.mlp_only_layers == [0, 2]
    torch.testing.assert_close(run(model, "llama", inputs), expected, atol=1e-5, rtol=1e-5)

    # every 2nd layer is sparse: removing layer 0 would shift the pattern, so a reload would not match
    config = AutoConfig.for_model("qwen2_moe", **COMMON, **GQA, **moe, decoder_sparse_step=2)
    model = AutoModelForCausalLM.from_config(config).eval()
    with pytest.raises(UnsupportedModelError, match="would not rebuild"):
        glp.drop_layers(model, [0])
    assert num_layers(model) == 4 and model.config.num_hidden_layers == 4  # untouched
    glp.drop_layers(model, [2, 3])  # the pattern of the kept layers is unchanged
    assert num_layers(model) == 2


def test_modernbert_block_0():
    """ModernBERT's block 0 has no attention pre-norm: removing it would not reload as the same model."""
    model = make_model("modernbert", head=True)
    with pytest.raises(UnsupportedModelError, match="would not rebuild"):
        glp.drop_layers(model, [0, 2])
    assert num_layers(model) == 4


def test_modified_model_skips_reload_check():
    """Extra modules (e.g. adapters) make the model differ from its config: the reload check is skipped."""
    model = make_model("llama")
    model.layers[2].adapter = torch.nn.Linear(2, 2)
    glp.drop_layers(model, [0])
    assert num_layers(model) == 3 and hasattr(model.layers[1], "adapter")


def test_not_inplace_leaves_original_untouched():
    model = make_model("llama", head=True)
    inputs = make_inputs()
    before = run(model, "llama", inputs)
    pruned = glp.drop_layers(model, [1, 2], inplace=False)
    assert pruned is not model
    assert num_layers(model) == 4 and model.config.num_hidden_layers == 4
    assert [b.self_attn.layer_idx for b in model.model.layers] == [0, 1, 2, 3]
    assert num_layers(pruned) == 2
    torch.testing.assert_close(run(model, "llama", inputs), before)


def test_empty_selection_is_a_no_op():
    model = make_model("bert")
    assert glp.drop_layers(model, []) is model
    assert num_layers(model) == 4


@pytest.mark.slow
def test_round_trip_reload_without_glp(tmp_path):
    """Save every pruned head model; a fresh Python process (no glp import) reloads them with Auto classes."""
    manifest = {}
    for arch in ARCHS:
        model = make_model(arch, head=True)
        glp.drop_layers(model, [1, 2] if arch == "modernbert" else [0, 2])
        inputs = make_inputs(seed=2)
        out = tmp_path / arch
        model.save_pretrained(out)
        save_file({**inputs, "logits": run(model, arch, inputs).contiguous()}, str(out / "expected.safetensors"))
        manifest[arch] = {
            "dir": str(out),
            "auto": "AutoModelForCausalLM" if arch in DECODERS else "AutoModelForSequenceClassification",
            "layers": 2,
            "layer_types": getattr(model.config, "layer_types", None),
            "decoder": arch in DECODERS,
        }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    script = textwrap.dedent(
        """
        import json, sys
        import torch, transformers
        from safetensors.torch import load_file
        transformers.logging.set_verbosity_error()
        assert "glp" not in sys.modules
        failures = []
        for arch, spec in json.load(open(sys.argv[1])).items():
            model = getattr(transformers, spec["auto"]).from_pretrained(spec["dir"]).eval()
            data = load_file(spec["dir"] + "/expected.safetensors")
            kwargs = {"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]}
            if spec["decoder"]:
                kwargs["use_cache"] = False
            with torch.no_grad():
                logits = model(**kwargs).logits
            if model.config.num_hidden_layers != spec["layers"]:
                failures.append(f"{arch}: {model.config.num_hidden_layers} layers")
            if getattr(model.config, "layer_types", None) != spec["layer_types"]:
                failures.append(f"{arch}: layer_types {model.config.layer_types}")
            if not torch.allclose(logits, data["logits"], atol=1e-5):
                failures.append(f"{arch}: logits differ by {(logits - data['logits']).abs().max()}")
        print("\\n".join(failures) or "ALL OK")
        sys.exit(1 if failures else 0)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "manifest.json")],
        capture_output=True,
        text=True,
        env=SUBPROCESS_ENV,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "ALL OK" in proc.stdout


# ---- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("indices", "match"),
    [
        ([1, 1], "duplicate"),
        ([4], "out of range"),
        ([-1], "out of range"),
        ([0, 1, 2, 3], "cannot remove all 4 layers"),
        ([1.0], "must be integers"),
        (["1"], "must be integers"),
        ("1", "must be integers"),
        ([True], "must be integers"),
        (None, "must be integers"),
    ],
)
def test_validate_indices_errors(indices, match):
    with pytest.raises(LayerIndexError, match=match):
        validate_indices(indices, 4)


def test_validate_indices_protected():
    with pytest.raises(LayerIndexError, match="protected"):
        validate_indices([1, 2], 4, protected=(0, 2))


def test_validate_indices_ok():
    assert validate_indices([3, 1], 4) == (1, 3)
    assert validate_indices((torch.tensor(2), 0), 4) == (0, 2)
    assert validate_indices(3, 4) == (3,)
    assert validate_indices([], 4) == ()
    assert validate_indices([0, 1, 2, 3], 4, allow_all=True) == (0, 1, 2, 3)


def test_drop_layers_bad_indices_leave_model_untouched():
    model = make_model("bert")
    for bad in ([1, 1], [7], [0, 1, 2, 3]):
        with pytest.raises(LayerIndexError):
            glp.drop_layers(model, bad)
    assert num_layers(model) == 4 and model.config.num_hidden_layers == 4


def test_albert_is_unsupported():
    config = AutoConfig.for_model("albert", **COMMON, embedding_size=16)
    with pytest.raises(UnsupportedModelError, match="shares layer weights"):
        glp.drop_layers(AutoModel.from_config(config), [1])


def test_encoder_decoder_is_unsupported():
    config = AutoConfig.for_model("t5", d_model=32, d_ff=37, num_layers=2, num_heads=2, d_kv=8, vocab_size=100)
    with pytest.raises(UnsupportedModelError, match="encoder-decoder"):
        find_layer_stack(AutoModel.from_config(config))


def test_shared_blocks_are_unsupported():
    model = make_model("bert")
    model.encoder.layer[3] = model.encoder.layer[1]
    with pytest.raises(UnsupportedModelError):
        glp.drop_layers(model, [0])


def test_gpt2_inverse_layer_idx_scaling():
    model = make_model("gpt2", scale_attn_by_inverse_layer_idx=True)
    with pytest.raises(UnsupportedModelError, match="scale_attn_by_inverse_layer_idx"):
        glp.drop_layers(model, [1])
    glp.drop_layers(model, [3])  # trailing layers keep their positions
    assert num_layers(model) == 3


def test_not_a_transformers_model():
    with pytest.raises(UnsupportedModelError):
        find_layer_stack(torch.nn.Linear(2, 2))


# ---- CLI ---------------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_bert_dir(tmp_path, tiny_tokenizer):
    model = make_model("bert", head=True)
    path = tmp_path / "tiny-bert"
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def test_cli_drop(tiny_bert_dir, tmp_path):
    from typer.testing import CliRunner

    from glp.cli import app

    out = tmp_path / "pruned"
    result = CliRunner().invoke(app, ["drop", str(tiny_bert_dir), "--remove", "3,1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and config["architectures"] == ["BertForSequenceClassification"]
    assert "layers" in result.output and "parameters" in result.output

    original = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir).eval()
    reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    inputs = make_inputs()
    expected = reference_output(original, "bert", [1, 3], inputs)
    torch.testing.assert_close(run(reloaded, "bert", inputs), expected, atol=1e-5, rtol=1e-5)
    n_before = sum(p.numel() for p in original.parameters())
    n_after = sum(p.numel() for p in reloaded.parameters())
    assert f"{n_before:,}" in result.output and f"{n_after:,}" in result.output


def test_cli_bad_index_exits_2_without_traceback(tiny_bert_dir, tmp_path):
    out = tmp_path / "pruned"
    proc = subprocess.run(
        [sys.executable, "-m", "glp.cli", "drop", str(tiny_bert_dir), "--remove", "1,9", "--out", str(out)],
        capture_output=True,
        text=True,
        env=SUBPROCESS_ENV,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "out of range" in lines[0]
    assert not out.exists()


def test_cli_main_non_integer_index(tiny_bert_dir, tmp_path, capsys):
    from glp.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["drop", str(tiny_bert_dir), "--remove", "a,2", "--out", str(tmp_path / "x")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("arch", list(ARCHS))
def test_no_cache_asks_every_decoder_for_no_kv_cache_and_no_encoder(arch):
    """glp's passes need no KV cache: a decoder (with its LM head, a classification head, under PEFT or
    torch.compile's wrapper) gets use_cache=False and then returns no cache; an encoder gets nothing it would refuse."""
    from glp.layers import no_cache

    heads = [make_model(arch, head=True)]
    if arch in DECODERS:
        heads.append(AutoModelForSequenceClassification.from_config(make_config(arch, num_labels=2)).eval())
    for model in heads:
        args = no_cache(model)
        assert args == ({"use_cache": False} if arch in DECODERS else {})
        with torch.no_grad():
            out = model(**make_inputs(), **args)
        assert getattr(out, "past_key_values", None) is None
    if arch == "llama":
        from peft import LoraConfig, get_peft_model

        wrapped = get_peft_model(heads[0], LoraConfig(r=2, target_modules=["q_proj"]))
        assert no_cache(wrapped) == no_cache(torch.compile(heads[0])) == {"use_cache": False}

"""The architecture numbers the memory estimate multiplies: every preset's table entry builds, on the meta
device (no weights, no memory), a transformers model with exactly the parameter count the shape computes;
the packaged GGUF's header gives SmolLM2-135M's shape; a local config.json is read as transformers reads it."""
from __future__ import annotations

import json

import pytest

from components.core.config import ModelConfig
from components.core.errors import UserError
from components.core.presets import MODEL_PRESETS
from components.fleet.model_shapes import SHAPES, ModelShape, model_shape, shape_from_config


def transformers_config(path: str, shape: ModelShape):
    from transformers import LlamaConfig, Qwen3Config

    common = dict(vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
                  num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
                  num_key_value_heads=shape.num_kv_heads, tie_word_embeddings=shape.tied_embeddings)
    if path.startswith("Qwen/"):
        return Qwen3Config(**common, head_dim=shape.head_dim)
    return LlamaConfig(**common)


@pytest.mark.parametrize("path", sorted(SHAPES))
def test_each_preset_shape_counts_the_parameters_transformers_builds(path):
    import torch
    from transformers import AutoModelForCausalLM

    shape = SHAPES[path]
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(transformers_config(path, shape))
    assert sum(p.numel() for p in model.parameters()) == shape.num_params
    linear = sum(m.weight.numel() for name, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and name != "lm_head")
    assert linear == shape.linear_params(), "what 4/8-bit loading quantises"


def test_every_hub_preset_has_a_shape_offline():
    hub = {p["model.path"] for p in MODEL_PRESETS.values() if p.get("model.path")}
    assert hub <= set(SHAPES)


def test_published_sizes():
    billions = {path: round(shape.num_params / 1e9, 2) for path, shape in SHAPES.items()}
    assert billions["HuggingFaceTB/SmolLM2-135M-Instruct"] == 0.13 and billions["Qwen/Qwen3-0.6B"] == 0.60
    assert billions["Qwen/Qwen3-4B"] == 4.02 and billions["Qwen/Qwen3-8B"] == 8.19


def test_the_packaged_gguf_header_is_smollm2_135m():
    assert model_shape(ModelConfig()) == SHAPES["HuggingFaceTB/SmolLM2-135M-Instruct"]


def test_a_gguf_header_is_parsed_once_into_the_cache(tmp_path, monkeypatch):
    from components.backends.models import packaged_gguf_path
    from components.fleet import model_shapes

    monkeypatch.setenv("SLM_CACHE_DIR", str(tmp_path))
    gguf = packaged_gguf_path(ModelConfig())
    model_shapes.shape_from_gguf.cache_clear()
    first = model_shapes.shape_from_gguf(gguf)
    [cached] = (tmp_path / "shapes").glob("*.json")
    assert ModelShape(**json.loads(cached.read_text())) == first
    model_shapes.shape_from_gguf.cache_clear()  # a new process: the cache file answers, the header is not read
    monkeypatch.setattr(model_shapes, "_parse_gguf_header", lambda path: pytest.fail("parsed again"))
    assert model_shapes.shape_from_gguf(gguf) == first
    model_shapes.shape_from_gguf.cache_clear()


def test_a_local_folder_config_json_is_read(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen3", "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "head_dim": 32,
        "tie_word_embeddings": False}))
    shape = model_shape(ModelConfig(path=str(tmp_path), gguf_package="", gguf_file=""))
    assert (shape.kv_dim, shape.q_dim, shape.qk_norm, shape.tied_embeddings) == (64, 128, True, False)


def test_a_config_without_a_needed_field_is_one_line():
    with pytest.raises(UserError, match="model config.json has no hidden_size"):
        shape_from_config({"vocab_size": 10})

"""The memory estimate's terms against what they stand for: the weights term equals the loaded model's
parameter bytes exactly and the KV term the real past_key_values of a forward pass (a tiny model and the
embedded SmolLM2-135M, on CPU); the other terms by their definitions; the seed system's rule beside."""
from __future__ import annotations

import pytest

from components.core.config import ModelConfig
from components.core.overrides import build_config
from components.fleet.memory_estimate import (CUDA_OVERHEAD, GB, NF4_BYTES, eval_memory, finetune_memory,
                                              kv_bytes, lora_params, prompt_tokens, weights_bytes)
from components.fleet.model_shapes import SHAPES, ModelShape

TINY = ModelShape(vocab_size=40, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)


def cache_bytes(model, rows: int, tokens: int) -> int:
    import torch

    ids = torch.randint(0, model.config.vocab_size, (rows, tokens))
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
    return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))


def test_tiny_model_weights_and_kv_terms_are_its_real_tensors():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    assert weights_bytes(TINY, ModelConfig(dtype="float32")) == sum(p.numel() * 4 for p in model.parameters())
    assert kv_bytes(TINY, rows=3, tokens=7, bytes_per_value=4) == cache_bytes(model, 3, 7)


@pytest.mark.slow
def test_smollm2_weights_and_kv_terms_are_the_loaded_models():
    from components.backends.models import load_model

    lm = load_model(ModelConfig(dtype="float32", device="cpu"))
    shape = SHAPES["HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert weights_bytes(shape, ModelConfig(dtype="float32")) == sum(
        p.numel() * p.element_size() for p in lm.model.parameters())
    assert kv_bytes(shape, rows=2, tokens=11, bytes_per_value=4) == cache_bytes(lm.model, 2, 11)


def test_quantised_weights_keep_embeddings_at_the_compute_dtype():
    shape = SHAPES["Qwen/Qwen3-4B"]
    four = weights_bytes(shape, ModelConfig(path="Qwen/Qwen3-4B", load_in_4bit=True))
    assert four == int(shape.linear_params() * NF4_BYTES + shape.other_params() * 2)
    eight = weights_bytes(shape, ModelConfig(path="Qwen/Qwen3-4B", load_in_8bit=True))
    assert four < eight < weights_bytes(shape, ModelConfig(path="Qwen/Qwen3-4B")) == shape.num_params * 2


def test_the_eval_batch_is_bounded_like_the_batch_plan():
    cfg = build_config(["model=qwen_4b", "experiment_mode=oracle_context"])
    shape = SHAPES["Qwen/Qwen3-4B"]
    prompt = prompt_tokens(cfg, "oracle_context")
    assert prompt == 256 + int(400 * 1.5)  # template + question, and the context cut at max_context_words
    rows = 16384 // prompt  # max_batch_tokens caps the padded prompt tokens of a batch
    estimate = eval_memory(cfg)
    assert estimate.terms["kv_cache"] == kv_bytes(shape, rows, prompt + 32, 2)
    assert estimate.terms["cuda_overhead"] == CUDA_OVERHEAD
    uncapped = eval_memory(build_config(["model=qwen_4b", "experiment_mode=oracle_context",
                                         "generation.max_batch_tokens=0"]))
    assert uncapped.terms["kv_cache"] == kv_bytes(shape, 64, prompt + 32, 2)


def test_vllm_takes_its_share_of_the_card_or_its_fixed_kv_cache():
    plain = eval_memory(build_config(["model=qwen_1.7b"]))
    vllm = eval_memory(build_config(["model=qwen_1.7b", "generation.backend=vllm"]))
    assert vllm.total_bytes == plain.total_bytes and vllm.gb == pytest.approx(plain.gb / 0.9)
    half = eval_memory(build_config(["model=qwen_1.7b", "generation.backend=vllm",
                                     "generation.vllm_gpu_memory_utilization=0.5"]))
    assert half.gb == pytest.approx(plain.gb / 0.5)
    fixed = eval_memory(build_config(["model=qwen_1.7b", "generation.backend=vllm", "generation.vllm_kv_cache_gb=4"]))
    assert fixed.terms["kv_cache"] == 4 * GB and fixed.share == 1.0


def test_lora_parameters_per_target_set():
    shape = SHAPES["Qwen/Qwen3-0.6B"]
    q_v = lora_params(shape, "q_proj,v_proj", 8)
    assert q_v == shape.num_layers * 8 * ((1024 + 2048) + (1024 + 1024))
    assert lora_params(shape, "all-linear", 8) > q_v


def test_qlora_is_smaller_than_lora_and_checkpoints_its_activations():
    lora = finetune_memory(build_config(["model=qwen_4b"]))
    qlora = finetune_memory(build_config(["model=qwen_4b", "finetune.method=qlora"]))
    assert qlora.terms["weights"] < lora.terms["weights"] / 3
    assert qlora.terms["activations"] < lora.terms["activations"]
    assert lora.terms["optimizer_states"] == 2 * lora.terms["lora"], "AdamW's two float32 moments"


def test_the_seed_rule_is_kept_as_a_cross_check():
    estimate = eval_memory(build_config(["model=qwen_4b"]))
    assert estimate.seed_rule_gb == pytest.approx(4.022468096 * 2.5 + 2)
    assert 0.5 < estimate.gb / estimate.seed_rule_gb < 1.5
    assert sum(estimate.breakdown().values()) == pytest.approx(estimate.total_bytes / GB, abs=0.01)

"""The eval decode loop (shared-prefix KV reuse, chunked prefill, a batch that shrinks as rows finish)
against transformers' generate: on a tiny random Llama (fast), then on the embedded model (`slow`)."""
from __future__ import annotations

import pytest
import torch

from components.core.config import GenerationConfig
from components.backends.decoding import _warpers, build_prefix_cache, decode
from components.backends.generation import common_prefix_length
from components.core.overrides import build_config
from components.stages.prompts import render_prompt, user_message

EOS, PAD, NEWLINE = 1, 0, 10
PREFIX = [5, 6, 7, 8, 9]  # the head every prompt shares
TINY_PROMPTS = [PREFIX + [11, 12, 13], PREFIX + [14], PREFIX + [15, 16, 17, 18, 19, 20], PREFIX + [21, 22]]


class CharTokenizer:
    """One character per token id (id 10 is a newline); EOS and pad are special."""
    eos_token_id, pad_token_id = EOS, PAD

    def decode(self, ids, skip_special_tokens=True):
        return "".join("\n" if i == NEWLINE else chr(ord("A") + i) for i in ids
                       if not (skip_special_tokens and i in (EOS, PAD)))


@pytest.fixture(scope="module")
def tiny():
    """A random 2-layer Llama in float64 (so padding cannot flip a near-tie) and its tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(config).double().eval(), CharTokenizer()


def reference(model, ids: list[int], max_new_tokens: int) -> list[int]:
    """transformers' greedy generate on one unpadded prompt, stopping at EOS or pad (EOS left out)."""
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                             pad_token_id=PAD, eos_token_id=[EOS, PAD])
    new = out[0, len(ids):].tolist()
    return new[:-1] if new and new[-1] in (EOS, PAD) else new


def test_greedy_batch_matches_generate_with_and_without_the_prefix_and_in_any_chunking(tiny):
    model, tokenizer = tiny
    gen = GenerationConfig(max_new_tokens=10, stop_strings=[])
    expected = [reference(model, p, 10) for p in TINY_PROMPTS]
    assert len({len(e) for e in expected}) > 2, "rows must finish at different steps for the batch to shrink"
    prefix = build_prefix_cache(model, PREFIX, "cpu")
    assert prefix.ids == PREFIX and len(prefix.layers) == 2 and prefix.layers[0][0].shape[0] == 1
    assert decode(model, tokenizer, TINY_PROMPTS, gen, "cpu", prefix=prefix) == expected
    assert decode(model, tokenizer, TINY_PROMPTS, gen, "cpu", prefix=prefix, prefill_chunk_rows=1) == expected
    assert decode(model, tokenizer, TINY_PROMPTS, gen, "cpu", prefill_chunk_rows=3) == expected
    assert build_prefix_cache(model, [], "cpu") is None


def test_the_budget_caps_every_row(tiny):
    model, tokenizer = tiny
    gen = GenerationConfig(max_new_tokens=2, stop_strings=[])
    got = decode(model, tokenizer, TINY_PROMPTS, gen, "cpu")
    assert got == [reference(model, p, 2) for p in TINY_PROMPTS]
    assert all(len(row) <= 2 for row in got)


def test_a_stop_string_ends_its_row_only_keeping_the_stop_token(tiny):
    model, tokenizer = tiny
    full = [reference(model, p, 10) for p in TINY_PROMPTS]
    longest = max(range(len(full)), key=lambda r: len(full[r]))
    stop = tokenizer.decode([full[longest][1]])  # the second token of the longest answer
    gen = GenerationConfig(max_new_tokens=10, stop_strings=[stop])
    got = decode(model, tokenizer, TINY_PROMPTS, gen, "cpu")
    for row, ids in zip(got, full):
        cut = next((i + 1 for i, t in enumerate(ids) if tokenizer.decode([t]) == stop), len(ids))
        assert row == ids[:cut]
    assert len(got[longest]) == 2


def test_prompts_must_start_with_the_prefix(tiny):
    model, tokenizer = tiny
    prefix = build_prefix_cache(model, PREFIX, "cpu")
    with pytest.raises(AssertionError, match="prefix"):
        decode(model, tokenizer, [[5, 6, 30, 8, 9, 11]], GenerationConfig(), "cpu", prefix=prefix)


def test_timings_add_up_prefill_and_decode(tiny):
    model, tokenizer = tiny
    timings = {"prefill_seconds": 1.0}
    decode(model, tokenizer, TINY_PROMPTS, GenerationConfig(max_new_tokens=4, stop_strings=[]), "cpu",
           timings=timings)
    assert timings["prefill_seconds"] > 1.0 and timings["decode_seconds"] > 0  # accumulated, not replaced


def test_sampling_is_seeded_and_top_k_1_is_greedy(tiny):
    model, tokenizer = tiny
    sampled = GenerationConfig(max_new_tokens=6, stop_strings=[], do_sample=True, temperature=1.5, top_p=0.95)
    first = decode(model, tokenizer, TINY_PROMPTS, sampled, "cpu", seed=3)
    assert decode(model, tokenizer, TINY_PROMPTS, sampled, "cpu", seed=3) == first
    assert any(decode(model, tokenizer, TINY_PROMPTS, sampled, "cpu", seed=s) != first for s in range(4, 8))
    only_best = GenerationConfig(max_new_tokens=6, stop_strings=[], do_sample=True, temperature=2.0, top_k=1)
    greedy = GenerationConfig(max_new_tokens=6, stop_strings=[])
    assert decode(model, tokenizer, TINY_PROMPTS, only_best, "cpu", seed=9) == \
        decode(model, tokenizer, TINY_PROMPTS, greedy, "cpu")


def test_warpers_follow_the_sampling_settings():
    assert len(_warpers(GenerationConfig(temperature=0.5, top_k=5, top_p=0.5))) == 0  # greedy: none
    names = [type(w).__name__ for w in _warpers(GenerationConfig(do_sample=True, temperature=0.5, top_k=5, top_p=0.5))]
    assert names == ["TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"]
    names = [type(w).__name__ for w in _warpers(GenerationConfig(do_sample=True, top_k=0, top_p=1.0))]
    assert names == ["TemperatureLogitsWarper"]


# --- the embedded model -------------------------------------------------------------------------------

QUESTIONS = ["What is the capital of France?", "Who wrote Romeo and Juliet?", "How many legs does a spider have?",
             "What is the chemical symbol for gold?", "Which planet is known as the red planet?",
             "who sang i will always love you first"]


@pytest.fixture(scope="module")
def prompts_and_model():
    from components.backends.base import shared_generator

    cfg = build_config([])
    lm = shared_generator(cfg.model).lm
    prompts = [render_prompt(lm.tokenizer, user_message(q, [], cfg.prompt), cfg.prompt, cfg.model) for q in QUESTIONS]
    ids = lm.tokenizer(prompts, add_special_tokens=False)["input_ids"]
    return lm, ids


def _reference(lm, ids: list[int], max_new_tokens: int) -> list[int]:
    """transformers' own greedy generate, one prompt at a time (no padding)."""
    with torch.inference_mode():
        out = lm.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                                top_k=None, pad_token_id=lm.tokenizer.pad_token_id)
    new = out[0, len(ids):].tolist()
    return new[: new.index(lm.tokenizer.eos_token_id)] if lm.tokenizer.eos_token_id in new else new


@pytest.mark.slow
def test_greedy_decode_with_shared_prefix_matches_generate(prompts_and_model):
    lm, ids = prompts_and_model
    gen = GenerationConfig(max_new_tokens=12, stop_strings=[])
    prefix_len = common_prefix_length(ids)
    assert prefix_len > 10  # the chat template and instruction are shared
    prefix = build_prefix_cache(lm.model, ids[0][:prefix_len], lm.device)
    for prompt in ids:
        assert decode(lm.model, lm.tokenizer, [prompt], gen, lm.device, prefix=prefix)[0] == _reference(lm, prompt, 12)
        assert decode(lm.model, lm.tokenizer, [prompt], gen, lm.device)[0] == _reference(lm, prompt, 12)


@pytest.mark.slow
def test_batched_rows_stop_independently_at_newline(prompts_and_model):
    lm, ids = prompts_and_model
    gen = GenerationConfig(max_new_tokens=24, stop_strings=["\n"])
    prefix = build_prefix_cache(lm.model, ids[0][: common_prefix_length(ids)], lm.device)
    timings: dict = {}
    batched = decode(lm.model, lm.tokenizer, ids, gen, lm.device, prefix=prefix, timings=timings)
    assert timings["prefill_seconds"] > 0 and timings["decode_seconds"] > 0
    for row in batched:
        text = lm.tokenizer.decode(row)
        assert 0 < len(row) <= 24
        assert "\n" not in text[:-1]  # a newline can only be the last token: the row stopped there
    # Each row equals its own unpadded greedy continuation, up to where it stopped.
    agree = sum(row == _reference(lm, p, len(row))[: len(row)] for row, p in zip(batched, ids))
    assert agree >= len(ids) - 1  # padding may flip a near-tie in at most one row


@pytest.mark.slow
def test_seeded_sampling_is_reproducible(prompts_and_model):
    lm, ids = prompts_and_model
    gen = GenerationConfig(max_new_tokens=8, do_sample=True, temperature=0.9, top_p=0.9, top_k=50)
    first = decode(lm.model, lm.tokenizer, ids[:3], gen, lm.device, seed=5)
    assert first == decode(lm.model, lm.tokenizer, ids[:3], gen, lm.device, seed=5)

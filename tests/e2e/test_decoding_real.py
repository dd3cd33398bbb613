"""The eval decode loop (shared-prefix KV reuse, shrinking batch) against transformers' generate."""
from __future__ import annotations

import pytest
import torch

from components.core.config import GenerationConfig
from components.backends.decoding import build_prefix_cache, decode
from components.backends.generation import common_prefix_length
from components.core.overrides import build_config
from components.stages.prompts import render_prompt, user_message

QUESTIONS = ["What is the capital of France?", "Who wrote Romeo and Juliet?", "How many legs does a spider have?",
             "What is the chemical symbol for gold?", "Which planet is known as the red planet?",
             "who sang i will always love you first"]


def test_common_prefix_leaves_every_prompt_a_token_of_its_own():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix_length([[7], [7]]) == 0
    assert common_prefix_length([]) == 0


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

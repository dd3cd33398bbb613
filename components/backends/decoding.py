"""A decode loop for short answers: shared-prefix KV reuse and a batch that shrinks as answers finish.

Why not `model.generate`: on CPU most eval time is prefill of a prompt head that every question shares
(chat template + instruction, ~60% of the tokens) and decode steps spent on sequences that already
stopped. Here the shared head is run once and its KV cache is copied into every batch; the batch is
laid out as [shared head | left-padded rest], with position ids from the attention mask so the padding
in the middle is invisible; finished rows are dropped from the batch and cache at once.
Greedy outputs match `model.generate` token for token (tests/components/backends/test_decoding.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import DynamicCache, LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, \
    TopPLogitsWarper

from components.core.config import GenerationConfig
from components.backends.generation import StopChecker
from components.backends.prefill_plan import costs_for, plan_prefill_chunks


@dataclass
class PrefixCache:
    ids: list[int]
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), batch size 1


@torch.inference_mode()
def build_prefix_cache(model, prefix_ids: list[int], device: str) -> PrefixCache | None:
    if not prefix_ids:
        return None
    cache = DynamicCache()
    model(input_ids=torch.tensor([prefix_ids], device=device), past_key_values=cache, use_cache=True)
    return PrefixCache(ids=list(prefix_ids), layers=[(layer.keys, layer.values) for layer in cache.layers])


def _batch_cache(prefix: PrefixCache | None, batch: int) -> DynamicCache:
    cache = DynamicCache()
    for i, (keys, values) in enumerate(prefix.layers if prefix else []):
        cache.update(keys.expand(batch, -1, -1, -1).contiguous(), values.expand(batch, -1, -1, -1).contiguous(), i)
    return cache


def _warpers(gen: GenerationConfig) -> LogitsProcessorList:
    warpers = LogitsProcessorList()
    if gen.do_sample:
        warpers.append(TemperatureLogitsWarper(gen.temperature))
        if gen.top_k:
            warpers.append(TopKLogitsWarper(gen.top_k))
        if gen.top_p < 1.0:
            warpers.append(TopPLogitsWarper(gen.top_p))
    return warpers


def _left_pad(rests: Sequence[Sequence[int]], pad_id: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rests)
    ids = torch.full((len(rests), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rests), width), dtype=torch.long)
    for row, rest in enumerate(rests):
        ids[row, width - len(rest):] = torch.tensor(rest, dtype=torch.long)
        mask[row, width - len(rest):] = 1
    return ids.to(device), mask.to(device)


def _forward(model, input_ids, mask, positions, cache) -> torch.Tensor:
    """Next-token logits (the LM head runs on the last position only)."""
    return model(input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                 use_cache=True, logits_to_keep=1).logits[:, -1, :].float()


def _insert_gap(t: torch.Tensor, at: int, width: int, dim: int) -> torch.Tensor:
    if width == 0:
        return t
    shape = list(t.shape)
    shape[dim] = width
    head, tail = t.narrow(dim, 0, at), t.narrow(dim, at, t.shape[dim] - at)
    return torch.cat([head, t.new_zeros(shape), tail], dim=dim)


def _prefill(model, rests: Sequence[Sequence[int]], prefix: PrefixCache | None, pad_id: int, device: str,
             chunk_rows: int):
    """Prefill in chunks of similar length (the plan sorts a batch by length), so short prompts are not
    padded to the longest one in the batch; the chunks' caches are then joined with masked gaps after the
    shared prefix: row layout [prefix | gap | own tokens]. Chunks are cut by the cost model of
    components.backends.prefill_plan, or every `chunk_rows` rows when that is positive.
    Returns (cache, mask, next positions, logits)."""
    p = len(prefix.ids) if prefix else 0
    chunks = ([range(s, min(s + chunk_rows, len(rests))) for s in range(0, len(rests), chunk_rows)] if chunk_rows > 0
              else plan_prefill_chunks([len(r) for r in rests], p, costs_for(device)))
    parts = []
    for chunk in chunks:
        ids, rest_mask = _left_pad(rests[chunk.start:chunk.stop], pad_id, device)
        mask = torch.cat([torch.ones((len(ids), p), dtype=torch.long, device=device), rest_mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, p:]
        cache = _batch_cache(prefix, len(ids))
        parts.append((cache, mask, _forward(model, ids, mask, positions, cache)))
    width = max(mask.shape[1] for _, mask, _ in parts)
    joined = DynamicCache()
    for layer in range(len(parts[0][0].layers)):
        keys = [_insert_gap(c.layers[layer].keys, p, width - m.shape[1], 2) for c, m, _ in parts]
        values = [_insert_gap(c.layers[layer].values, p, width - m.shape[1], 2) for c, m, _ in parts]
        joined.update(torch.cat(keys), torch.cat(values), layer)
    mask = torch.cat([_insert_gap(m, p, width - m.shape[1], 1) for _, m, _ in parts])
    return joined, mask, mask.sum(-1, keepdim=True), torch.cat([logits for _, _, logits in parts])


@torch.inference_mode()
def decode(model, tokenizer, prompt_ids: Sequence[Sequence[int]], gen: GenerationConfig, device: str,
           prefix: PrefixCache | None = None, seed: int = 0, timings: dict | None = None,
           prefill_chunk_rows: int = 0) -> list[list[int]]:
    """New token ids per prompt (EOS excluded), stopping each row at EOS, a stop string or the budget.
    `timings`, when given, accumulates prefill_seconds and decode_seconds. `prefill_chunk_rows` > 0 fixes
    the prefill chunks at that many rows (tests); 0 lets the cost model cut them."""
    p = len(prefix.ids) if prefix else 0
    assert prefix is None or all(list(ids[:p]) == prefix.ids for ids in prompt_ids), "prompts must start with the prefix"
    clock = time.perf_counter()
    cache, mask, positions, logits = _prefill(model, [ids[p:] for ids in prompt_ids], prefix,
                                              tokenizer.pad_token_id, device, prefill_chunk_rows)
    warpers = _warpers(gen)
    generator = torch.Generator(device=device).manual_seed(seed) if gen.do_sample else None
    checker = StopChecker(tokenizer, gen.stop_strings)
    outputs: list[list[int]] = [[] for _ in prompt_ids]
    active = list(range(len(prompt_ids)))  # original row of each current batch row
    for step in range(gen.max_new_tokens):
        if step:
            logits = _forward(model, next_ids.unsqueeze(1), mask, positions, cache)
            positions = positions + 1
        if timings is not None:
            now = time.perf_counter()
            phase = "decode_seconds" if step else "prefill_seconds"
            timings[phase] = timings.get(phase, 0.0) + now - clock
            clock = now
        if gen.do_sample:
            next_ids = torch.multinomial(torch.softmax(warpers(None, logits), dim=-1), 1, generator=generator)[:, 0]
        else:
            next_ids = logits.argmax(dim=-1)
        keep = []
        for row, token in enumerate(next_ids.tolist()):
            outputs[active[row]].append(token)
            if not checker.finished(outputs[active[row]]):
                keep.append(row)
        if not keep:
            break
        if len(keep) < len(active):  # drop finished rows from the batch and the cache
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            next_ids, mask, positions = next_ids[index], mask[index], positions[index]
            active = [active[row] for row in keep]
        mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=device)], dim=1)
    return [ids[:-1] if ids and ids[-1] in checker.eos else ids for ids in outputs]

"""Batched generation with a batch plan fixed up front.

The plan sorts prompts by token length (longest first, ties by position) and cuts fixed batches, so
padding stays small and a resumed run recomputes exactly the batches an uninterrupted run would: with
left padding a greedy answer can depend on its batch mates, so batches must never be re-formed.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Sequence

from components.config import GenerationConfig


@dataclass
class Generated:
    text: str
    new_tokens: int
    hit_max_new_tokens: bool
    seconds: float  # the batch's wall time divided among its members


def plan_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int = 0) -> list[list[int]]:
    """Indices grouped into batches: length-sorted, at most batch_size each, and, when max_batch_tokens
    is set, at most that many padded prompt tokens per batch (long prompts get smaller batches)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]  # longest first: the first sets the width
        too_many_tokens = max_batch_tokens and (len(current) + 1) * width > max_batch_tokens
        if current and (len(current) == batch_size or too_many_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def plan_fingerprint(prompts: Sequence[str], batches: Sequence[Sequence[int]], gen: GenerationConfig,
                     model_source: str) -> str:
    """Identifies everything a batch's outputs depend on; a resume is only valid under the same one."""
    payload = json.dumps({"prompts": list(prompts), "batches": [list(b) for b in batches],
                          "generation": gen.__dict__, "model": model_source}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> tuple[str, bool]:
    """The answer before the first stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop_strings if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _sampling_kwargs(gen: GenerationConfig) -> dict:
    if not gen.do_sample:
        # Unset sampling knobs a model's generation_config may carry, so greedy is plainly greedy.
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {"do_sample": True, "temperature": gen.temperature, "top_p": gen.top_p, "top_k": gen.top_k or None}


def generate_batch(model, tokenizer, prompts: Sequence[str], gen: GenerationConfig, device: str,
                   seed: int = 0) -> list[Generated]:
    """Generate answers for one batch of rendered prompts (left-padded, stopping at the stop strings)."""
    import torch

    start = time.perf_counter()
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    if gen.do_sample:
        torch.manual_seed(seed)  # per batch, so a resumed run samples what the first run would have
    stop = [s for s in gen.stop_strings if s]
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=gen.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             stop_strings=stop or None, tokenizer=tokenizer if stop else None,
                             **_sampling_kwargs(gen))
    new_tokens = out[:, enc["input_ids"].shape[1]:]
    seconds = (time.perf_counter() - start) / len(prompts)
    results = []
    for row in new_tokens.tolist():
        ids = [t for t in row if t != tokenizer.pad_token_id]
        if tokenizer.eos_token_id in ids:
            ids = ids[: ids.index(tokenizer.eos_token_id)]
        text, stopped = cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), stop)
        hit_max = not stopped and len(ids) >= gen.max_new_tokens
        results.append(Generated(text=text.strip(), new_tokens=len(ids), hit_max_new_tokens=hit_max,
                                 seconds=seconds))
    return results

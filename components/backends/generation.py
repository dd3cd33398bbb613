"""What every backend shares: the batch plan fixed up front, the stop rule, and how new token ids
become an answer.

The plan sorts prompts by token length (longest first, ties by position) and cuts fixed batches, so
padding stays small and a resumed run recomputes exactly the batches an uninterrupted run would: with
left padding a greedy answer can depend on its batch mates, so batches must never be re-formed.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

from components.core.config import GenerationConfig


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
                     model_source: str, code: str, scored_against: Sequence = ()) -> str:
    """Identifies everything a finished batch's rows depend on (prompts, plan, decoding, model, `code`: the
    version of the code that decodes, and what they were scored against); a resume is only valid under the
    same one."""
    payload = json.dumps({"prompts": list(prompts), "batches": [list(b) for b in batches],
                          "generation": gen.__dict__, "model": model_source, "code": code,
                          "scored_against": list(scored_against)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> tuple[str, bool]:
    """The answer before the first stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop_strings if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def common_prefix_length(token_lists: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix shared by every prompt, leaving each at least one token of its own."""
    if not token_lists:
        return 0
    first, shortest = token_lists[0], min(len(t) for t in token_lists)
    n = 0
    while n < shortest - 1 and all(t[n] == first[n] for t in token_lists):
        n += 1
    return n


def shared_prefix(prompt_ids: Sequence[Sequence[int]]) -> list[int]:
    """The head every prompt shares (chat template + instruction), computed once per run by a backend."""
    return list(prompt_ids[0][: common_prefix_length(prompt_ids)]) if prompt_ids else []


def all_start_with(prompt_ids: Sequence[Sequence[int]], prefix: Sequence[int]) -> bool:
    """Whether a batch can reuse `prefix`: every prompt starts with it."""
    prefix = list(prefix)
    return all(list(ids[: len(prefix)]) == prefix for ids in prompt_ids)


class StopChecker:
    """Decides when a row's answer has ended: EOS, or a stop string in its decoded tail."""

    def __init__(self, tokenizer, stop_strings: Sequence[str]):
        self.tokenizer = tokenizer
        self.stops = [s for s in stop_strings if s]
        self.eos = {t for t in (tokenizer.eos_token_id, getattr(tokenizer, "pad_token_id", None)) if t is not None}

    def finished(self, ids: list[int]) -> bool:
        if ids[-1] in self.eos:
            return True
        if not self.stops:
            return False
        tail = self.tokenizer.decode(ids[-4:], skip_special_tokens=True)  # stops span at most a few tokens
        return any(s in tail for s in self.stops)


def to_answers(tokenizer, outputs: Sequence[Sequence[int]], gen: GenerationConfig, seconds: float) -> list[Generated]:
    """Each row's new token ids as an answer: decoded, cut at the first stop string, stripped. Every backend
    ends here, so the stop rule and `hit_max_new_tokens` mean the same whichever decoded."""
    stops = [s for s in gen.stop_strings if s]
    results = []
    for ids in outputs:
        text, stopped = cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), stops)
        hit_max = not stopped and len(ids) >= gen.max_new_tokens
        results.append(Generated(text=text.strip(), new_tokens=len(ids), hit_max_new_tokens=hit_max,
                                 seconds=seconds))
    return results

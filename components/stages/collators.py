"""Training batches for the finetune stage. `PaddingCollator` right-pads to the longest example;
`PackingCollator` builds each batch the cheaper of padded or packed (the shared prompt prefix once,
examples never attending to each other) and asks the model for logits only where the loss needs them."""
from __future__ import annotations

from typing import Sequence

import torch

IGNORE_INDEX = -100  # the label value torch's cross-entropy skips


class PaddingCollator:
    """Pads a batch to its longest example on the right: pad id in inputs, IGNORE_INDEX in labels, 0 in
    the attention mask. Labels come from the examples, never from `input_ids != pad` (pad is EOS here)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 1):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def width(self, features: Sequence[dict]) -> int:
        """The padded batch's row length: the longest example rounded up to pad_to_multiple_of."""
        longest = max(len(f["input_ids"]) for f in features)
        return -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        width = self.width(features)
        batch = {"input_ids": [], "attention_mask": [], "labels": []}
        for f in features:
            pad = width - len(f["input_ids"])
            batch["input_ids"].append(list(f["input_ids"]) + [self.pad_token_id] * pad)
            batch["attention_mask"].append([1] * len(f["input_ids"]) + [0] * pad)
            batch["labels"].append(list(f["labels"]) + [IGNORE_INDEX] * pad)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


EXAMPLE_TOKENS = "num_example_tokens"  # batch key: the batch's example tokens, popped before the model sees it


class PackingCollator:
    """Builds each training batch the cheaper of two ways; both give every example exactly the loss (and
    gradient) it would get alone, and count its tokens under EXAMPLE_TOKENS.

    packed (one row, only with SDPA attention): the longest prompt prefix all examples of the batch share
    (chat template + instruction: 35 of a closed-book NQ example's ~57 tokens) appears once, followed by
    each example's remaining tokens. Position ids restart per example (the prefix holds 0..P-1, every
    example continues at P) and a 4D boolean mask lets a token see the shared prefix and the earlier tokens
    of its own example only, never another example's. The prefix's hidden states depend on the prefix
    alone (causal attention), so computing them once is exact; it stops before any supervised position.
    (The one difference in training: LoRA dropout draws one mask for the shared prefix, not one per
    example; the loss curve stays the same, see bench/bench_finetune.py.)
    padded: right-padded to the longest example, as `PaddingCollator` does.
    A packed row attends densely over all its T tokens, so it is used only when its estimated cost
    (tokens + pair_cost * T^2 attention pairs) is below the padded batch's (B*L + pair_cost * B*L^2).

    Both layouts ask the model for logits only where the next token is supervised (`logits_to_keep`, with
    those targets in `shift_labels`): the 49k-vocabulary LM head and the cross-entropy skip the prompt.
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 1, pack: bool = True,
                 pair_cost: float = 1e-3):
        self.padding = PaddingCollator(pad_token_id, pad_to_multiple_of)
        self.pack = pack
        self.pair_cost = pair_cost

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor | int]:
        lengths = [len(f["input_ids"]) for f in features]
        prefix = shared_prefix_length(features)
        packed_tokens = prefix + sum(n - prefix for n in lengths)
        width = self.padding.width(features)
        packed_cost = packed_tokens + self.pair_cost * packed_tokens ** 2
        padded_cost = len(features) * (width + self.pair_cost * width ** 2)
        if self.pack and len(features) > 1 and packed_cost < padded_cost:
            batch = self._packed(features, prefix)
        else:
            batch = self.padding(features)
            targets = torch.nn.functional.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE_INDEX)
            keep = targets != IGNORE_INDEX
            # `shift_labels` tells the loss these targets are already aligned with the kept logits; `labels`
            # (the same tensor) makes the model compute a loss and the Trainer count its supervised tokens.
            batch.update(logits_to_keep=keep, shift_labels=targets[keep][None], labels=targets[keep][None])
        batch[EXAMPLE_TOKENS] = sum(lengths)
        return batch

    @staticmethod
    def _packed(features: Sequence[dict], prefix: int) -> dict[str, torch.Tensor]:
        first = features[0]["input_ids"]
        tokens, positions, segments = list(first[:prefix]), list(range(prefix)), [0] * prefix
        targets = [IGNORE_INDEX] * prefix  # the prefix never precedes a supervised token
        for k, f in enumerate(features, 1):
            n = len(f["input_ids"])
            tokens += f["input_ids"][prefix:]
            positions += range(prefix, n)
            segments += [k] * (n - prefix)
            targets += list(f["labels"][prefix + 1:]) + [IGNORE_INDEX]  # the label of the next token
        seg, pos, tgt = torch.tensor(segments), torch.tensor(positions), torch.tensor([targets])
        visible = ((seg[None, :] == seg[:, None]) | (seg[None, :] == 0)) & (pos[None, :] <= pos[:, None])
        keep = tgt != IGNORE_INDEX
        return {"input_ids": torch.tensor([tokens]), "position_ids": pos[None], "attention_mask": visible[None, None],
                "logits_to_keep": keep, "shift_labels": tgt[keep][None], "labels": tgt[keep][None]}


def shared_prefix_length(features: Sequence[dict]) -> int:
    """Tokens every example starts with, stopping before the position that predicts any example's first
    supervised token (that position's hidden state must be the example's own) and before its last token."""
    ids = [f["input_ids"] for f in features]
    if len(ids) < 2:
        return 0
    limit = min(len(x) - 1 for x in ids)
    for f in features:
        first_label = next((i for i, v in enumerate(f["labels"]) if v != IGNORE_INDEX), len(f["labels"]))
        limit = min(limit, first_label - 1)
    n = 0
    while n < limit and all(x[n] == ids[0][n] for x in ids):
        n += 1
    return n


MASKED_ATTENTION_OVERHEAD = 3.0  # masked SDPA vs matmul FLOP rate (CPU); see attention_pair_cost


def attention_pair_cost(model) -> float:
    """Cost of one (query, key) attention pair over all layers relative to one token through the
    non-embedding weights: FLOPs 4 * heads * head_dim per pair and layer vs 2 per weight, times
    MASKED_ATTENTION_OVERHEAD because a masked SDPA runs well below matmul speed. (Measured with
    SmolLM2-135M on the 2-core CPU: oracle_context batches of ~1,900 tokens took 16.5 s a step packed vs
    14.6 s padded, though packing's FLOP estimate was lower; closed-book batches run ~2x faster packed.)"""
    config = model.config
    try:
        heads, layers = config.num_attention_heads, config.num_hidden_layers
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        flops = 2 * heads * head_dim * layers / model.num_parameters(exclude_embeddings=True)
    except (AttributeError, TypeError, ZeroDivisionError):
        flops = 3e-4  # SmolLM2-135M's figure
    return MASKED_ATTENTION_OVERHEAD * flops

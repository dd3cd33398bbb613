"""How the hf decoder cuts a batch's prompts into prefill chunks: the cheapest split by a cost model.

Each chunk is one forward pass over left-padded rows, so its cost is its padded tokens, not its real ones.
Fixed chunks of 16 rows padded oracle-context prompts (passages of very different lengths) by 45%, and
left closed-book chunks too small for the matmuls to run at speed (16 rows x 15 tokens). Rows arrive
length-sorted (components.backends.generation.plan_batches), so the best split into runs of consecutive
rows is a small dynamic program over a cost in "token at full matmul speed" units:

    padded tokens x (matmul slowdown at that many rows + attention per position of key length) + per-pass cost

Measured on the 2-core development CPU, bf16 and float32 alike (2026-12-06): a linear layer of the
135M model runs at its large-matmul speed from ~512 rows and about half of it at 64; attention over
~220 positions costs ~30% of the linear layers per token; a forward pass has a fixed cost of a few dozen
tokens. On CUDA a pass's fixed cost (kernel launches) dominates, so there the plan takes few, large chunks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

MAX_CHUNK_TOKENS = 4096  # padded tokens per pass, unless one row is longer: bounds activation memory


@dataclass(frozen=True)
class PrefillCosts:
    full_speed_rows: int  # matmul rows from which a linear layer runs at its large-matmul speed
    attention_per_key: float  # attention's cost per key position, relative to one token's linear layers
    per_pass: float  # fixed cost of a forward pass, in tokens

    def chunk(self, rows: int, width: int, prefix: int) -> float:
        tokens = rows * width
        slowdown = 1.0 + max(0, self.full_speed_rows - tokens) / self.full_speed_rows
        return tokens * (slowdown + self.attention_per_key * (prefix + width)) + self.per_pass


CPU_COSTS = PrefillCosts(full_speed_rows=512, attention_per_key=1 / 700, per_pass=32.0)
CUDA_COSTS = PrefillCosts(full_speed_rows=2048, attention_per_key=1 / 4000, per_pass=4096.0)


def costs_for(device: str) -> PrefillCosts:
    return CUDA_COSTS if str(device).startswith("cuda") else CPU_COSTS


def plan_prefill_chunks(lengths: Sequence[int], prefix: int, costs: PrefillCosts,
                        max_tokens: int = MAX_CHUNK_TOKENS) -> list[range]:
    """Consecutive row ranges covering `lengths` (tokens after the shared prefix, longest first) at the
    least modelled cost; a chunk holds at most `max_tokens` padded tokens unless it is a single row."""
    n = len(lengths)
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest plan for rows [0, j)
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        width = 0
        for i in range(j - 1, -1, -1):
            width = max(width, lengths[i])
            if j - i > 1 and (j - i) * width > max_tokens:
                break  # longer runs only add rows
            cost = best[i] + costs.chunk(j - i, width, prefix)
            if cost < best[j]:
                best[j], cut[j] = cost, i
    chunks: list[range] = []
    j = n
    while j > 0:
        chunks.append(range(cut[j], j))
        j = cut[j]
    return chunks[::-1]

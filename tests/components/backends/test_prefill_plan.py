"""The prefill chunk plan: a cover of the rows by consecutive runs, the cheapest under its cost model (checked
against every possible split), within the token cap, and the shapes it gives real workloads."""
from __future__ import annotations

import itertools
import random

import pytest

from components.backends.prefill_plan import CPU_COSTS, CUDA_COSTS, MAX_CHUNK_TOKENS, PrefillCosts, costs_for, \
    plan_prefill_chunks


def _cost(lengths, chunks, prefix, costs):
    return sum(costs.chunk(len(c), max(lengths[c.start:c.stop]), prefix) for c in chunks)


def _all_splits(n):
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0] + [i + 1 for i, cut in enumerate(cuts) if cut] + [n]
        yield [range(a, b) for a, b in zip(bounds, bounds[1:])]


def _valid(lengths, chunks, max_tokens):
    return all(len(c) == 1 or len(c) * max(lengths[c.start:c.stop]) <= max_tokens for c in chunks)


@pytest.mark.parametrize("seed", range(12))
def test_the_plan_is_the_cheapest_valid_split(seed):
    rng = random.Random(seed)
    lengths = sorted((rng.randint(1, 400) for _ in range(rng.randint(1, 10))), reverse=True)
    prefix, max_tokens = rng.choice([0, 40]), rng.choice([600, MAX_CHUNK_TOKENS])
    costs = rng.choice([CPU_COSTS, CUDA_COSTS])
    chunks = plan_prefill_chunks(lengths, prefix, costs, max_tokens)
    assert [i for c in chunks for i in c] == list(range(len(lengths))), "every row once, in order"
    assert _valid(lengths, chunks, max_tokens)
    best = min(_cost(lengths, s, prefix, costs) for s in _all_splits(len(lengths)) if _valid(lengths, s, max_tokens))
    assert _cost(lengths, chunks, prefix, costs) == pytest.approx(best)


def test_oracle_lengths_are_split_where_lengths_jump_and_closed_book_stays_whole():
    # the first oracle_context batch of the bench (48 NQ questions with their gold passage), tokens past the
    # shared head; fixed chunks of 16 rows padded these by 45%
    oracle = [360, 335, 225, 201, 191, 184, 181, 177, 176, 171, 171, 170, 169, 166, 164, 163, 162, 161, 159, 159,
              151, 143, 142, 141, 139, 137, 135, 134, 133, 129, 125, 124, 120, 115, 114, 114, 110, 105, 88, 80]
    chunks = plan_prefill_chunks(oracle, 40, CPU_COSTS)
    padded = sum(len(c) * oracle[c.start] for c in chunks)
    assert padded <= 1.1 * sum(oracle)
    assert chunks[0] == range(0, 2), "the two long outliers are not padded into the rest"
    rng = random.Random(0)
    closed_book = sorted((rng.randint(9, 22) for _ in range(64)), reverse=True)
    assert len(plan_prefill_chunks(closed_book, 40, CPU_COSTS)) <= 2, "short prompts: few, large chunks"


def test_a_row_longer_than_the_cap_is_a_chunk_of_its_own_and_cuda_takes_fewer_chunks():
    assert plan_prefill_chunks([MAX_CHUNK_TOKENS + 5, 10], 0, CPU_COSTS) == [range(0, 1), range(1, 2)]
    rng = random.Random(1)
    lengths = sorted((rng.randint(50, 300) for _ in range(64)), reverse=True)
    cpu, cuda = plan_prefill_chunks(lengths, 40, CPU_COSTS), plan_prefill_chunks(lengths, 40, CUDA_COSTS)
    assert len(cuda) < len(cpu)
    assert all(len(c) * lengths[c.start] <= MAX_CHUNK_TOKENS for c in cuda)
    assert costs_for("cuda") is CUDA_COSTS and costs_for("cuda:1") is CUDA_COSTS and costs_for("cpu") is CPU_COSTS
    assert plan_prefill_chunks([], 0, CPU_COSTS) == []


def test_a_chunk_below_full_speed_rows_costs_more_per_token():
    costs = PrefillCosts(full_speed_rows=512, attention_per_key=0.0, per_pass=0.0)
    assert costs.chunk(1, 512, 0) == 512
    assert costs.chunk(1, 64, 0) / 64 > 1.8

"""The batch plan (fixed up front, so a resume recomputes exactly the batches of an uninterrupted run),
its fingerprint, the stop-string cut and the shared prompt prefix."""
from __future__ import annotations

import random

import pytest

from components.core.config import GenerationConfig
from components.backends.generation import common_prefix_length, cut_at_stop, plan_batches, plan_fingerprint


def _check_plan(lengths, batches, batch_size, max_batch_tokens=0):
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths))), "every index exactly once"
    # longest first overall, ties by index: the concatenation is the (-length, index) order
    assert flat == sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    for b in batches:
        assert 1 <= len(b) <= batch_size
        if max_batch_tokens and len(b) > 1:
            assert len(b) * max(lengths[i] for i in b) <= max_batch_tokens


def test_plan_is_length_sorted_longest_first_ties_by_index():
    lengths = [3, 5, 5, 1, 9, 5]
    assert plan_batches(lengths, 2) == [[4, 1], [2, 5], [0, 3]]
    assert plan_batches(lengths, 4) == [[4, 1, 2, 5], [0, 3]]
    assert plan_batches(lengths, 100) == [[4, 1, 2, 5, 0, 3]]
    assert plan_batches(lengths, 1) == [[4], [1], [2], [5], [0], [3]]


def test_plan_of_nothing():
    assert plan_batches([], 4) == []


@pytest.mark.parametrize("seed", range(20))
def test_plan_properties_random(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 60) for _ in range(rng.randint(1, 80))]
    batch_size = rng.randint(1, 16)
    max_tokens = rng.choice([0, 0, 50, 120, 400])
    batches = plan_batches(lengths, batch_size, max_tokens)
    _check_plan(lengths, batches, batch_size, max_tokens)
    # deterministic: same input, same plan; and independent of the list object
    assert plan_batches(list(lengths), batch_size, max_tokens) == batches
    if not max_tokens:  # without a token budget, batches are full except the last
        assert all(len(b) == batch_size for b in batches[:-1])


def test_plan_respects_max_batch_tokens():
    lengths = [10, 10, 10, 2, 2]
    # width 10: two fit in 25 tokens, a third would be 30; the next batch is again width 10
    assert plan_batches(lengths, 8, max_batch_tokens=25) == [[0, 1], [2, 3], [4]]
    # a single prompt longer than the budget still gets a batch of its own, never dropped
    assert plan_batches([50, 3, 3], 8, max_batch_tokens=20) == [[0], [1, 2]]
    # batch_size still bounds a batch the token budget would allow
    assert plan_batches([1] * 5, 2, max_batch_tokens=1000) == [[0, 1], [2, 3], [4]]


def _fp(prompts=("a", "bb"), batches=((1, 0),), gen=None, source="m", code="c0de"):
    return plan_fingerprint(list(prompts), [list(b) for b in batches], gen or GenerationConfig(), source, code)


def test_fingerprint_is_stable():
    assert _fp() == _fp()
    assert _fp(gen=GenerationConfig()) == _fp(gen=GenerationConfig(max_new_tokens=32))
    assert len(_fp()) == 64


@pytest.mark.parametrize("changed", [
    dict(prompts=("a", "bc")),
    dict(prompts=("bb", "a")),
    dict(batches=((0, 1),)),
    dict(batches=((1,), (0,))),
    dict(gen=GenerationConfig(max_new_tokens=16)),
    dict(gen=GenerationConfig(stop_strings=[])),
    dict(gen=GenerationConfig(batch_size=8)),
    dict(gen=GenerationConfig(do_sample=True, seed=1)),
    dict(gen=GenerationConfig(do_sample=True, seed=2)),
    dict(source="other-model"),
    dict(code="a-later-checkout"),  # a partial log from before a code change is not resumed into
])
def test_fingerprint_changes_with_what_outputs_depend_on(changed):
    assert _fp(**changed) != _fp()


@pytest.mark.parametrize("text,stops,expected", [
    ("Paris\nThe capital", ["\n"], ("Paris", True)),
    ("Paris. More\ntext", ["\n", "."], ("Paris", True)),  # the earliest stop wins, whatever its order
    ("Paris. More\ntext", [".", "\n"], ("Paris", True)),
    ("Paris", ["\n"], ("Paris", False)),
    ("\nParis", ["\n"], ("", True)),
    ("Paris\n", ["", "\n"], ("Paris", True)),  # empty stop strings are ignored
    ("Paris", [""], ("Paris", False)),
    ("Paris", [], ("Paris", False)),
    ("Q: x A: y", ["A:"], ("Q: x ", True)),
])
def test_cut_at_stop(text, stops, expected):
    assert cut_at_stop(text, stops) == expected


def test_common_prefix_leaves_every_prompt_a_token_of_its_own():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix_length([[7], [7]]) == 0
    assert common_prefix_length([]) == 0

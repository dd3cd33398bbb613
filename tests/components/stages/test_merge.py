"""Sharded eval: shards run whole batches of the one batch plan, and their merge equals the unsharded
eval (predictions byte for byte, every metric and CI); shards that do not belong together are refused.
With the real model: tests/e2e/test_grid_real.py."""
from __future__ import annotations

import pytest

from components.core.errors import UserError
from components.core.outputs import PREDICTIONS_FILE
from components.stages.eval import run_eval
from components.core.fileio import read_json, write_json
from components.stages.merge import merge_shards
from components.core.outputs import RESULTS_FILE
from components.core.overrides import build_config
from helpers import FakeGenerator

ARGS = ["generation.batch_size=4", "experiment.shards=3", "experiment.bootstrap_samples=200"]
COMPARED = ("token_recall", "legacy_token_recall", "token_f1", "exact_match", "substring_match", "num_examples",
            "token_recall_ci_low", "token_recall_ci_high", "token_f1_ci_low", "token_f1_ci_high",
            "exact_match_ci_low", "exact_match_ci_high", "substring_match_ci_low", "substring_match_ci_high",
            "share_hit_max_new_tokens", "mode", "model", "num_batches")


@pytest.fixture(scope="module")
def runs(demo_ingest_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    whole = run_eval(build_config(ARGS), "oracle_context", demo_ingest_dir, None, root / "whole",
                     generator=FakeGenerator())
    shards = []
    for i in range(3):
        generator = FakeGenerator()
        results = run_eval(build_config(ARGS + [f"experiment.shard={i}"]), "oracle_context", demo_ingest_dir, None,
                           root / f"shard{i}", generator=generator)
        shards.append((results, generator))
    merged = merge_shards([root / f"shard{i}" for i in range(3)], root / "merged")
    return root, whole, shards, merged


def test_shards_run_disjoint_whole_batches_of_one_plan(runs):
    _, whole, shards, _ = runs
    assert whole["num_batches"] == 11  # 42 questions, 4 a batch
    assert [len(g.calls) for _, g in shards] == [4, 4, 3]  # batch b goes to shard b % 3
    assert sum(r["num_examples"] for r, _ in shards) == 42
    assert len({r["plan"] for r, _ in shards}) == 1


def test_merged_equals_unsharded(runs):
    root, whole, _, merged = runs
    assert (root / "merged" / PREDICTIONS_FILE).read_bytes() == (root / "whole" / PREDICTIONS_FILE).read_bytes()
    for key in COMPARED:
        assert merged[key] == whole[key], key
    assert read_json(root / "merged" / RESULTS_FILE)["shards"] == 3


def test_shards_that_do_not_belong_together_are_refused(runs, tmp_path):
    root = runs[0]
    with pytest.raises(UserError, match=r"do not cover 0..2"):
        merge_shards([root / "shard0", root / "shard1"], tmp_path / "a")
    with pytest.raises(UserError, match="not an eval shard"):
        merge_shards([root / "whole"], tmp_path / "b")
    forged = tmp_path / "forged"
    forged.mkdir()
    for name in ("predictions.jsonl", "memory_usage.json"):
        (forged / name).write_bytes((root / "shard2" / name).read_bytes())
    write_json(forged / RESULTS_FILE, {**read_json(root / "shard2" / RESULTS_FILE), "plan": "another plan"})
    with pytest.raises(UserError, match="differs from shard 0 in plan"):
        merge_shards([root / "shard0", root / "shard1", forged], tmp_path / "c")
    assert not (tmp_path / "c" / RESULTS_FILE).exists()


@pytest.mark.parametrize("key, value", [("backend", "llama_cpp"), ("backend_version", "fake 2.0")])
def test_shards_answered_by_another_backend_are_refused(runs, tmp_path, key, value):
    """With generation.backend=auto, agents of different kinds can resolve the same step differently."""
    root = runs[0]
    other = tmp_path / "other"
    other.mkdir()
    for name in ("predictions.jsonl", "memory_usage.json"):
        (other / name).write_bytes((root / "shard2" / name).read_bytes())
    write_json(other / RESULTS_FILE, {**read_json(root / "shard2" / RESULTS_FILE), key: value})
    with pytest.raises(UserError, match=f"differs from shard 0 in {key}"):
        merge_shards([root / "shard0", root / "shard1", other], tmp_path / "out")
    merged = merge_shards([root / "shard0", root / "shard1", root / "shard2"], tmp_path / "ok")
    assert (merged["backend"], merged["backend_version"]) == ("fake", "fake 1.0")

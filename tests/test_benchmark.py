"""Benchmark: metric definitions on hand-computed cases, bootstrap CIs, and a real base-vs-adapter run."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from components.benchmark import (BENCHMARK_FILE, PLOT_FILES, PREDICTION_FILES, REPORT_FILE, RESULTS_FILE,
                                  aggregate, bootstrap_ci, generation_config, paired_deltas, run_benchmark,
                                  score_row)
from components.config import ModelConfig
from components.errors import UserError
from components.generation import Generated
from components.metrics import key_info, length_ratio
from components.overrides import build_config
from components.schema import Question

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Peru", "Lima")]


def write_ingest_dir(path: Path) -> Path:
    """A tiny ingest output: the last three questions are the held-out (test) split."""
    path.mkdir(parents=True)
    questions = [{"id": f"q{i}", "question": f"What is the capital of {country}?", "answers": [capital],
                  "gold_passage_ids": [f"p{i}"]} for i, (country, capital) in enumerate(CAPITALS)]
    passages = [{"id": f"p{i}", "title": capital, "text": f"{capital} is the capital of {country}."}
                for i, (country, capital) in enumerate(CAPITALS)]
    files = {"questions.jsonl": questions, "passages.jsonl": passages, "train.jsonl": questions[:2],
             "test.jsonl": questions[2:]}
    for name, rows in files.items():
        (path / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_key_info_leaves_out_a_part_the_reference_lacks():
    # No numbers in the reference: the numbers part is None, key_info is the terms part alone (not the
    # average with a free 1.0).
    assert key_info("It is Paris, I think", "Paris") == {"key_info": 1.0, "key_info_numbers": None,
                                                         "key_info_terms": 1.0}
    assert key_info("Lyon", "the city of Paris") == {"key_info": 0.0, "key_info_numbers": None,
                                                     "key_info_terms": 0.0}
    # Both parts: numbers {1889, 1900} half found, terms {built, 1889 excluded} -> terms {built}.
    assert key_info("built in 1889", "built 1889 and 1900") == {"key_info": 0.75, "key_info_numbers": 0.5,
                                                                "key_info_terms": 1.0}
    # Only stopwords and numbers: the terms part is None.
    assert key_info("in 1969", "in 1969") == {"key_info": 1.0, "key_info_numbers": 1.0, "key_info_terms": None}
    assert key_info("yes", "the of")["key_info"] is None


def test_length_ratio_is_symmetric_and_zero_without_reference():
    assert length_ratio("a b", "a b c d") == 0.5
    assert length_ratio("a b c d", "a b") == 0.5
    assert length_ratio("anything", "") == 0.0
    assert length_ratio("", "Paris") == 0.0


def test_score_row_uses_the_first_gold_as_reference_and_all_golds_for_f1():
    q = Question("q1", "Who wrote Hamlet?", ["William Shakespeare", "Shakespeare"])
    row = score_row(q, Generated(text="Shakespeare", new_tokens=4, hit_max_new_tokens=False, seconds=0.5))
    assert row["reference"] == "William Shakespeare"
    assert row["token_f1"] == 1.0 and row["exact_match"] == 1.0  # max over golds: the second matches
    assert row["key_info"] == 0.5 and row["key_info_numbers"] is None  # terms {william, shakespeare}
    assert row["length_ratio"] == 0.5 and row["pred_ref_word_ratio"] == 0.5
    assert row["tokens_per_second"] == 8.0 and row["hit_max_new_tokens"] == 0.0


def test_bootstrap_ci_contains_the_mean_and_is_reproducible():
    values = [0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 0.25, 0.75]
    low, high = bootstrap_ci(values, samples=500)
    assert low <= sum(values) / len(values) <= high and low < high
    assert bootstrap_ci(values, samples=500) == (low, high)
    assert bootstrap_ci([0.4] * 5, samples=200) == pytest.approx((0.4, 0.4))
    assert bootstrap_ci(values, samples=0) is None and bootstrap_ci([], samples=100) is None


def _row(f1: float, numbers: float | None) -> dict:
    return {"token_f1": f1, "exact_match": f1, "key_info": f1, "key_info_numbers": numbers,
            "key_info_terms": f1, "length_ratio": 1.0, "pred_ref_word_ratio": 1.0, "hit_max_new_tokens": 0.0,
            "seconds": 0.1, "tokens_per_second": 10.0}


def test_aggregate_skips_missing_parts_and_deltas_are_paired():
    base = [_row(0.0, None), _row(0.5, 1.0), _row(1.0, 0.0)]
    tuned = [_row(1.0, None), _row(0.5, 1.0), _row(1.0, 1.0)]
    agg = aggregate(base, samples=200)
    assert agg["token_f1"]["mean"] == 0.5 and agg["token_f1"]["n"] == 3
    assert agg["key_info_numbers"]["mean"] == 0.5 and agg["key_info_numbers"]["n"] == 2
    assert agg["token_f1"]["ci_low"] <= 0.5 <= agg["token_f1"]["ci_high"]
    deltas = paired_deltas(base, tuned, samples=200)
    assert deltas["token_f1"]["mean"] == pytest.approx(1 / 3, abs=1e-6)
    assert deltas["key_info_numbers"]["mean"] == 0.5 and deltas["key_info_numbers"]["n"] == 2
    assert deltas["length_ratio"]["mean"] == 0.0 and deltas["length_ratio"]["ci_low"] == 0.0


def test_generation_config_follows_the_benchmark_section():
    greedy = generation_config(build_config(["benchmark.max_new_tokens=12"]))
    assert (greedy.do_sample, greedy.max_new_tokens) == (False, 12)
    sampled = generation_config(build_config(["benchmark.do_sample=true", "benchmark.temperature=0.7",
                                              "benchmark.top_k=40", "benchmark.seed=3"]))
    assert (sampled.do_sample, sampled.temperature, sampled.top_k, sampled.seed) == (True, 0.7, 40, 3)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    """A real adapter without training: LoRA with random (non-zero) B matrices changes the outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    from components.models import load_model

    set_seed(0)
    model = get_peft_model(load_model(ModelConfig()).model,
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                      init_lora_weights=False, task_type="CAUSAL_LM"))
    finetune_dir = tmp_path_factory.mktemp("finetune")
    model.save_pretrained(finetune_dir / "adapter")
    return finetune_dir


def test_benchmark_compares_base_and_adapter_and_writes_a_report(adapter_dir, tmp_path):
    ingest_dir = write_ingest_dir(tmp_path / "ingest")
    cfg = build_config(["benchmark.max_samples=3", "benchmark.max_new_tokens=8", "benchmark.bootstrap_samples=200"])
    out = tmp_path / "bench"
    results = run_benchmark(cfg, ingest_dir, adapter_dir, out)

    assert json.loads((out / RESULTS_FILE).read_text()) == json.loads((out / BENCHMARK_FILE).read_text())
    base, tuned = ([json.loads(line) for line in (out / PREDICTION_FILES[m]).read_text().splitlines()]
                   for m in ("base", "tuned"))
    assert [r["id"] for r in base] == [r["id"] for r in tuned] == ["q2", "q3", "q4"]  # test split, first 3
    assert [r["prediction"] for r in base] != [r["prediction"] for r in tuned]  # the adapter is applied
    assert results["num_examples"] == 3
    for which, rows in (("base", base), ("tuned", tuned)):
        mean_f1 = sum(r["token_f1"] for r in rows) / 3
        assert results[f"token_f1_{which}"] == pytest.approx(mean_f1, abs=1e-6)
        s = results["summary"][which]["token_f1"]
        assert s["ci_low"] <= s["mean"] <= s["ci_high"]
        assert all(r["key_info_numbers"] is None for r in rows)  # capitals have no numbers
        assert results[f"key_info_{which}"] == pytest.approx(results[f"key_info_terms_{which}"])
    assert results["token_f1_delta"] == pytest.approx(results["token_f1_tuned"] - results["token_f1_base"],
                                                      abs=1e-5)
    report = (out / REPORT_FILE).read_text()
    for name in PLOT_FILES.values():
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
        assert f"]({name})" in report
    assert re.search(r"\| token_f1 \| [\d.]+ \[[\d.]+, [\d.]+\] \|", report)


def test_benchmark_needs_an_adapter(tmp_path):
    ingest_dir = write_ingest_dir(tmp_path / "ingest")
    with pytest.raises(UserError, match="no adapter"):
        run_benchmark(build_config([]), ingest_dir, tmp_path / "nothing", tmp_path / "out")

"""Benchmark: metric definitions on hand-computed cases, bootstrap CIs, and both arms with a fake generator\n(the real model and a real adapter: tests/e2e/test_benchmark_real.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.stages.benchmark import (BENCHMARK_FILE, PLOT_FILES, PREDICTION_FILES, REPORT_FILE, RESULTS_FILE,
                                  aggregate, generation_config, paired_deltas, run_benchmark,
                                  score_row)
from components.core.errors import UserError
from components.backends.generation import Generated
from components.analysis.metrics import key_info, length_ratio
from components.core.overrides import build_config
from components.data.schema import Question
from helpers import FakeGenerator, question_of, write_ingest_dir

# The last three questions are the held-out (test) split.
CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Peru", "Lima")]

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


def _fake_adapter(tmp_path: Path) -> Path:
    (tmp_path / "finetune" / "adapter").mkdir(parents=True)
    (tmp_path / "finetune" / "adapter" / "adapter_config.json").write_text("{}")
    return tmp_path / "finetune"


def test_benchmark_scores_both_arms_on_the_test_split_with_paired_deltas(tmp_path):
    """With a fake generator: the base arm never knows, the tuned arm always names the capital."""
    ingest_dir = write_ingest_dir(tmp_path / "ingest", CAPITALS, num_train=2)
    capital = dict(CAPITALS)
    generator = FakeGenerator(answer=lambda p: "I do not know",
                              tuned=lambda p: capital[question_of(p).split()[-1].rstrip("?")])
    cfg = build_config(["benchmark.bootstrap_samples=200"])
    out = tmp_path / "bench"
    results = run_benchmark(cfg, ingest_dir, _fake_adapter(tmp_path), out, generator=generator)

    base, tuned = ([json.loads(line) for line in (out / PREDICTION_FILES[m]).read_text().splitlines()]
                   for m in ("base", "tuned"))
    assert [r["id"] for r in base] == [r["id"] for r in tuned] == ["q2", "q3", "q4"]  # the test split
    assert [r["prediction"] for r in tuned] == ["Rome", "Madrid", "Lima"]
    assert generator.prepared == 1, "the shared prompt head prefilled once, as eval does (the same batch layout)"
    assert results["precision"] == "float32"
    assert (results["token_f1_base"], results["token_f1_tuned"], results["token_f1_delta"]) == (0.0, 1.0, 1.0)
    assert (results["exact_match_base"], results["exact_match_tuned"]) == (0.0, 1.0)
    delta = results["summary"]["delta"]["token_f1"]
    assert delta["ci_low"] == delta["ci_high"] == 1.0 and delta["n"] == 3  # every question gains exactly 1
    assert results["summary"]["base"]["key_info"]["mean"] == 0.0
    assert results["summary"]["tuned"]["key_info"]["mean"] == 1.0
    assert json.loads((out / RESULTS_FILE).read_text()) == json.loads((out / BENCHMARK_FILE).read_text())
    report = (out / REPORT_FILE).read_text()
    assert "| token_f1 | 0.000 [0.000, 0.000] | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] |" in report
    for name in PLOT_FILES.values():
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_benchmark_needs_an_adapter(tmp_path):
    ingest_dir = write_ingest_dir(tmp_path / "ingest", CAPITALS, num_train=2)
    with pytest.raises(UserError, match="no adapter"):
        run_benchmark(build_config([]), ingest_dir, tmp_path / "nothing", tmp_path / "out")


@pytest.mark.parametrize("method, overrides, loaded, quantized", [
    ("qlora", [], "4bit", True),  # the 4-bit base the adapter was trained on
    ("qlora", ["model.load_in_8bit=true"], "8bit", True),  # what the user asked for wins
    ("lora", [], "none", False),
    (None, [], "none", False),  # an adapter without the finetune step's results
])
def test_benchmark_runs_both_arms_on_the_base_the_adapter_was_trained_on(tmp_path, monkeypatch, method, overrides,
                                                                         loaded, quantized):
    from components.stages import benchmark

    finetune_dir = _fake_adapter(tmp_path)
    if method:
        (finetune_dir / RESULTS_FILE).write_text(json.dumps({"method": method}))
    loads, adapters = [], []

    class Recording(FakeGenerator):
        def with_adapter(self, adapter_dir, quantized):
            adapters.append(quantized)
            return super().with_adapter(adapter_dir, quantized)

    monkeypatch.setattr(benchmark, "load_generator", lambda model: loads.append(model) or Recording())
    ingest_dir = write_ingest_dir(tmp_path / "ingest", CAPITALS, num_train=2)
    cfg = build_config(["benchmark.bootstrap_samples=0", *overrides])
    results = run_benchmark(cfg, ingest_dir, finetune_dir, tmp_path / "bench")
    (model,) = loads
    assert (model.load_in_4bit, model.load_in_8bit) == (loaded == "4bit", loaded == "8bit")
    assert adapters == [quantized], "a quantized base keeps the adapter unmerged"
    assert results["quantization"] == loaded and results["finetune_method"] == method
    assert results["model_size_mb"] == round(4096 / 2**20, 2)
    assert f"({method or 'method unknown'})" in (tmp_path / "bench" / REPORT_FILE).read_text()

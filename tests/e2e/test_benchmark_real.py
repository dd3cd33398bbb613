"""The benchmark on the real embedded model with a real (untrained, random-B) LoRA adapter."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from components.stages.benchmark import (BENCHMARK_FILE, PLOT_FILES, PREDICTION_FILES, REPORT_FILE, RESULTS_FILE,
                                  run_benchmark)
from components.core.config import ModelConfig
from components.core.overrides import build_config
from helpers import write_ingest_dir

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Peru", "Lima")]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    """A real adapter without training: LoRA with random (non-zero) B matrices changes the outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    from components.backends.models import load_model, peft_wrapping

    set_seed(0)
    with peft_wrapping():  # as the project wraps models: without peft's deprecation warning
        model = get_peft_model(load_model(ModelConfig()).model,
                               LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                          init_lora_weights=False, task_type="CAUSAL_LM"))
    finetune_dir = tmp_path_factory.mktemp("finetune")
    model.save_pretrained(finetune_dir / "adapter")
    return finetune_dir


def test_benchmark_compares_base_and_adapter_and_writes_a_report(adapter_dir, tmp_path):
    ingest_dir = write_ingest_dir(tmp_path / "ingest", CAPITALS, num_train=2)
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

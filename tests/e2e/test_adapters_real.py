"""Fine-tuned adapters end to end on the real model, offline: the finetune stage registers its adapter
as an OutputModel in its offline session; `experiment.eval_tuned` evaluates base + that adapter beside the
base model, with different answers, and exactly the benchmark's tuned answers on the same questions."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from clearml_tasks._tracking import resolve_tracking
from components.core.errors import UserError
from components.core.fileio import read_json, read_jsonl
from components.core.overrides import build_config
from pipelines.dag import build_dag
from pipelines.local import run_local

# The eval uses the benchmark's decoding (64 new tokens) and questions (the test split), so the tuned eval
# and the benchmark's tuned arm answer the same prompts the same way.
ARGS = ["experiment.eval_tuned=true", "experiment.modes=[no_context]", "experiment.split=test",
        "generation.max_new_tokens=64", "finetune.max_steps=10", "finetune.logging_steps=5"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned")
    cfg = build_config(ARGS + [f"experiment.output_dir={out}"])
    outcomes = run_local(build_dag(cfg, ("ingest", "eval", "finetune", "benchmark", "report")), cfg,
                         resolve_tracking("offline"), log=lambda _: None)
    return out, {o.name: o for o in outcomes}


def test_the_adapter_is_an_output_model_of_the_finetune_task(run):
    finetune = run[1]["finetune"].results
    task = json.loads((Path(finetune["session_dir"]) / "task.json").read_text())
    (model,) = task["offline_output_models"]
    assert model["id"] == finetune["model_id"]
    assert model["init"]["framework"] == "PyTorch" and "lora" in model["init"]["tags"]
    assert model["init"]["config_dict"]["base_model"] == "smollm2_135m_gguf"
    assert model["init"]["config_dict"]["r"] == 16 and model["init"]["config_dict"]["train_data"] == "builtin:demo"
    with zipfile.ZipFile(model["weights"]["weights_filename"]) as archive:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= set(archive.namelist())


def test_the_tuned_eval_answers_differently_and_as_the_benchmark_tuned_arm(run):
    out = run[0]
    base = read_jsonl(out / "eval_no_context" / "predictions.jsonl")
    tuned = read_jsonl(out / "eval_tuned_no_context" / "predictions.jsonl")
    bench = read_jsonl(out / "benchmark" / "predictions_tuned.jsonl")
    assert [r["id"] for r in tuned] == [r["id"] for r in bench] == [r["id"] for r in base]  # the test split
    assert [r["prediction"] for r in tuned] != [r["prediction"] for r in base]
    assert [r["prediction"] for r in tuned] == [r["prediction"] for r in bench]
    results, benchmark = read_json(out / "eval_tuned_no_context" / "results.json"), read_json(out / "benchmark" / "results.json")
    assert results["token_f1"] == pytest.approx(benchmark["token_f1_tuned"])
    assert results["exact_match"] == pytest.approx(benchmark["exact_match_tuned"])
    assert results["adapter"] == str(out / "finetune" / "adapter")
    board = (out / "report" / "leaderboard.md").read_text()
    assert "adapter=none" in board and "adapter=…" in board  # base and tuned side by side


def test_an_adapter_that_is_no_folder_needs_a_server(tmp_path):
    from clearml_tasks._inputs import resolve_adapter
    from components.backends.base import load_generator

    resolve_tracking("offline")
    with pytest.raises(UserError, match="a ClearML model id needs a server"):
        resolve_adapter(build_config(["model.adapter=0123456789abcdef"]))
    with pytest.raises(UserError, match="not a peft adapter folder"):
        load_generator(build_config([f"model.adapter={tmp_path}"]).model)

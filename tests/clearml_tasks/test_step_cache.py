"""Step folders named by what made them, and the inputs a template's task builds itself: a clone enqueued
with `inputs/ingest` empty ingests its own `dataset/*` (retriever_context: indexes it with its own
`retriever/*`), once per machine; a given input is used as it is."""
from __future__ import annotations

from pathlib import Path

import pytest

from clearml_tasks import index as index_template
from clearml_tasks._step_cache import build_inputs, cached_results, finish_step, step_key
from clearml_tasks._task import run_stage
from components.core.fileio import read_json
from components.core.outputs import INDEX_RESULTS_FILE
from components.core.overrides import build_config
from helpers import write_ingest_dir


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("SLM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_finished_step_is_found_only_under_its_key(tmp_path):
    cfg = build_config([])
    key = step_key("index", cfg, {"ingest": "k1"})
    assert key == step_key("index", build_config(["retriever.top_k=9"]), {"ingest": "k1"})  # top_k is eval's
    assert key != step_key("index", cfg, {"ingest": "k2"}) != step_key("index", build_config(["retriever.kind=dense"]),
                                                                        {"ingest": "k1"})
    assert cached_results(tmp_path, key) is None  # nothing finished there yet
    assert finish_step(tmp_path, key, "index", {"n": 1, "meta": {"big": 1}}) == {"n": 1}
    assert cached_results(tmp_path, key) == {"n": 1} and cached_results(tmp_path, "other") is None


def test_an_empty_input_is_built_from_the_tasks_own_sections_once(cache):
    logged: list[str] = []
    cfg = build_config(["dataset.test_fraction=0.5", "experiment.mode=retriever_context"])
    inputs = build_inputs("eval", cfg, {"ingest": "", "index": ""}, logged.append)
    ingest, index = Path(inputs["ingest"]), Path(inputs["index"])
    assert ingest.parent == index.parent == cache / "steps"
    assert read_json(ingest / "manifest.json")["num_test"] == 21  # its own dataset section: half of 42
    assert read_json(index / INDEX_RESULTS_FILE)["num_passages"] == 66
    assert read_json(index / "config.json")["dataset"]["test_fraction"] == 0.5  # what the eval records
    assert [line.split(":")[0] for line in logged] == ["inputs/ingest is empty", "inputs/index is empty"]
    assert all("running the" in line for line in logged)
    logged.clear()
    assert build_inputs("eval", cfg, {"ingest": "", "index": ""}, logged.append) == inputs  # the same folders
    assert all("built before" in line for line in logged)
    # a closed-book eval needs no index; another dataset setting is another ingest
    closed = build_inputs("eval", build_config([]), {"ingest": "", "index": ""}, logged.append)
    assert closed["index"] == "" and closed["ingest"] != inputs["ingest"]


def test_a_given_input_is_used_and_what_is_built_on_it_says_so(cache, tmp_path):
    given = write_ingest_dir(tmp_path / "given")
    cfg = build_config(["experiment.mode=retriever_context", "retriever.hit_ks=[1]"])
    inputs = build_inputs("eval", cfg, {"ingest": str(given), "index": ""}, lambda _: None)
    assert inputs["ingest"] == str(given)
    assert read_json(Path(inputs["index"]) / INDEX_RESULTS_FILE)["num_passages"] == 20  # indexed the given one (20 capitals)


def test_a_template_run_with_its_input_empty_completes(cache, tmp_path):
    """`python clearml_tasks/index.py` (an unchanged clone of the index template on an agent) used to fail
    with `inputs/ingest is not set`."""
    results = run_stage("index", index_template.body, build_config(["retriever.hit_ks=[1]"]), {"ingest": ""},
                        tmp_path / "index", "none")
    assert results["num_passages"] == 66 and results["num_questions"] == 42
    assert read_json(tmp_path / "index" / "config.json")["dataset"]["name"] == "demo"

"""The ClearML layer with the real SDK in offline mode: one offline session per executed step, with the
stage's parameter sections, the seed-000 single values, the "Final Metrics" table and the artifacts;
the local runner's step cache; `--no-clearml`; an unreachable server; secrets never written.

Offline session layout (NOTES.md): $CLEARML_CACHE_DIR/offline/<task-id>/{task.json, metrics.jsonl, ...};
each line of metrics.jsonl is a JSON list of events; report_single_value(name, v) is metric "Summary",
variant name; report_table(title, ...) is an event of type "plot" whose metric is the title.
"""
from __future__ import annotations

import json
import os
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from clearml_tasks._tracking import resolve_tracking
from components.core.fileio import read_json
from components.core.overrides import build_config
from clearml_tasks.stages import STAGES
from pipelines.dag import stage_dag
from pipelines.local import StepOutcome, run_local

SEED_KEYS = ("token_recall", "num_examples", "model_size_bytes", "model_size_mb", "retriever_index_size_bytes",
             "retriever_index_size_mb", "cpu_ram_used_mb", "gpu_ram_used_mb", "gpu_ram_peak_mb",
             "reserved_gpu_ram_mb", "duration_seconds")
SINGLE_VALUE_ITER = -2147483648
AWS_SECRET = f"aws-{uuid.uuid4().hex}"
CLEARML_SECRET = f"cml-{uuid.uuid4().hex}"


@dataclass
class OfflineRuns:
    output_dir: Path
    first: list[StepOutcome]
    first_seconds: float
    second: list[StepOutcome]
    second_seconds: float
    changed: list[StepOutcome]  # generation.max_new_tokens changed


def _by_name(outcomes: list[StepOutcome]) -> dict[str, StepOutcome]:
    return {o.name: o for o in outcomes}


@pytest.fixture(scope="module")
def offline(tmp_path_factory, clearml_cache_dir) -> OfflineRuns:
    """`slm eval --offline experiment.max_samples=4` three times: fresh, unchanged, max_new_tokens changed.
    Secrets sit in the environment the whole time."""
    out = tmp_path_factory.mktemp("offline_run")
    args = ["experiment.max_samples=4", f"experiment.output_dir={out}"]
    # resolve_tracking repoints CLEARML_CONFIG_FILE and the SDK's Task.set_offline sets CLEARML_OFFLINE_MODE,
    # both in os.environ: put them back afterwards so later tests start clean
    saved = {k: os.environ.get(k) for k in ("CLEARML_CONFIG_FILE", "CLEARML_OFFLINE_MODE")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        mp.setenv("CLEARML_API_SECRET_KEY", CLEARML_SECRET)
        tracking = resolve_tracking("offline")
        assert tracking == "offline"
        cfg = build_config(args)
        started = time.perf_counter()
        first = run_local(stage_dag("eval", cfg), cfg, tracking)
        first_seconds = time.perf_counter() - started
        started = time.perf_counter()
        second = run_local(stage_dag("eval", cfg), cfg, tracking)
        second_seconds = time.perf_counter() - started
        print(f"\nfirst run {first_seconds:.2f} s, step-cached re-run {second_seconds:.3f} s")
        changed_cfg = build_config(args + ["generation.max_new_tokens=4"])
        changed = run_local(stage_dag("eval", changed_cfg), changed_cfg, tracking)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return OfflineRuns(out, first, first_seconds, second, second_seconds, changed)


def _task(outcome: StepOutcome) -> dict:
    return json.loads((Path(outcome.results["session_dir"]) / "task.json").read_text(encoding="utf-8"))


def _events(outcome: StepOutcome) -> list[dict]:
    events = []
    for line in (Path(outcome.results["session_dir"]) / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            batch = json.loads(line)
            assert isinstance(batch, list)
            events += batch
    return events


def _artifacts(outcome: StepOutcome) -> dict[str, dict]:
    return {a["key"]: a for a in _task(outcome)["execution"]["artifacts"]}


def _param(task: dict, section: str, name: str) -> str:
    return task["hyperparams"][section][name]["value"]


@pytest.mark.slow
def test_every_step_has_an_offline_session(offline, clearml_cache_dir):
    assert [(o.name, o.status) for o in offline.first] == [("ingest", "ran"), ("eval", "ran")]
    sessions = set()
    for o in offline.first:
        session = Path(o.results["session_dir"])
        assert session.parent == clearml_cache_dir / "offline"
        assert session.name == o.results["task_id"]
        assert (session / "task.json").is_file() and (session / "metrics.jsonl").is_file()
        assert session.with_suffix(".zip").is_file()  # what Task.import_offline_session takes
        task = _task(o)
        assert task["id"] == o.results["task_id"]
        assert task["name"] == o.name
        sessions.add(session)
    assert len(sessions) == 2


@pytest.mark.slow
def test_ingest_session_parameters(offline):
    task = _task(_by_name(offline.first)["ingest"])
    # its sections, its inputs and its user properties (where it ran)
    assert set(task["hyperparams"]) - {"inputs", "properties"} == set(STAGES["ingest"].sections) == {"dataset"}
    assert _param(task, "dataset", "path") == "builtin:demo"
    assert _param(task, "dataset", "name") == ""  # empty: the label follows dataset.path (the demo's "demo")
    assert _param(task, "dataset", "test_fraction") == "0.2"


@pytest.mark.slow
def test_eval_session_parameters(offline):
    task = _task(_by_name(offline.first)["eval"])
    # the template's sections (its own and the dataset it ingests itself when its input is empty), its
    # inputs, and its user properties (the memory estimate, where it ran)
    assert set(task["hyperparams"]) == set(STAGES["eval"].template_sections) | {"inputs", "properties"}
    assert "dataset" in STAGES["eval"].template_sections
    assert float(_param(task, "properties", "memory_estimate_gb")) > 0
    assert set(STAGES["eval"].sections) == {"experiment", "model", "retriever", "prompt", "generation"}
    assert _param(task, "experiment", "max_samples") == "4"
    assert _param(task, "experiment", "mode") == "no_context"
    assert "output_dir" not in task["hyperparams"]["experiment"], "a DAG-only field is not on the template"
    assert _param(task, "generation", "max_new_tokens") == "32"
    assert _param(task, "model", "name") == ""  # empty: the label follows model.path (results say smollm2_135m_gguf)
    assert _param(task, "retriever", "kind") == "bm25"
    assert "{question}" in _param(task, "prompt", "no_context")
    assert _param(task, "inputs", "ingest") == str(offline.output_dir / "ingest")
    # the re-run with another max_new_tokens records the new value in its own session
    changed = _task(_by_name(offline.changed)["eval"])
    assert _param(changed, "generation", "max_new_tokens") == "4"


@pytest.mark.slow
def test_eval_single_values_and_final_metrics(offline):
    eval_step = _by_name(offline.first)["eval"]
    results = read_json(Path(_artifacts(eval_step)["results"]["uri"]))  # that run's results.json
    runner_side = ("task_id", "session_dir", "memory_estimate_gb", "memory_estimate_breakdown_gb")
    assert {k: v for k, v in results.items() if k != "meta"} == {
        k: v for k, v in eval_step.results.items() if k not in runner_side}
    events = _events(eval_step)
    singles = {e["variant"]: e["value"] for e in events
               if e["type"] == "training_stats_scalar" and e["metric"] == "Summary" and e["iter"] == SINGLE_VALUE_ITER}
    # single values: the registry's metrics for the stage (the few SCALARS shows); every number in the table
    for key in STAGES["eval"].metrics:
        if key in results:
            assert singles[key] == pytest.approx(results[key]), key
    assert singles["token_recall"] == pytest.approx(results["token_recall"]) and singles["num_examples"] == 4
    plots = [e for e in events if e["type"] == "plot" and e["metric"] == "Final Metrics"]
    assert len(plots) == 1 and plots[0]["variant"] == "Summary"
    cells = json.loads(plots[0]["plot_str"])["data"][0]["cells"]["values"]
    table = dict(zip(cells[0], cells[1]))
    for key in SEED_KEYS:  # rounded to 4 significant digits
        assert float(table[key]) == pytest.approx(results[key], rel=1e-3, abs=1e-9), key
    assert float(table["num_examples"]) == 4


@pytest.mark.slow
def test_ingest_single_values(offline):
    ingest = _by_name(offline.first)["ingest"]
    singles = {e["variant"]: e["value"] for e in _events(ingest) if e.get("metric") == "Summary"}
    assert singles["num_questions"] == 42 and singles["num_passages"] == 66


@pytest.mark.slow
def test_eval_artifacts(offline):
    eval_step = _by_name(offline.first)["eval"]
    artifacts = _artifacts(eval_step)
    assert {"memory_usage", "predictions", "results", "output"} <= set(artifacts)
    memory = read_json(Path(artifacts["memory_usage"]["uri"]))
    assert memory["detailed_log"] and "peak_usage" in memory
    assert {"load model", "generate"} <= {e["operation"] for e in memory["detailed_log"]}
    predictions = Path(artifacts["predictions"]["uri"]).read_text(encoding="utf-8").splitlines()
    assert len(predictions) == 4
    with zipfile.ZipFile(artifacts["output"]["uri"]) as z:
        names = set(z.namelist())
    assert {"results.json", "predictions.jsonl", "memory_usage.json"} <= names


@pytest.mark.slow
def test_ingest_artifacts(offline):
    artifacts = _artifacts(_by_name(offline.first)["ingest"])
    assert {"questions", "passages", "train", "test", "output"} <= set(artifacts)
    assert len(Path(artifacts["questions"]["uri"]).read_text().splitlines()) == 42


@pytest.mark.slow
def test_eval_output_artifact_holds_only_the_eval_outputs(offline):
    """`slm eval` puts eval's outputs in experiment.output_dir itself, next to the ingest/ (and index/)
    step folders; the eval task's `output` artifact should not re-upload its parents' folders."""
    artifacts = _artifacts(_by_name(offline.first)["eval"])
    with zipfile.ZipFile(artifacts["output"]["uri"]) as z:
        names = z.namelist()
    parents = sorted(n for n in names if n.startswith(("ingest/", "index/")))
    assert parents == [], f"eval's output artifact also carries its parents' folders: {parents}"


@pytest.mark.slow
def test_step_cache(offline):
    assert [(o.name, o.status) for o in offline.second] == [("ingest", "cached"), ("eval", "cached")]
    for first, again in zip(offline.first, offline.second):
        assert again.results == first.results  # served from .step.json, same session ids
    print(f"first {offline.first_seconds:.2f} s, cached {offline.second_seconds:.3f} s")
    assert offline.second_seconds * 10 <= offline.first_seconds


@pytest.mark.slow
def test_changed_generation_reruns_eval_not_ingest(offline):
    assert [(o.name, o.status) for o in offline.changed] == [("ingest", "cached"), ("eval", "ran")]
    first_eval, new_eval = _by_name(offline.first)["eval"], _by_name(offline.changed)["eval"]
    assert new_eval.results["session_dir"] and new_eval.results["session_dir"] != first_eval.results["session_dir"]
    assert new_eval.results["num_examples"] == 4
    assert read_json(offline.output_dir / "results.json")["meta"]["config"]["generation"]["max_new_tokens"] == 4


def _files_containing(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        blobs = [(str(path), data)]
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                blobs += [(f"{path}!{n}", z.read(n)) for n in z.namelist()]
        hits += [name for name, blob in blobs for s in needles if s.encode() in blob]
    return hits


@pytest.mark.slow
def test_secrets_are_written_nowhere(offline):
    """Secret keys in the environment end up in no output file, offline session file or zip member."""
    sessions = [Path(o.results["session_dir"]) for o in offline.first + offline.changed if o.status == "ran"]
    assert len(sessions) == 3
    scanned = 0
    for root in [offline.output_dir, *sessions]:
        assert root.is_dir(), root
        hits = _files_containing(root, [AWS_SECRET, CLEARML_SECRET])
        assert hits == [], hits
        scanned += sum(1 for p in root.rglob("*") if p.is_file())
    for session in sessions:
        zipped = session.with_suffix(".zip")
        with zipfile.ZipFile(zipped) as z:
            for name in z.namelist():
                data = z.read(name)
                assert AWS_SECRET.encode() not in data and CLEARML_SECRET.encode() not in data, name
    assert scanned >= 10


@pytest.mark.slow
def test_no_clearml_creates_no_session(tmp_path, clearml_cache_dir):
    offline_dir = clearml_cache_dir / "offline"
    before = sorted(os.listdir(offline_dir)) if offline_dir.is_dir() else []
    tracking = resolve_tracking("none")
    assert tracking == "none"
    cfg = build_config(["experiment.max_samples=2", "generation.max_new_tokens=4", f"experiment.output_dir={tmp_path}"])
    outcomes = run_local(stage_dag("eval", cfg), cfg, tracking)
    assert [o.status for o in outcomes] == ["ran", "ran"]
    assert all(o.results["session_dir"] == "" and o.results["task_id"] == "" for o in outcomes)
    assert read_json(tmp_path / "results.json")["num_examples"] == 2
    after = sorted(os.listdir(offline_dir)) if offline_dir.is_dir() else []
    assert after == before

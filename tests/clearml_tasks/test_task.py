"""The template glue: a failed stage is marked failed (not completed) with its reason; the `output`
artifact keeps the step's folder name (the tracker: test_tracker.py; inputs: test_inputs.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import clearml_tasks._task as task_glue
from clearml_tasks._tracker import NullTracker
from components.core.errors import UserError
from components.core.overrides import build_config
from helpers import ROOT


class Recorder(NullTracker):
    task_url = ""

    def __init__(self):
        self.closed_with: list[str] = []
        self.artifacts: dict[str, Path] = {}

    def upload_artifact(self, name, obj, preview=None):
        self.artifacts[name] = Path(obj)

    def close(self, error: str = "") -> None:
        self.closed_with.append(error)


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    tracker = Recorder()
    monkeypatch.setattr(task_glue, "make_tracker", lambda *args, **kwargs: tracker)
    return tracker


@pytest.mark.parametrize("error, reason", [
    (UserError("dataset.path: /nope.jsonl not found"), "dataset.path: /nope.jsonl not found"),
    (RuntimeError("CUDA out of memory\nmore lines"), "RuntimeError: CUDA out of memory")])
def test_a_failing_stage_closes_its_task_as_failed_with_the_reason(recorder, tmp_path, error, reason):
    def body(cfg, inputs, output_dir, tracker):
        raise error

    with pytest.raises(type(error)):
        task_glue.run_stage("ingest", body, build_config([]), {}, tmp_path, "online")
    assert recorder.closed_with == [reason]


def test_a_finished_stage_closes_once_without_error(recorder, tmp_path):
    results = task_glue.run_stage("ingest", lambda *a: {"n": 1}, build_config([]), {}, tmp_path / "step", "online")
    assert recorder.closed_with == [""] and results["n"] == 1
    assert recorder.artifacts["output"] == tmp_path / "step"


def test_on_a_server_a_step_folder_names_its_task(recorder, tmp_path):
    """The report links each cell to the task that ran it: the step folder says which (not offline)."""
    task_glue.run_stage("ingest", lambda *a: {}, build_config([]), {}, tmp_path / "local", "online")
    assert not (tmp_path / "local" / "clearml_task.json").exists()  # no server: no task page to link
    recorder.task_id, recorder.task_url = "abc123", "http://ui:8080/projects/p1/experiments/abc123/output/log"
    task_glue.run_stage("ingest", lambda *a: {}, build_config([]), {}, tmp_path / "step", "online", task_name="ingest")
    written = (tmp_path / "step" / "clearml_task.json").read_text()
    assert '"id": "abc123"' in written and '"url": "http://ui:8080/projects/p1/experiments/abc123/output/log"' in written


def test_output_artifact_folder_keeps_the_step_name_without_nested_steps(tmp_path):
    out = tmp_path / "oracle100"
    (out / "ingest").mkdir(parents=True)
    (out / "ingest" / ".step.json").write_text("{}")
    (out / "results.json").write_text("{}")
    with task_glue.own_outputs(out) as folder:
        assert folder.name == "oracle100" and "slm-artifact" not in folder.name
        assert sorted(p.name for p in folder.iterdir()) == ["results.json"]
    with task_glue.own_outputs(tmp_path / "oracle100" / "ingest") as folder:
        assert folder == tmp_path / "oracle100" / "ingest"  # nothing to leave out: the folder itself


def test_a_needed_input_it_cannot_build_is_one_line_not_a_key_error(recorder, tmp_path):
    """A merge (or report) task with inputs/eval empty: the stage cannot build shards itself."""
    def body(cfg, inputs, output_dir, tracker):
        return {"read": inputs["eval"]}

    with pytest.raises(UserError) as err:
        task_glue.run_stage("merge", body, build_config([]), {"eval": ""}, tmp_path, "online")
    assert str(err.value).startswith("inputs/eval is not set: the merge stage reads the eval stage's output")
    assert recorder.closed_with == [str(err.value)]


class Connecting(Recorder):
    """Records each connected section; `present` are parameters the task already carries (an agent's clone)."""

    def __init__(self, present=()):
        super().__init__()
        self.connected: dict[str, dict] = {}
        self.present = set(present)

    def connect_section(self, values, name):
        self.connected[name] = dict(values)
        return values

    def parameter_keys(self):
        return self.present


def connected_keys(tracker: Connecting) -> set[str]:
    return {f"{s}/{k}" for s, values in tracker.connected.items() for k in values}


@pytest.mark.parametrize("stage", ["ingest", "index", "eval", "finetune", "benchmark", "merge", "report"])
def test_a_stage_connects_exactly_its_template_parameters(stage):
    from pipelines.templates import template_parameters

    tracker = Connecting()
    task_glue.connect_config(tracker, build_config(["experiment.name=renamed"]), stage)
    tracker.connect_section({name: "" for name in task_glue.STAGES[stage].inputs}, "inputs")
    assert connected_keys(tracker) == set(template_parameters(stage))


def test_a_dag_field_a_step_sets_is_connected_too():
    """A shard step: locally its shard differs from the default; on an agent the clone carries it."""
    local = Connecting()
    task_glue.connect_config(local, build_config(["experiment.shards=2", "experiment.shard=1"]), "eval")
    assert {"experiment/shard", "experiment/shards"} <= connected_keys(local)
    agent = Connecting(present={"experiment/shard", "experiment/shards"})
    task_glue.connect_config(agent, build_config([]), "eval")  # the values come back from the server
    assert {"experiment/shard", "experiment/shards"} <= connected_keys(agent)
    assert "experiment/modes" not in connected_keys(agent)


def test_a_template_entry_without_its_input_exits_2_with_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "SLM_CACHE_DIR": str(tmp_path / "c"), "CLEARML_CACHE_DIR": str(tmp_path / "clearml"),
           "CLEARML_CONFIG_FILE": str(tmp_path / "none.conf")}
    out = subprocess.run([sys.executable, str(ROOT / "clearml_tasks" / "merge.py"),
                          f"experiment.output_dir={tmp_path / 'out'}"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.splitlines()[-1].startswith("error: inputs/eval is not set")
    assert "Traceback" not in out.stderr

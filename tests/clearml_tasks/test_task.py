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

    def upload_artifact(self, name, obj):
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


def test_a_needed_input_left_unset_is_one_line_not_a_key_error(recorder, tmp_path):
    """`python clearml_tasks/index.py` (or a template enqueued with inputs/ingest empty) used to fail in the
    body with `KeyError: 'ingest'`."""
    def body(cfg, inputs, output_dir, tracker):
        return {"read": inputs["ingest"]}

    with pytest.raises(UserError) as err:
        task_glue.run_stage("index", body, build_config([]), {"ingest": ""}, tmp_path, "online")
    assert str(err.value).startswith("inputs/ingest is not set: the index stage reads the ingest stage's output")
    assert recorder.closed_with == [str(err.value)]
    # an input the stage does not read in this config may stay empty (eval reads the index only to retrieve)
    results = task_glue.run_stage("eval", lambda *a: {"n": 1}, build_config([]), {"ingest": str(tmp_path), "index": ""},
                                  tmp_path / "eval", "online")
    assert results["n"] == 1
    with pytest.raises(UserError, match="^inputs/index is not set"):
        task_glue.run_stage("eval", lambda *a: {}, build_config(["experiment.mode=retriever_context"]),
                            {"ingest": str(tmp_path), "index": ""}, tmp_path / "eval", "online")


def test_a_template_entry_without_its_input_exits_2_with_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "SLM_CACHE_DIR": str(tmp_path / "c"), "CLEARML_CACHE_DIR": str(tmp_path / "clearml"),
           "CLEARML_CONFIG_FILE": str(tmp_path / "none.conf")}
    out = subprocess.run([sys.executable, str(ROOT / "clearml_tasks" / "index.py"),
                          f"experiment.output_dir={tmp_path / 'out'}"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.splitlines()[-1].startswith("error: inputs/ingest is not set")
    assert "Traceback" not in out.stderr

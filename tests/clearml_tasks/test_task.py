"""The template glue: a failed stage is marked failed (not completed) with its reason; the `output`
artifact keeps the step's folder name (the tracker: test_tracker.py; inputs: test_inputs.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

import clearml_tasks._task as task_glue
from clearml_tasks._tracker import NullTracker
from components.core.errors import UserError
from components.core.overrides import build_config


class Recorder(NullTracker):
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


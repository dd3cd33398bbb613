"""The template glue: a failed stage is marked failed (not completed) with its reason; no ClearML
framework hook uploads or reports behind the stage's back; a bad parent input is one line naming it;
a stage records its parents' data sections; the `output` artifact keeps the step's folder name."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import clearml_tasks._task as task_glue
from clearml_tasks._inputs import resolve_input, with_parent_sections
from clearml_tasks._tracker import FRAMEWORK_HOOKS, ClearMLTracker, NullTracker
from components.core.errors import UserError
from components.core.fileio import write_json
from components.core.overrides import build_config


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


class FakeTask:
    """Stands in for clearml.Task: records Task.init's arguments and the calls made on the task."""
    init_kwargs: dict = {}

    def __init__(self):
        self.calls: list[tuple] = []
        self.id = "task-1"

    @classmethod
    def init(cls, **kwargs):
        cls.init_kwargs = kwargs
        cls.instance = cls()
        return cls.instance

    def get_logger(self):
        task = self

        class Logger:
            def report_text(self, msg, **kwargs):
                task.calls.append(("report_text", msg))

        return Logger()

    def close(self):
        self.calls.append(("close",))

    def mark_failed(self, **kwargs):
        self.calls.append(("mark_failed", kwargs))


def test_clearml_tracker_marks_failed_after_close_and_turns_every_framework_hook_off(monkeypatch):
    import clearml

    monkeypatch.setattr(clearml, "Task", FakeTask)
    tracker = ClearMLTracker("p", "eval", "testing", offline=False, local_run=True)
    frameworks = FakeTask.init_kwargs["auto_connect_frameworks"]
    assert {k for k, on in frameworks.items() if on} == set()  # detect_repository too, for a local run
    assert set(FRAMEWORK_HOOKS) <= set(frameworks) and {"pytorch", "matplotlib"} <= set(frameworks)
    assert FakeTask.init_kwargs["auto_connect_arg_parser"] is False
    tracker.close(error="dataset.path: /nope.jsonl not found")
    calls = FakeTask.instance.calls
    assert [c[0] for c in calls] == ["report_text", "close", "mark_failed"]  # close() would mark completed
    assert "dataset.path: /nope.jsonl not found" in calls[0][1]
    assert calls[2][1]["force"] is True and calls[2][1]["status_reason"] == "dataset.path: /nope.jsonl not found"
    assert ClearMLTracker("p", "eval", "testing", offline=False, local_run=False) and \
        FakeTask.init_kwargs["auto_connect_frameworks"]["detect_repository"] is True  # an agent run needs it


HOOK_CHECK = """
import sys, torch
import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
from clearml_tasks._tracking import resolve_tracking
from clearml_tasks._tracker import make_tracker
before = (torch.save, plt.show, plt.savefig)
tracker = make_tracker(resolve_tracking("offline"), "slm-tests", "hooks", "training")
print("unpatched", [a is b for a, b in zip(before, (torch.save, plt.show, plt.savefig))])
tracker.close()
"""


def test_a_real_offline_task_leaves_torch_save_and_matplotlib_alone(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SLM_CACHE_DIR": str(tmp_path / "cache"),
           "CLEARML_CACHE_DIR": str(tmp_path / "clearml"), "CLEARML_CONFIG_FILE": str(tmp_path / "none.conf")}
    out = subprocess.run([sys.executable, "-c", HOOK_CHECK], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "unpatched [True, True, True]" in out.stdout.splitlines()


class FakeArtifact:
    url = "s3://minio:9000/clearml/x/output.zip"

    def __init__(self, local):
        self.local = local

    def get_local_copy(self):
        return self.local


def fake_get_task(tasks: dict):
    def get_task(task_id=None, **_):
        if task_id not in tasks:
            raise ValueError(f"Task ID {task_id} could not be found")
        return tasks[task_id]
    return get_task


class ParentTask:
    def __init__(self, name, status, artifacts):
        self.name, self.status, self.artifacts = name, status, artifacts

    def get_status(self):
        return self.status


def test_bad_inputs_are_one_line_naming_the_input_the_id_and_the_status(monkeypatch, tmp_path):
    import clearml

    tasks = {"failed1": ParentTask("ingest", "failed", {}),
             "noout": ParentTask("ingest", "completed", {}),
             "good": ParentTask("ingest", "completed", {"output": FakeArtifact(str(tmp_path))})}
    monkeypatch.setattr(clearml.Task, "get_task", staticmethod(fake_get_task(tasks)))
    with pytest.raises(UserError, match=r"inputs/ingest='nope': no task with that id"):
        resolve_input("ingest", "nope")
    with pytest.raises(UserError, match=r"inputs/ingest=failed1: the ingest task 'ingest' is failed"):
        resolve_input("ingest", "failed1")
    with pytest.raises(UserError, match=r"inputs/ingest=noout: .*\(completed\) has no 'output' artifact"):
        resolve_input("ingest", "noout")
    assert resolve_input("ingest", "good") == tmp_path
    assert resolve_input("ingest", str(tmp_path)) == tmp_path  # a local folder is taken as it is


def test_a_stage_records_the_data_sections_of_its_parents(tmp_path):
    ingest = tmp_path / "ingest"
    write_json(ingest / "config.json", build_config(["dataset=local_nq", "retriever.top_k=9"]).to_dict())
    own = build_config(["retriever.top_k=2"])
    recorded = with_parent_sections(own, "eval", {"ingest": ingest})
    assert recorded.dataset.name == "local_nq" and recorded.dataset.path.endswith("NQ-open.dev.merged.jsonl")
    assert recorded.retriever.top_k == 2  # eval reads the retriever itself; ingest does not
    assert with_parent_sections(own, "eval", {"ingest": tmp_path / "missing"}) == own


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

"""Tracking injected, not branched: the no-op tracker prints results and records nothing; the ClearML one
turns every framework hook off, reports results as single values and a table, and marks a failed task
failed after closing it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clearml_tasks._tracker import FRAMEWORK_HOOKS, ClearMLTracker, NullTracker, make_tracker
from components.core.formatting import format_results


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

    def running_locally(self):
        return True

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


RESULTS = {"token_recall": 0.5, "num_examples": 4, "mode": "no_context", "resumed": True, "nested": {"a": 1}}


def test_the_null_tracker_prints_results_and_records_nothing(capsys):
    tracker = make_tracker("none", "p", "eval", "testing")
    assert type(tracker) is NullTracker
    assert (tracker.online, tracker.task_id, tracker.session_dir) == (False, "", None)
    values = {"top_k": 3}
    assert tracker.connect_section(values, name="retriever") is values  # nothing edited from a UI
    tracker.report_results(RESULTS, title="Final Metrics")
    assert capsys.readouterr().out == format_results(RESULTS, "Final Metrics") + "\n"
    assert tracker.register_model("m", ".", {}, [], "") == ""
    tracker.report_scalar("t", "s", 1.0, 0)
    tracker.upload_artifact("output", ".")
    tracker.set_properties({"git_commit": "abc"})
    tracker.close(error="boom")
    assert capsys.readouterr().out == ""


class RecordingTask:
    """clearml.Task with every call recorded, for what the tracker sends."""
    offline_set: list = []

    def __init__(self, **kwargs):
        self.init_kwargs, self.calls, self.id = kwargs, [], "task-2"

    @classmethod
    def init(cls, **kwargs):
        cls.instance = cls(**kwargs)
        return cls.instance

    @classmethod
    def set_offline(cls, offline):
        cls.offline_set.append(offline)

    def get_logger(self):
        task = self

        class Logger:
            def __getattr__(self, name):
                return lambda *args, **kwargs: task.calls.append((name, args, kwargs))

        return Logger()

    def get_offline_mode_folder(self):
        return "/tmp/offline-session"

    def connect(self, values, name):
        self.calls.append(("connect", name, values))
        return {**values, "top_k": 9}  # as edited in the UI

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


@pytest.fixture
def recording(monkeypatch):
    import clearml

    monkeypatch.setattr(clearml, "Task", RecordingTask)
    RecordingTask.offline_set = []
    return RecordingTask


def test_make_tracker_picks_offline_or_online(recording):
    offline = make_tracker("offline", "proj", "eval", "testing", output_uri="s3://b/x", tags=["a"])
    assert isinstance(offline, ClearMLTracker) and recording.offline_set == [True]
    kwargs = recording.instance.init_kwargs
    assert (kwargs["project_name"], kwargs["task_name"], kwargs["task_type"]) == ("proj", "eval", "testing")
    assert kwargs["output_uri"] == "s3://b/x" and kwargs["tags"] == ["a"] and kwargs["reuse_last_task_id"] is False
    assert kwargs["auto_resource_monitoring"] is False  # nothing to monitor for in an offline session
    assert offline.online is False and str(offline.session_dir) == "/tmp/offline-session"
    online = make_tracker("online", "proj", "eval", "testing")
    assert recording.offline_set == [True] and online.online is True and online.session_dir is None
    kwargs = recording.instance.init_kwargs
    assert kwargs["output_uri"] is None and kwargs["tags"] is None and kwargs["auto_resource_monitoring"] is True
    assert online.task_id == "task-2"


EVAL_RESULTS = {"num_examples": 42, "duration_seconds": 12.345678, "token_recall": 0.7619047619047619,
                "token_recall_ci_low": 0.29000000000000004, "token_recall_ci_high": 0.9, "cpu_ram_used_mb": 812.0,
                "exact_match": 0.5, "mode": "oracle_context"}


def test_results_go_to_the_console_as_single_values_and_as_one_table(recording, capsys):
    tracker = ClearMLTracker("p", "eval", "testing", offline=False)
    tracker.report_results(RESULTS, title="Final Metrics")
    assert capsys.readouterr().out == format_results(RESULTS, "Final Metrics") + "\n"
    calls = recording.instance.calls
    assert [c[1] for c in calls if c[0] == "report_single_value"] == [("token_recall", 0.5), ("num_examples", 4)]
    (table,) = [c[2] for c in calls if c[0] == "report_table"]
    assert table["title"] == "Final Metrics" and table["series"] == "Summary"
    assert table["table_plot"] == [["metric", "value", "95% CI low", "95% CI high"], ["token_recall", "0.5", "", ""],
                                   ["num_examples", "4", "", ""]]


def test_single_values_are_the_stage_metrics_in_order_and_the_table_is_rounded_with_cis(recording):
    """SCALARS shows the single values as one row: a few, quality first, no CI bounds of their own; the
    Final Metrics table holds every metric to 4 significant digits, each CI beside its metric."""
    tracker = ClearMLTracker("p", "eval", "testing", offline=False,
                             single_values=("token_recall", "exact_match", "duration_seconds", "gpu_ram_peak_mb"))
    tracker.report_results(EVAL_RESULTS)
    calls = recording.instance.calls
    assert [c[1][0] for c in calls if c[0] == "report_single_value"] == ["token_recall", "exact_match",
                                                                         "duration_seconds"]
    (table,) = [c[2]["table_plot"] for c in calls if c[0] == "report_table"]
    assert table[1] == ["token_recall", "0.7619", "0.29", "0.9"]
    assert [row[0] for row in table[1:]] == ["token_recall", "exact_match", "cpu_ram_used_mb", "num_examples",
                                             "duration_seconds"]
    assert ["duration_seconds", "12.35", "", ""] in table
    without = ClearMLTracker("p", "index", "data_processing", offline=False)  # no registry metrics: all but CIs
    without.report_results(EVAL_RESULTS)
    assert [c[1][0] for c in recording.instance.calls if c[0] == "report_single_value"][:2] == [
        "token_recall", "exact_match"]


def test_sections_properties_and_artifacts_reach_the_task(recording, tmp_path):
    tracker = ClearMLTracker("p", "eval", "testing", offline=False)
    assert tracker.connect_section({"top_k": 3}, name="retriever") == {"top_k": 9}  # edited values come back
    tracker.set_properties({"git_commit": "abc", "num": 3})
    (tmp_path / "results.json").write_text('{"token_recall": 0.5, "meta": {}}')
    tracker.upload_artifact("output", tmp_path)
    tracker.report_image("Plots", tmp_path / "recall.png")
    calls = {c[0]: c for c in recording.instance.calls}
    assert calls["connect"][1:] == ("retriever", {"top_k": 3})
    assert calls["set_user_properties"][2] == {"git_commit": "abc", "num": "3"}  # as text
    assert calls["upload_artifact"][2] == {"name": "output", "artifact_object": tmp_path, "wait_on_upload": True,
                                           "preview": "1 files\nresults.json  (33 bytes)"}
    assert calls["report_image"][2]["series"] == "recall" and calls["report_image"][2]["local_path"] == \
        str(tmp_path / "recall.png")


def test_plots_reach_the_task_as_plotly_figures(recording):
    tracker = ClearMLTracker("p", "report", "custom", offline=False)
    figure = {"data": [{"type": "bar", "x": ["a"], "y": [1]}], "layout": {}}
    tracker.report_plot("Leaderboard", "token_recall per mode", figure)
    calls = {c[0]: c[2] for c in recording.instance.calls}
    assert calls["report_plotly"] == {"title": "Leaderboard", "series": "token_recall per mode", "figure": figure,
                                      "iteration": 0}


def test_the_report_reaches_the_pipeline_controller_it_did_not_start(recording):
    """A report step puts its leaderboard on its controller's task too (an existing task, no Task.init)."""
    from clearml_tasks._tracker import _ExistingTask

    controller = RecordingTask()
    pipeline = _ExistingTask(controller)
    table = [["system", "no_context"], ["smollm2", "0.7619"]]
    pipeline.report_table("Leaderboard", "token_recall", table)
    pipeline.report_media("report", "report.html", Path("/tmp/report.html"))
    pipeline.close()
    names = [c[0] for c in controller.calls]
    assert names == ["report_table", "report_media"], "close() leaves the controller's task as it is"
    assert controller.calls[0][2]["table_plot"] == table


def test_an_offline_session_is_never_marked_failed(recording):
    tracker = ClearMLTracker("p", "eval", "testing", offline=True)
    tracker.close(error="boom")
    names = [c[0] for c in recording.instance.calls]
    assert names == ["report_text", "close"]  # the reason is in its console; an offline session keeps no status


OFFLINE_SESSION = """
import json, sys
from pathlib import Path
from clearml_tasks._tracking import resolve_tracking
from clearml_tasks._tracker import make_tracker
tracker = make_tracker(resolve_tracking("offline"), "slm-tests", "tracker", "testing")
edited = tracker.connect_section({"top_k": 3}, name="retriever")
tracker.report_results({"token_recall": 0.5}, title="Final Metrics")
tracker.set_properties({"git_commit": "abc"})
tracker.close()
json.dump({"edited": edited, "online": tracker.online, "task_id": tracker.task_id,
           "session": str(tracker.session_dir), "exists": Path(tracker.session_dir).is_dir()}, open(sys.argv[1], "w"))
"""


def test_a_real_offline_session_keeps_the_stage_parameters_and_a_session_folder(tmp_path):
    from helpers import run_offline_script

    got = run_offline_script(OFFLINE_SESSION, tmp_path)
    assert got["edited"] == {"top_k": 3} and got["online"] is False and got["task_id"]
    assert got["exists"] and str(tmp_path / "cache") in got["session"]


class Artifact:
    def __init__(self, local):
        self.local, self.url = local, "http://files/partial"

    def get_local_copy(self):
        return self.local


def agent_tracker(recording, monkeypatch, artifacts: dict, locally: bool = False) -> ClearMLTracker:
    tracker = ClearMLTracker("p", "eval", "testing", offline=False)
    monkeypatch.setattr(recording.instance, "running_locally", lambda: locally, raising=False)
    monkeypatch.setattr(recording.instance, "artifacts", artifacts, raising=False)
    return tracker


def test_on_an_agent_progress_is_uploaded_and_an_earlier_attempts_is_restored(recording, monkeypatch, tmp_path):
    uploaded = tmp_path / "uploaded.jsonl"
    uploaded.write_text("header\nbatch 0\nbatch 1\n")
    tracker = agent_tracker(recording, monkeypatch, {"predictions.partial": Artifact(str(uploaded))})
    partial = tmp_path / "out" / "predictions.partial.jsonl"
    assert tracker.restore_progress("predictions.partial", partial)
    assert partial.read_text() == uploaded.read_text()
    partial.write_text("header\nbatch 0\nbatch 1\nbatch 2\n")  # this disk holds more: kept
    assert not tracker.restore_progress("predictions.partial", partial) and "batch 2" in partial.read_text()
    tracker.keep_progress("predictions.partial", partial, {"batches_done": 3, "batches": 4})
    from types import SimpleNamespace
    uploaded = [SimpleNamespace(key="predictions.partial"), SimpleNamespace(key="results")]
    monkeypatch.setattr(recording.instance, "_artifacts_manager", SimpleNamespace(_task_artifact_list=uploaded),
                        raising=False)
    tracker.drop_progress("predictions.partial")
    assert [a.key for a in uploaded] == ["results"]  # else the next upload would register it again
    calls = [c for c in recording.instance.calls if c[0] in ("upload_artifact", "delete_artifacts")]
    assert calls[0][2] == {"name": "predictions.partial", "artifact_object": partial,
                           "metadata": {"batches_done": 3, "batches": 4}, "wait_on_upload": True}
    assert calls[1][1] == (["predictions.partial"],)


def test_a_local_run_keeps_its_progress_on_its_own_disk_only(recording, monkeypatch, tmp_path):
    tracker = agent_tracker(recording, monkeypatch, {"predictions.partial": Artifact(str(tmp_path))}, locally=True)
    assert not tracker.restore_progress("predictions.partial", tmp_path / "p.jsonl")
    tracker.keep_progress("predictions.partial", tmp_path / "p.jsonl", {})
    tracker.drop_progress("predictions.partial")
    assert not [c for c in recording.instance.calls if c[0] in ("upload_artifact", "delete_artifacts")]
    assert not agent_tracker(recording, monkeypatch, {}).restore_progress("predictions.partial", tmp_path / "x")


def test_reports_missing_on_the_server_are_sent_again_before_the_task_closes(recording, monkeypatch):
    tracker = ClearMLTracker("p", "eval", "testing", offline=False)
    tracker.report_scalar("progress", "batches_done", 1, iteration=1)
    tracker.report_scalar("progress", "batches_done", 2, iteration=2)
    tracker.report_results({"token_recall": 0.5}, title="Final Metrics")
    task = recording.instance
    answers = iter([  # the first read-back lacks batch 2 and the table (lost in an outage); the second has all
        ({"progress": {"batches_done": {"x": [1]}}}, {"token_recall": 0.5}, []),
        ({"progress": {"batches_done": {"x": [1, 2]}}}, {"token_recall": 0.5},
         [{"metric": "Final Metrics", "variant": "Summary"}])])
    current = {}

    def read(i):
        def get():
            if i == 0:
                current["answer"] = next(answers)
            return current["answer"][i]
        return get

    for i, name in enumerate(("get_reported_scalars", "get_reported_single_values", "get_reported_plots")):
        monkeypatch.setattr(task, name, read(i), raising=False)
    task.calls.clear()
    tracker.confirm_delivery()
    resent = [(c[0], c[2].get("iteration"), c[2].get("title")) for c in task.calls if c[0].startswith("report_")]
    assert resent == [("report_scalar", 2, "progress"), ("report_table", 0, "Final Metrics")]


def test_reports_that_never_arrive_fail_the_stage(recording, monkeypatch):
    tracker = ClearMLTracker("p", "eval", "testing", offline=False)
    tracker.report_scalar("progress", "batches_done", 1, iteration=1)
    task = recording.instance
    monkeypatch.setattr(task, "get_reported_scalars", lambda: {}, raising=False)
    monkeypatch.setattr(task, "get_reported_single_values", lambda: {}, raising=False)
    monkeypatch.setattr(task, "get_reported_plots", lambda: [], raising=False)
    with pytest.raises(RuntimeError, match="did not reach the server after 3 tries: 1 scalar points"):
        tracker.confirm_delivery()


def test_on_an_agent_reports_keep_their_own_iterations_when_a_task_runs_again(recording, monkeypatch):
    """The SDK offsets a re-run task's reports by its last iteration (single values included); the tracker
    turns that off on an agent (a retry or a next attempt runs the same task)."""
    monkeypatch.setattr(recording, "running_locally", lambda self: False, raising=False)
    ClearMLTracker("p", "eval", "testing", offline=False)
    assert ("set_initial_iteration", (0,), {}) in recording.instance.calls
    monkeypatch.setattr(recording, "running_locally", lambda self: True, raising=False)
    ClearMLTracker("p", "eval", "testing", offline=False)
    assert not [c for c in recording.instance.calls if c[0] == "set_initial_iteration"]

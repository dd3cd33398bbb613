"""A controller continuing a dead one's run (pipelines/resume.py): each node without a result gets its newest
step task back (completed: kept, never run again; running: watched; stopped or a draft: enqueued again as
the next attempt; failed: left to the retry policy), and `resume_pipeline` refuses a controller whose agent
still runs it. No server: the children, the jobs and the tasks are fakes."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from components.core.errors import UserError
from pipelines import resume
from pipelines.step_watch import ATTEMPTS_PROPERTY


class FakeTask:
    def __init__(self, task_id, status):
        self.id, self.status, self.task_type, self.props = task_id, status, "testing", {}
        self.stopped_with, self.data = None, SimpleNamespace(execution=SimpleNamespace(queue="queue-id-1"))

    def get_user_properties(self):
        return {k: {"value": v} for k, v in self.props.items()}

    def set_user_properties(self, **values):
        self.props.update(values)

    def stopped(self, **kwargs):
        self.stopped_with, self.status = kwargs, "stopped"


class FakeJob:
    def __init__(self, task):
        self.task, self.launched = task, []

    def launch(self, queue_name=None):
        self.launched.append(queue_name)
        return True


def node(name, executed=None):
    return SimpleNamespace(name=name, executed=executed, job=None, skip_job=False, queue="gpu", job_type=None,
                           job_started=None, job_ended=None)


def test_each_node_without_a_result_gets_its_newest_step_task_back(monkeypatch, capsys):
    children = {"ingest": ("t-ingest", "completed"), "index": ("t-index", "completed"),
                "eval": ("t-eval", "in_progress"), "finetune": ("t-ft", "failed"), "benchmark": ("t-b", "stopped"),
                "report": ("t-r", "created")}
    tasks = {tid: FakeTask(tid, status) for tid, status in children.values()}
    monkeypatch.setattr(resume, "newest_children",
                        lambda cid: {n: {"id": tid, "status": st} for n, (tid, st) in children.items()})
    monkeypatch.setattr(resume, "attach_job", lambda cls, tid: FakeJob(tasks[tid]))
    ctl = SimpleNamespace(_task=SimpleNamespace(id="controller"), _clearml_job_class=object, _running_nodes=[],
                          _default_execution_queue="gpu", _parse_step_ref=lambda v: v,
                          _nodes={"ingest": node("ingest", executed="t-ingest"), "index": node("index"),
                                  "eval": node("eval"), "finetune": node("finetune"), "benchmark": node("benchmark"),
                                  "report": node("report"), "merge": node("merge")})
    lines = resume.reattach_steps(ctl)
    assert ctl._nodes["ingest"].job is None  # completed and recorded: nothing to do
    assert ctl._running_nodes == ["index", "eval", "finetune", "benchmark", "report"]  # "merge" never launched
    assert {name: ctl._nodes[name].job.task.id for name in ctl._running_nodes} == {
        "index": "t-index", "eval": "t-eval", "finetune": "t-ft", "benchmark": "t-b", "report": "t-r"}
    launched = {name: ctl._nodes[name].job.launched for name in ctl._running_nodes}
    # the completed one is kept, the running one watched, the failed one left to the retry policy
    assert launched == {"index": [], "eval": [], "finetune": [], "benchmark": ["gpu"], "report": ["gpu"]}
    assert tasks["t-b"].props[ATTEMPTS_PROPERTY] == "2" and ATTEMPTS_PROPERTY not in tasks["t-r"].props
    assert "resume: step index is task t-index (completed); kept, not run again" in lines
    assert "resume: step benchmark is task t-b (stopped); enqueued again on gpu as attempt 2" in lines
    assert "resume: step eval is task t-eval (in_progress)" in capsys.readouterr().out


@pytest.fixture
def controller_task(monkeypatch):
    task = FakeTask("c1", "in_progress")
    enqueued = []
    fake_task_cls = SimpleNamespace(get_task=lambda task_id: task if task_id == "c1" else None,
                                    enqueue=lambda t, **kw: enqueued.append(kw))
    import clearml

    monkeypatch.setattr(clearml, "Task", fake_task_cls)
    monkeypatch.setattr(resume, "_queue_name", lambda qid: "services")
    return task, enqueued


def test_resume_refuses_a_controller_its_agent_still_runs(monkeypatch, controller_task):
    task, enqueued = controller_task
    monkeypatch.setattr(resume, "worker_running", lambda t: ("services-agent", 4.0))
    with pytest.raises(UserError, match="running on agent services-agent .last report 4 s ago.*--force"):
        resume.resume_pipeline("c1")
    assert enqueued == [] and task.status == "in_progress"


def test_resume_marks_a_dead_controller_aborted_and_enqueues_the_same_task(monkeypatch, controller_task):
    task, enqueued = controller_task
    monkeypatch.setattr(resume, "worker_running", lambda t: ("", None))  # its agent is gone
    message = resume.resume_pipeline("c1")
    assert task.stopped_with["status_reason"] == "slm pipeline resume: its agent is gone"
    assert enqueued == [{"queue_id": "queue-id-1"}]
    assert message.startswith("pipeline c1 (in_progress) re-enqueued on services")


def test_resume_of_a_finished_or_queued_controller_changes_nothing(monkeypatch, controller_task):
    task, enqueued = controller_task
    task.status = "completed"
    assert "already completed" in resume.resume_pipeline("c1")
    task.status = "queued"
    assert "already queued" in resume.resume_pipeline("c1")
    assert enqueued == []
    with pytest.raises(UserError, match="no pipeline controller task 'nope'"):
        resume.resume_pipeline("nope")

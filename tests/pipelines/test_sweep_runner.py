"""Running a sweep: the optimizer driven in this process (and always stopped), or a draft optimizer task
sent to a CPU queue and read back there from its `sweep` configuration."""
from __future__ import annotations

import json
from dataclasses import asdict
from types import SimpleNamespace

import pytest

from components.core.errors import UserError
from pipelines import sweep_runner
from pipelines.sweep_runner import (SWEEP_CONFIG, SWEEP_ENTRY, SweepJob, launch_remote, run_here, run_remote_sweep,
                                   run_sweep)

JOB = SweepJob("finetune", ["finetune/r=int:4:8"], "Summary", "eval_loss", "min", "tmpl", "gpu", 2, 4,
               "slm-experiments/sweeps", time_limit_minutes=30.0, job_time_limit_minutes=5.0, top=3)


def test_stopping_a_finished_sweep_does_not_wait_for_the_reporter_to_wake():
    """ClearML's stop() joins the reporting thread without waking it once the optimization thread ended;
    that thread sleeps for its report period (minutes) first. stop_optimizer wakes it."""
    import threading
    import time

    from clearml.automation import HyperParameterOptimizer

    from pipelines.sweep_runner import stop_optimizer

    optimizer = HyperParameterOptimizer.__new__(HyperParameterOptimizer)  # the state after a finished sweep
    optimizer._thread, optimizer.optimizer = None, None
    optimizer._stop_event = threading.Event()
    optimizer._thread_reporter = threading.Thread(target=optimizer._stop_event.wait, args=(300,), daemon=True)
    optimizer._thread_reporter.start()
    started = time.perf_counter()
    stop_optimizer(optimizer)
    assert time.perf_counter() - started < 5 and not optimizer._thread_reporter.is_alive()


def test_a_sweep_job_round_trips_through_its_task_configuration():
    from dataclasses import asdict

    from pipelines.sweep_runner import SweepJob

    job = SweepJob("finetune", ["finetune/r=int:4:8"], "Summary", "eval_loss", "min", "tmpl", "gpu", 2, 4,
                   "slm-experiments/sweeps", time_limit_minutes=30.0)
    assert SweepJob(**json.loads(json.dumps(asdict(job)))) == job
    assert job.task_name == "sweep finetune: Summary/eval_loss"


def test_a_remote_sweep_on_its_jobs_queue_is_refused():
    from pipelines.sweep_runner import SweepJob, launch_remote

    job = SweepJob("finetune", ["finetune/r=int:4:8"], "Summary", "eval_loss", "min", "tmpl", "gpu", 2, 4, "p")
    with pytest.raises(UserError, match="deadlock"):
        launch_remote(job, "gpu", None, "image")


class FakeOptimizer:
    def __init__(self, wait_raises: BaseException | None = None):
        self.calls: list[str] = []
        self.wait_raises = wait_raises

    def start(self):
        self.calls.append("start")

    def wait(self):
        self.calls.append("wait")
        if self.wait_raises:
            raise self.wait_raises

    def stop(self):
        self.calls.append("stop")


@pytest.fixture
def optimizer(monkeypatch):
    """build_optimizer/summarize_sweep replaced: what run_sweep passes on, and the rows it is handed."""
    state = SimpleNamespace(optimizer=FakeOptimizer(), built={}, rows=[{"rank": 1, "task_id": "a"}], top=None)

    def build_optimizer(base_task_id, space, title, series, direction, **kwargs):
        state.built = dict(base_task_id=base_task_id, space=space, title=title, series=series, direction=direction,
                           **kwargs)
        return state.optimizer

    def summarize(optimizer, top_n):
        state.top = top_n
        return state.rows

    monkeypatch.setattr(sweep_runner, "build_optimizer", build_optimizer)
    monkeypatch.setattr(sweep_runner, "summarize_sweep", summarize)
    monkeypatch.setattr(sweep_runner, "format_summary", lambda rows, series: f"table of {len(rows)} by {series}")
    return state


def test_run_sweep_builds_from_the_job_runs_to_the_end_and_logs_the_summary(optimizer):
    logged: list[str] = []
    assert run_sweep(JOB, log=logged.append) == optimizer.rows
    built = optimizer.built
    assert (built["base_task_id"], built["title"], built["series"], built["direction"]) == (
        "tmpl", "Summary", "eval_loss", "min")
    assert [p.key for p in built["space"]] == ["finetune/r"]
    assert (built["max_concurrent"], built["total_jobs"], built["queue"], built["stage"], built["spawn_project"],
            built["time_limit_minutes"], built["job_time_limit_minutes"]) == (
        2, 4, "gpu", "finetune", "slm-experiments/sweeps", 30.0, 5.0)
    assert optimizer.optimizer.calls == ["start", "wait", "stop"] and optimizer.top == 3
    assert logged == ["up to 4 jobs of tmpl on 'gpu', min Summary/eval_loss", "table of 1 by eval_loss"]


def test_a_sweep_in_which_no_job_reported_the_objective_fails(optimizer):
    optimizer.rows = [{"rank": "-", "task_id": "a"}, {"rank": "-", "task_id": "b"}]
    with pytest.raises(RuntimeError, match=r"no job reported Summary/eval_loss.*clearml #285"):
        run_sweep(JOB, log=lambda text: None)


def test_the_optimizer_is_stopped_on_ctrl_c(optimizer):
    optimizer.optimizer = FakeOptimizer(wait_raises=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_sweep(JOB, log=lambda text: None)
    assert optimizer.optimizer.calls == ["start", "wait", "stop"]  # running jobs are aborted, not left behind


class FakeTask:
    """clearml.Task for run_here / launch_remote / run_remote_sweep."""
    created: list = []
    enqueued: list = []
    locally = True
    config: str | None = None

    def __init__(self, **kwargs):
        self.kwargs, self.id, self.configuration, self.closed = kwargs, "opt-1", {}, False
        FakeTask.created.append(self)

    class TaskTypes:
        optimizer = "optimizer"

    @classmethod
    def init(cls, **kwargs):
        return cls(**kwargs)

    @classmethod
    def create(cls, **kwargs):
        return cls(**kwargs)

    @classmethod
    def enqueue(cls, task, queue_name):
        cls.enqueued.append((task, queue_name))

    @classmethod
    def running_locally(cls):
        return cls.locally

    def set_configuration_object(self, name, text):
        self.configuration[name] = text

    def get_configuration_object(self, name):
        return self.config

    def close(self):
        self.closed = True


@pytest.fixture
def fake_task(monkeypatch):
    import clearml

    monkeypatch.setattr(clearml, "Task", FakeTask)
    FakeTask.created, FakeTask.enqueued, FakeTask.locally, FakeTask.config = [], [], True, None
    return FakeTask


def test_launch_remote_sends_a_draft_optimizer_task_holding_the_job(fake_task):
    source = SimpleNamespace(repo="https://git.example/slm.git", branch="main", commit="")
    assert launch_remote(JOB, "services", source, "python:3.11") == "opt-1"
    (task,) = fake_task.created
    assert task.kwargs["script"] == SWEEP_ENTRY and task.kwargs["task_type"] == "optimizer"
    assert (task.kwargs["repo"], task.kwargs["branch"], task.kwargs["commit"]) == (source.repo, "main", None)
    assert task.kwargs["docker"] == "python:3.11" and task.kwargs["task_name"] == "sweep finetune: Summary/eval_loss"
    assert SweepJob(**json.loads(task.configuration[SWEEP_CONFIG])) == JOB
    assert fake_task.enqueued == [(task, "services")]


def test_run_here_records_the_job_and_closes_the_task_even_when_the_sweep_fails(fake_task, monkeypatch, capsys):
    def failing(job):
        raise RuntimeError("no job reported")

    monkeypatch.setattr(sweep_runner, "run_sweep", failing)
    with pytest.raises(RuntimeError):
        run_here(JOB)
    (task,) = fake_task.created
    assert task.kwargs["project_name"] == "slm-experiments/sweeps" and task.kwargs["task_type"] == "optimizer"
    assert json.loads(task.configuration[SWEEP_CONFIG]) == asdict(JOB) and task.closed
    assert capsys.readouterr().out == "sweep opt-1: "
    monkeypatch.setattr(sweep_runner, "run_sweep", lambda job: [])
    assert run_here(JOB) == "opt-1"


def test_the_remote_entry_refuses_to_run_locally(fake_task, capsys):
    assert run_remote_sweep() == 2
    assert "pipelines/sweep_runner.py is what an agent runs" in capsys.readouterr().err
    assert fake_task.created == []


def test_on_an_agent_the_job_comes_from_the_task_configuration(fake_task, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(sweep_runner, "run_sweep", ran.append)
    fake_task.locally = False
    fake_task.config = json.dumps(asdict(JOB))
    assert run_remote_sweep() == 0 and ran == [JOB]
    fake_task.config = json.dumps({"stage": "finetune"})  # edited into something that is not a sweep
    assert run_remote_sweep() == 2
    assert capsys.readouterr().err.startswith("error: the task's 'sweep' configuration is not a sweep")
    fake_task.config = None
    assert run_remote_sweep() == 2 and ran == [JOB]

"""The controller's watch over running steps (pipelines/step_watch.py), mixed into a stand-in for ClearML's
PipelineController: a step whose agent died is marked aborted with its reason and re-enqueued as the next
attempt (counted against fleet.retries), a step that finished meanwhile is never run twice, and a step that
keeps reporting is never touched. No server: the facts and the task calls are fakes that keep the server's
rule (`tasks.stopped` applies only to a task still in_progress)."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from pipelines import step_watch
from pipelines.fleet import FleetRetry
from pipelines.liveness import StepFacts
from pipelines.step_watch import ATTEMPTS_PROPERTY, StepWatchMixin, attempts_of, stale_after_s


@dataclass
class FakeTask:
    id: str
    status: str = "in_progress"
    status_message: str = ""
    status_reason: str = ""
    last_update: str = "u0"
    properties: dict = field(default_factory=dict)
    log: list = field(default_factory=list)
    finish_before_stop: bool = False  # completes between the controller's check and its stop request

    @property
    def data(self):
        return SimpleNamespace(status_message=self.status_message, status_reason=self.status_reason)

    def reload(self):
        pass

    def stopped(self, ignore_errors=True, force=False, status_reason=None, status_message=None):
        if self.finish_before_stop:
            self.status = "completed"
        if self.status not in ("in_progress", "stopped") and not force:
            raise RuntimeError(f"Invalid status change ({self.status} -> stopped)")
        self.status, self.status_reason, self.status_message = "stopped", status_reason, status_message

    def get_user_properties(self):
        return {k: {"value": v} for k, v in self.properties.items()}

    def set_user_properties(self, **values):
        self.properties.update(values)

    def get_logger(self):
        return SimpleNamespace(report_text=self.log.append)


class FakeJob:
    def __init__(self, task):
        self.task, self.launched = task, []

    def task_id(self):
        return self.task.id

    def is_cached_task(self):
        return False

    def launch(self, queue_name=None):
        self.launched.append(queue_name)
        self.task.status = "queued"
        return True


class FakeController:
    """What StepWatchMixin uses of PipelineController."""

    def __init__(self, parameters):
        self._pool_frequency = 12.0
        self._retries, self._retries_callbacks = {}, {}
        self._default_execution_queue = None
        self.parameters = parameters
        self._nodes, self._running_nodes = {}, []

    def _update_nodes_status(self):
        pass

    def get_parameters(self):
        return self.parameters

    def _parse_step_ref(self, value):
        return value


class Controller(StepWatchMixin, FakeController):
    pass


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(step_watch.time, "monotonic", lambda: now[0])
    return now


def pipeline(monkeypatch, tasks: list[FakeTask], retries: int = 3, worker_alive=lambda task: False):
    ctl = Controller({"fleet_step_stale_after_s": "20", "fleet_retries": str(retries),
                      "fleet_queues": "cpu:0,gpu-16gb:16"})
    for task in tasks:
        name = f"step_{task.id}"
        ctl._nodes[name] = SimpleNamespace(name=name, job=FakeJob(task), executed=None, queue="gpu-16gb")
        ctl._running_nodes.append(name)
        ctl._retries_callbacks[name] = FleetRetry()

    def facts(ids):
        return [StepFacts(task_id=t.id, status=t.status, status_message=t.status_message, last_update=t.last_update,
                          worker="gpu-0", worker_registered=True, worker_task=t.id if worker_alive(t) else "",
                          worker_last_activity=t.last_update) for t in tasks if t.id in ids]

    monkeypatch.setattr(step_watch, "fetch_step_facts", facts)
    ctl._slm_start_watching()
    return ctl


def run_for(ctl, clock, seconds: float, step: float = 5.0, each=None):
    end = clock[0] + seconds
    while clock[0] < end:
        clock[0] += step
        if each:
            each()
        ctl._update_nodes_status()


def test_a_step_whose_agent_died_is_marked_aborted_and_re_enqueued_as_the_next_attempt(monkeypatch, clock):
    task = FakeTask("t1")
    ctl = pipeline(monkeypatch, [task])
    assert ctl._pool_frequency == 5.0  # a quarter of the 20 s threshold
    run_for(ctl, clock, 15)
    assert task.status == "in_progress"  # not yet: 15 s < 20 s
    run_for(ctl, clock, 15)
    job = ctl._nodes["step_t1"].job
    assert job.launched == ["gpu-16gb"] and task.status == "queued"
    assert task.status_reason.startswith("slm: no sign of life for 2") and "fleet.step_stale_after_s=20" in task.status_reason
    assert task.status_message == "slm: agent taken for dead; re-enqueued"
    assert attempts_of(task) == 2 and task.properties[ATTEMPTS_PROPERTY] == "2"
    assert any("re-enqueued on gpu-16gb as attempt 2" in line and "retry 1 of 3" in line for line in task.log)


def test_a_step_that_keeps_reporting_is_never_given_up_on(monkeypatch, clock):
    task = FakeTask("t1")
    ctl = pipeline(monkeypatch, [task])
    ticks = iter(range(10**6))
    run_for(ctl, clock, 600, each=lambda: setattr(task, "last_update", f"u{next(ticks) // 3}"))
    assert task.status == "in_progress" and ctl._nodes["step_t1"].job.launched == []


def test_an_agent_that_keeps_reporting_the_step_keeps_it_alive(monkeypatch, clock):
    task = FakeTask("t1")
    ctl = pipeline(monkeypatch, [task], worker_alive=lambda t: True)
    ticks = iter(range(10**6))
    # the task itself says nothing, its agent reports every 5 s (its last_activity moves; here: last_update)
    run_for(ctl, clock, 300, each=lambda: setattr(task, "last_update", f"u{next(ticks)}"))
    assert task.status == "in_progress"


def test_a_step_that_finished_meanwhile_is_not_run_twice(monkeypatch, clock):
    task = FakeTask("t1", finish_before_stop=True)  # completes between the check and the stop request
    ctl = pipeline(monkeypatch, [task])
    run_for(ctl, clock, 30)
    assert task.status == "completed" and ctl._nodes["step_t1"].job.launched == []
    assert ATTEMPTS_PROPERTY not in task.properties


def test_a_step_seen_finished_at_the_check_is_left_to_the_loop(monkeypatch, clock):
    task = FakeTask("t1")
    ctl = pipeline(monkeypatch, [task])
    run_for(ctl, clock, 15)
    monkeypatch.setattr(task, "reload", lambda: setattr(task, "status", "completed"))
    run_for(ctl, clock, 15)
    assert task.status == "completed" and ctl._nodes["step_t1"].job.launched == []


def test_attempts_count_against_fleet_retries_then_the_step_stays_aborted(monkeypatch, clock):
    task = FakeTask("t1")
    ctl = pipeline(monkeypatch, [task], retries=1)

    def agent_takes_it_and_dies():  # each re-enqueued attempt is picked up and goes silent again
        if task.status == "queued":
            task.status, task.last_update = "in_progress", f"u{clock[0]}"

    run_for(ctl, clock, 200, each=agent_takes_it_and_dies)
    assert ctl._nodes["step_t1"].job.launched == ["gpu-16gb"]  # one retry (fleet.retries=1), no more
    assert task.status == "stopped" and task.status_message == "slm: agent taken for dead"
    assert any("not re-enqueued" in line and "failed 2 times" in line for line in task.log)


def test_the_servers_watchdog_stop_is_re_enqueued_at_once(monkeypatch, clock):
    task = FakeTask("t1", status="stopped", status_message="Forced stop (non-responsive)")
    ctl = pipeline(monkeypatch, [task])
    run_for(ctl, clock, 5)
    assert ctl._nodes["step_t1"].job.launched == ["gpu-16gb"] and "watchdog" in task.status_reason


def test_an_unreachable_server_is_no_verdict_and_its_silence_is_not_counted(monkeypatch, clock):
    task = FakeTask("t1")
    ctl = pipeline(monkeypatch, [task])
    run_for(ctl, clock, 10)
    facts = step_watch.fetch_step_facts

    def unreachable(ids):
        raise ConnectionError("server unreachable")

    monkeypatch.setattr(step_watch, "fetch_step_facts", unreachable)
    run_for(ctl, clock, 60)
    monkeypatch.setattr(step_watch, "fetch_step_facts", facts)
    run_for(ctl, clock, 15)  # back: 15 s of silence seen since, under the threshold
    assert task.status == "in_progress"
    run_for(ctl, clock, 10)
    assert task.status == "queued"


def test_the_threshold_comes_from_the_pipeline_parameters():
    assert stale_after_s({"fleet_step_stale_after_s": "45"}) == 45.0
    assert stale_after_s({}) == stale_after_s({"fleet_step_stale_after_s": "nonsense"}) == 600.0

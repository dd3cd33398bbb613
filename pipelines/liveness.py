"""Dead-agent detection for the steps of a running pipeline: pure functions over plain task facts.

ClearML leaves a step whose agent died `in_progress`: the server's watchdog stops it only after 2 h, and
the PipelineController then still treats it as running (clearml automation/job.py), so a pipeline can wait
forever. The controller (pipelines.step_watch) reads these facts of each running step every few seconds and
gives a step up after `fleet.step_stale_after_s` without a sign of life.

A sign of life is any change in what the server knows of the step: the task's `last_update` (every report
the step makes, every log line, moves it) or `last_iteration`, or a status report of the agent that runs
it, while that agent is registered and says it runs this task. Changes are compared with what the
controller saw before, never with the controller's clock, so clocks on other machines do not matter, and
silence is only counted while the controller could see the server: after a gap in its own view (the server
unreachable, the controller paused or restarted) every step gets a full `step_stale_after_s` again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# What the server's watchdog writes when it stops a task after 2 h of silence (clearml-server
# non_responsive_tasks_watchdog); ClearML's controller reads that as "still running".
NONRESPONSIVE = "forced stop (non-responsive)"
STALE_MARK = "slm: no sign of life"  # starts the status reason of a step given up on here


@dataclass(frozen=True)
class StepFacts:
    """What the server says about a step's task and the agent running it (times as the server wrote them)."""
    task_id: str
    status: str
    status_message: str = ""
    last_update: str = ""
    last_iteration: int | None = None
    worker: str = ""  # the task's last_worker
    worker_registered: bool = False
    worker_task: str = ""  # the task that worker reports running ('' for none)
    worker_last_activity: str = ""

    @property
    def worker_runs_it(self) -> bool:
        return self.worker_registered and bool(self.worker) and self.worker_task == self.task_id

    def signs(self) -> tuple:
        """A change here is a sign of life: of the task, and of its agent while that says it runs this task
        (an agent vanishing, or turning to another task, is a change but no sign of life: None)."""
        return (self.status, self.last_update, self.last_iteration,
                self.worker_last_activity if self.worker_runs_it else None)

    def worker_note(self) -> str:
        if not self.worker:
            return "no agent recorded"
        if not self.worker_registered:
            return f"agent {self.worker} no longer registered"
        if self.worker_task != self.task_id:
            return f"agent {self.worker} runs {self.worker_task or 'nothing'} now"
        return f"agent {self.worker} silent since {self.worker_last_activity or '?'}"


@dataclass(frozen=True)
class Watch:
    """The controller's memory of one step: its signs, and its own clock when they last changed."""
    task_id: str
    signs: tuple
    since: float


@dataclass(frozen=True)
class Verdict:
    stale: bool
    silent_s: float = 0.0
    reason: str = ""


def observe(watch: Watch | None, facts: StepFacts, now: float) -> Watch:
    """The watch after seeing `facts` at `now`: restarted on a new task or a sign of life; the agent's last
    report seen is kept while it is gone, so its return with nothing new is no sign either."""
    signs = facts.signs()
    if watch is None or watch.task_id != facts.task_id:
        return Watch(facts.task_id, signs, now)
    *task_part, worker_part = signs
    *seen_task_part, seen_worker_part = watch.signs
    if task_part != seen_task_part or (worker_part is not None and worker_part != seen_worker_part):
        return Watch(facts.task_id, signs, now)
    return watch


def judge(watch: Watch, facts: StepFacts, now: float, stale_after_s: float) -> Verdict:
    """Stale: running and silent for `stale_after_s`, or stopped by the server's watchdog as non-responsive
    (whose agent nobody will bring back on an open-source fleet). Queued and finished steps never are."""
    if facts.status == "stopped" and facts.status_message.strip().lower() == NONRESPONSIVE:
        return Verdict(True, now - watch.since, f"{STALE_MARK}: the server's watchdog stopped it as non-responsive "
                                                f"({facts.worker_note()})")
    silent = now - watch.since
    if facts.status != "in_progress" or silent < stale_after_s:
        return Verdict(False, silent)
    return Verdict(True, silent, f"{STALE_MARK} for {silent:.0f} s (fleet.step_stale_after_s={stale_after_s:g}): "
                                 f"task last updated {facts.last_update or '?'}, {facts.worker_note()}")


@dataclass
class LivenessMonitor:
    """Watches every running step across polls. `poll(facts, now)` after each successful read of the
    server; a gap longer than `blind_after_s` since the previous one means the controller could not see
    (an outage, a pause): the silence it did not see is not counted against any step."""
    stale_after_s: float
    blind_after_s: float
    watches: dict[str, Watch] = field(default_factory=dict)
    last_poll: float | None = None

    def poll(self, facts: list[StepFacts], now: float) -> list[tuple[StepFacts, Verdict]]:
        blind = self.last_poll is not None and now - self.last_poll > self.blind_after_s
        self.last_poll = now
        if blind:
            self.watches.clear()
        self.watches = {f.task_id: observe(self.watches.get(f.task_id), f, now) for f in facts}
        return [(f, judge(self.watches[f.task_id], f, now, self.stale_after_s)) for f in facts]

    def forget(self, task_id: str) -> None:
        """The step was re-enqueued: its next attempt is watched from scratch."""
        self.watches.pop(task_id, None)


def poll_interval(stale_after_s: float, default_s: float = 12.0) -> float:
    """How often the controller reads the steps: ClearML's 12 s, or a quarter of the threshold when that is
    shorter, so a step is given up on within about 1.25 x the threshold."""
    return max(1.0, min(default_s, stale_after_s / 4))


def blind_after(stale_after_s: float, interval_s: float) -> float:
    """A gap between two reads longer than this is a gap in the controller's sight: three missed polls, and
    never less than half the threshold."""
    return max(3 * interval_s, stale_after_s / 2)


def fetch_step_facts(task_ids: list[str]) -> list[StepFacts]:
    """The facts of `task_ids` from the server: two requests (the tasks, the registered workers). Raises
    when the server does not answer; the caller treats that as a gap in its sight."""
    from clearml.backend_api.session.client import APIClient

    if not task_ids:
        return []
    client = APIClient()
    tasks = client.tasks.get_all(id=list(task_ids), only_fields=[
        "id", "status", "status_message", "last_update", "last_iteration", "last_worker"])
    workers = {w.id: w for w in client.workers.get_all()}
    facts = []
    for t in tasks:
        worker = workers.get(t.last_worker or "")
        running = getattr(getattr(worker, "task", None), "id", "") or ""
        facts.append(StepFacts(
            task_id=t.id, status=str(t.status), status_message=str(t.status_message or ""),
            last_update=str(t.last_update or ""), last_iteration=t.last_iteration, worker=t.last_worker or "",
            worker_registered=worker is not None, worker_task=running,
            worker_last_activity=str(getattr(worker, "last_activity_time", "") or "")))
    return facts

"""The controller's watch over its running steps: a mixin of the PipelineController subclass
(pipelines.controller.controller_class) that gives up on a step whose agent died and runs it again.

ClearML's `_daemon` loop calls `_update_nodes_status` on every pass (every `_pool_frequency` seconds);
`StepWatchMixin` extends that one hook: after ClearML's own status update it reads the liveness facts of
the running steps (pipelines.liveness) at most once per poll interval, and a stale step is

1. checked again: a step that finished meanwhile is left to the loop (never run twice);
2. marked aborted with a status reason saying why (`tasks.stopped`, which the server applies only while the
   task is still `in_progress`: a step completing in that instant is not overwritten);
3. re-enqueued on its queue as the same task, the next attempt (the retry policy counts it against
   `fleet.retries`; the attempt number is kept on the step task as the user property `slm_attempts`), or,
   with the retries spent, left aborted: the loop then ends the branch and the pipeline fails.

The mixin holds no state the rebuilt controller on an agent would lose: the threshold comes from the
pipeline parameter `fleet_step_stale_after_s`, the attempts from the step tasks.
"""
from __future__ import annotations

import time

from components.core.config import AppConfig
from pipelines.liveness import (NONRESPONSIVE, LivenessMonitor, blind_after, fetch_step_facts, poll_interval)

ATTEMPTS_PROPERTY = "slm_attempts"


def attempts_of(task) -> int:
    """The attempt number recorded on a step task (1 before any re-enqueue)."""
    value = (task.get_user_properties() or {}).get(ATTEMPTS_PROPERTY) or {}
    try:
        return int(value.get("value", 1) if isinstance(value, dict) else value)
    except (TypeError, ValueError):
        return 1


def count_attempt(task) -> int:
    """Record that the task is enqueued once more; its new attempt number."""
    attempt = attempts_of(task) + 1
    task.set_user_properties(**{ATTEMPTS_PROPERTY: str(attempt)})
    return attempt


def stale_after_s(parameters: dict) -> float:
    """`fleet_step_stale_after_s` of the pipeline's parameters (edited on NEW RUN or not), else the default."""
    try:
        value = float(parameters.get("fleet_step_stale_after_s") or 0)
    except (TypeError, ValueError):
        value = 0.0
    return value if value > 0 else AppConfig().fleet.step_stale_after_s


def _say(node_task, message: str) -> None:
    """Into the controller's log and the step's own."""
    print(message, flush=True)
    try:
        node_task.get_logger().report_text(message)
    except Exception:  # the step's log is a courtesy; the controller's line is the record
        pass


class StepWatchMixin:
    """Dead-agent detection for PipelineController (see the module's docstring)."""

    _slm_monitor: LivenessMonitor | None = None
    _slm_interval: float = 12.0
    _slm_next_check: float = 0.0
    _slm_blind_logged: bool = False

    def _slm_start_watching(self) -> None:
        """Called once the pipeline's parameters are known (after ClearML's `_prepare_pipeline`)."""
        stale = stale_after_s(self.get_parameters() or {})
        self._slm_interval = poll_interval(stale, self._pool_frequency)
        self._pool_frequency = min(self._pool_frequency, self._slm_interval)
        self._slm_monitor = LivenessMonitor(stale, blind_after(stale, self._slm_interval))
        print(f"watching running steps: a step with no sign of life for {stale:g} s is re-enqueued "
              f"(checked every {self._slm_interval:g} s)", flush=True)

    def _update_nodes_status(self) -> None:
        super()._update_nodes_status()
        if self._slm_monitor is None or time.monotonic() < self._slm_next_check:
            return
        self._slm_next_check = time.monotonic() + 0.8 * self._slm_interval
        self._slm_check_liveness()

    def _slm_running(self) -> dict:
        """task id -> node of every step with a launched job that has not ended."""
        running = {}
        for name in list(self._running_nodes):
            node = self._nodes.get(name)
            if node is not None and node.job is not None and not node.executed and not node.job.is_cached_task():
                running[node.job.task_id()] = node
        return running

    def _slm_check_liveness(self) -> None:
        running = self._slm_running()
        if not running:
            return
        try:
            facts = fetch_step_facts(list(running))
        except Exception as e:  # the server out of reach: no verdict; the monitor sees the gap afterwards
            if not self._slm_blind_logged:
                print(f"cannot read the steps' liveness ({type(e).__name__}: {e}); judging none until it answers",
                      flush=True)
            self._slm_blind_logged = True
            return
        self._slm_blind_logged = False
        for fact, verdict in self._slm_monitor.poll(facts, time.monotonic()):
            if verdict.stale:
                self._slm_give_up_on(running[fact.task_id], verdict.reason)

    def _slm_retry_decision(self, node) -> tuple[bool, str]:
        policy = self._retries_callbacks.get(node.name)
        if hasattr(policy, "stale_decision"):  # pipelines.fleet.FleetRetry
            decision = policy.stale_decision(self, node)
            return decision.retry, decision.message
        limit = AppConfig().fleet.retries
        used = self._retries.get(node.name, 0)
        return used < limit, f"step {node.name}: retry {used + 1} of {limit}"

    def _slm_give_up_on(self, node, reason: str) -> None:
        task = node.job.task
        task.reload()  # check before re-enqueue: a step that finished meanwhile is the loop's
        status, message = str(task.status), str(task.data.status_message or "")
        if status != "in_progress" and not (status == "stopped" and message.strip().lower() == NONRESPONSIVE):
            print(f"step {node.name}: was taken for dead but is {status} now; left as it is", flush=True)
            self._slm_monitor.forget(task.id)
            return
        retry, decision = self._slm_retry_decision(node)
        try:  # applied by the server only while the task is still in_progress (or the watchdog's stopped)
            task.stopped(ignore_errors=False, status_reason=reason[:255],
                         status_message="slm: agent taken for dead" + ("; re-enqueued" if retry else ""))
        except Exception as e:
            print(f"step {node.name}: its status changed while being given up on ({e}); left as it is",
                  flush=True)
            self._slm_monitor.forget(task.id)
            return
        self._slm_monitor.forget(task.id)
        if not retry:
            _say(task, f"step {node.name}: {reason}; marked aborted, not re-enqueued ({decision})")
            return
        self._retries[node.name] = self._retries.get(node.name, 0) + 1
        attempt = count_attempt(task)
        queue = self._parse_step_ref(node.queue) or self._default_execution_queue
        _say(task, f"step {node.name}: {reason}; marked aborted and re-enqueued on {queue} as attempt {attempt} "
                   f"({decision})")
        if not node.job.launch(queue_name=queue):
            print(f"step {node.name}: re-enqueue on {queue} failed; it stays aborted", flush=True)
            return
        node.job._last_status, node.job._last_status_ts = "queued", time.time()  # not "stopped" in this pass

    def _relaunch_node(self, node) -> None:
        """ClearML's retry of a failed step, with the attempt recorded on the task."""
        if node.job is not None:
            count_attempt(node.job.task)
        super()._relaunch_node(node)

"""A pipeline controller that continues where a dead one stopped, and `slm pipeline resume`.

ClearML continues a controller task re-enqueued as itself (`always_create_from_code=False`, the same task
id): nodes whose step completed keep it (`executed`), failed and aborted ones are reset (clearml 2.1.12
`_prepare_pipeline`). What it forgets is the steps that were *running* when the controller died: their task
ids are dropped, so each would be cloned and run again beside (or after) the one still running.
`reattach_steps` gives every node that has no result yet its newest step task back (found as a child task
of the controller with the node's name, so a step launched a moment before the controller's state was saved
is found too), and the loop takes it from there:

| step task       | what happens                                                               |
| completed       | kept: its children are launched, it never runs again                       |
| queued, running | watched (pipelines.step_watch gives it up if its agent died too)           |
| failed          | the retry policy decides (pipelines.fleet.FleetRetry), as for any failure |
| stopped, draft  | enqueued again as the same task, the next attempt                          |

`resume_pipeline` is the operator's side: it refuses while the controller's agent still reports running it,
else marks the dead controller aborted and re-enqueues the same controller task.
"""
from __future__ import annotations

from datetime import datetime, timezone

from components.core.errors import UserError
from pipelines.step_watch import count_attempt

FINISHED_OK = ("completed", "published")


def newest_children(controller_id: str) -> dict[str, dict]:
    """Node name -> the newest step task the controller created under that name (id, status)."""
    from clearml.backend_api.session.client import APIClient

    tasks = APIClient().tasks.get_all(parent=controller_id, search_hidden=True, order_by=["created"],
                                      only_fields=["id", "name", "status", "created"])
    return {t.name: {"id": t.id, "status": str(t.status)} for t in tasks}  # later (newer) ones win


def attach_job(job_class, task_id: str):
    """A ClearML job object over an existing step task (ClearmlJob's constructor only clones or takes a
    draft)."""
    from clearml import Task
    from clearml.automation.job import BaseJob

    job = job_class.__new__(job_class)
    BaseJob.__init__(job)
    job.task = Task.get_task(task_id=task_id)
    job.task_started = str(job.task.status) != "created"
    job._enable_local_imports = True
    return job


def reattach_steps(controller) -> list[str]:
    """Give the nodes without a result their step tasks back (see the module's docstring); one line per
    node reattached, also printed into the controller's log."""
    children = newest_children(controller._task.id)
    lines = []
    for name, node in controller._nodes.items():
        child = children.get(name)
        if node.executed or node.job is not None or node.skip_job or child is None:
            continue
        job = attach_job(controller._clearml_job_class, child["id"])
        node.job, node.job_type = job, str(job.task.task_type)
        node.job_started = node.job_ended = None
        controller._running_nodes.append(name)
        status = child["status"]
        line = f"resume: step {name} is task {child['id']} ({status})"
        if status in ("stopped", "created"):
            attempt = count_attempt(job.task) if status == "stopped" else 1
            queue = controller._parse_step_ref(node.queue) or controller._default_execution_queue
            job.launch(queue_name=queue)
            line += f"; enqueued again on {queue} as attempt {attempt}"
        elif status in FINISHED_OK:
            line += "; kept, not run again"
        lines.append(line)
        print(line, flush=True)
    return lines


def worker_running(task) -> tuple[str, float | None]:
    """(worker id, seconds since its last report) when a registered agent reports running `task` now,
    else ('', None)."""
    from clearml.backend_api.session.client import APIClient

    for w in APIClient().workers.get_all():
        if getattr(getattr(w, "task", None), "id", None) == task.id:
            last = getattr(w, "last_activity_time", None)
            age = None
            if isinstance(last, datetime):
                last = last if last.tzinfo else last.replace(tzinfo=timezone.utc)
                age = (datetime.now(timezone.utc) - last).total_seconds()
            return w.id, age
    return "", None


def controller_task(controller_id: str):
    """The pipeline controller task `controller_id` on the server; one line naming it when there is none."""
    from clearml import Task

    try:
        task = Task.get_task(task_id=controller_id)
    except ValueError:
        task = None
    if task is None:
        raise UserError(f"no pipeline controller task {controller_id!r} on the server")
    return task


def resume_pipeline(controller_id: str, queue: str | None = None, force: bool = False,
                    alive_within_s: float = 120.0) -> str:
    """Re-enqueue the controller task `controller_id` so that it continues; what was done, in one line.

    A controller whose agent reported running it within `alive_within_s` is alive: refused unless `force`
    (two controllers would launch the same steps)."""
    from clearml import Task

    task = controller_task(controller_id)
    status = str(task.status)
    if status in FINISHED_OK:
        return f"pipeline {controller_id} already completed; nothing to resume"
    if status == "queued":
        return f"pipeline {controller_id} is already queued; an agent on its queue will continue it"
    if status == "in_progress":
        worker, age = worker_running(task)
        if worker and (age is None or age < alive_within_s) and not force:
            raise UserError(f"pipeline {controller_id} is running on agent {worker} (last report "
                            f"{'?' if age is None else f'{age:.0f} s'} ago); resume it only once that agent is "
                            "gone, or pass --force if you know it is dead")
        # applied only while it is still in_progress: a controller finishing in that instant is left alone
        task.stopped(ignore_errors=False, status_reason="slm pipeline resume: its agent is gone",
                     status_message="slm: controller taken for dead")
    target = queue or task.data.execution.queue
    if not target:
        raise UserError(f"pipeline {controller_id} was never enqueued; give --queue")
    kwargs = {"queue_name": queue} if queue else {"queue_id": target}
    Task.enqueue(task, **kwargs)
    return (f"pipeline {controller_id} ({status}) re-enqueued on {queue or _queue_name(target)}: completed steps "
            "are kept, running ones watched, failed ones retried")


def _queue_name(queue_id: str) -> str:
    from clearml.backend_api.session.client import APIClient

    try:
        return APIClient().queues.get_by_id(queue=queue_id).name
    except Exception:  # the name is only for the message
        return queue_id

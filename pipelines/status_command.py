"""`slm pipeline status` (each step of a pipeline on the server: its state, attempts, queue, task, agent) and
`slm pipeline resume` (continue a pipeline whose controller died; pipelines.resume).

    slm pipeline status <controller id> [--json]
    slm pipeline resume <controller id> [--queue Q] [--force]
"""
from __future__ import annotations

import argparse
import json

from components.core.errors import UserError

# A step task's status as a pipeline state (ClearML's own names in the pipeline view).
STATES = {"in_progress": "running", "queued": "queued", "completed": "completed", "published": "completed",
          "failed": "failed", "stopped": "aborted", "closed": "aborted", "created": "draft"}
COLUMNS = ["step", "state", "attempts", "queue", "task", "agent", "note"]


def step_rows(controller_id: str, dag: dict, children: dict[str, dict], tasks: dict[str, dict]) -> list[dict]:
    """One row per node of the controller's saved DAG: its task is the one recorded (`executed`, `job_id`),
    else the newest child task of that name (launched just before the controller's state was saved)."""
    rows = []
    for name, node in dag.items():
        task_id = node.get("executed") or node.get("job_id") or children.get(name, {}).get("id") or ""
        task = tasks.get(task_id, {})
        state = STATES.get(task.get("status", ""), node.get("status") or "pending") if task else (
            node.get("status") or ("skipped" if node.get("skip_job") else "pending"))
        if state == "completed" and task.get("parent") not in (None, "", controller_id):
            state = "cached"  # served from an earlier pipeline's step
        note = task.get("status_reason", "") if state in ("failed", "aborted") else ""
        rows.append({"step": name, "state": state, "attempts": task.get("attempts", 0 if not task else 1),
                     "queue": node.get("queue") or "", "task": task_id, "agent": task.get("worker", ""),
                     "note": note})
    return rows


def _task_facts(task_ids: list[str]) -> dict[str, dict]:
    from clearml.backend_api.session.client import APIClient

    from pipelines.step_watch import ATTEMPTS_PROPERTY

    if not task_ids:
        return {}
    found = APIClient().tasks.get_all(id=task_ids, search_hidden=True, only_fields=[
        "id", "status", "status_reason", "last_worker", "parent", "hyperparams"])
    facts = {}
    for t in found:
        props = (t.hyperparams or {}).get("properties") or {}
        item = props.get(ATTEMPTS_PROPERTY)
        attempts = (item.get("value") if isinstance(item, dict) else getattr(item, "value", None)) or 1
        facts[t.id] = {"status": str(t.status), "status_reason": t.status_reason or "", "worker": t.last_worker or "",
                       "parent": t.parent or "", "attempts": int(attempts)}
    return facts


def pipeline_status(controller_id: str) -> dict:
    from pipelines.resume import controller_task, newest_children, worker_running

    controller = controller_task(controller_id)
    dag = controller.get_configuration_object_as_dict("Pipeline") or {}
    if not dag:
        raise UserError(f"task {controller_id} is not a pipeline controller (it has no Pipeline configuration)")
    children = newest_children(controller_id)
    ids = {node.get("executed") or node.get("job_id") or children.get(name, {}).get("id") for name, node in dag.items()}
    worker, _ = worker_running(controller)
    return {"pipeline": controller.name, "id": controller_id, "status": str(controller.status), "agent": worker,
            "steps": step_rows(controller_id, dag, children, _task_facts(sorted(i for i in ids if i)))}


def cmd_pipeline_status(args: argparse.Namespace) -> int:
    from components.core.formatting import format_table

    _need_server("status")
    status = pipeline_status(args.pipeline_id)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    agent = f" on agent {status['agent']}" if status["agent"] else ""
    print(f"pipeline {status['pipeline']!r} ({status['id']}): {status['status']}{agent}")
    print(format_table(status["steps"], COLUMNS))
    return 0


def cmd_pipeline_resume(args: argparse.Namespace) -> int:
    from pipelines.resume import resume_pipeline

    _need_server("resume")
    print(resume_pipeline(args.pipeline_id, queue=args.queue, force=args.force))
    return 0


def _need_server(verb: str) -> None:
    from clearml_tasks._tracking import resolve_tracking

    if resolve_tracking("auto") != "online":
        raise UserError(f"`pipeline {verb}` needs a ClearML server (api.api_server in clearml.conf or "
                        "CLEARML_API_HOST)")


def register(actions: argparse._SubParsersAction) -> None:
    """Add `status` and `resume` to the `pipeline` command group."""
    p = actions.add_parser("status", help="each step of a pipeline: state, attempts, queue, task, agent",
                           description="Each step of a pipeline, read from its controller task and the step tasks: "
                                       "state, attempts, queue, task id and the agent that ran it. Needs a ClearML "
                                       "server and the pipeline's controller task id.")
    p.add_argument("pipeline_id", help="the controller task's id (printed by `slm pipeline start`)")
    p.add_argument("--json", action="store_true", help="the same as JSON")
    p.set_defaults(func=cmd_pipeline_status)
    p = actions.add_parser("resume", help="continue a pipeline whose controller died: completed steps are kept, "
                                          "running ones watched, failed ones retried",
                           description="Re-enqueue a pipeline's controller task after its agent died: it keeps the "
                                       "completed steps, watches the running ones (a silent one is re-enqueued after "
                                       "fleet.step_stale_after_s) and retries the failed ones. Needs a ClearML server, "
                                       "the controller task id and an agent on the controller's queue.")
    p.add_argument("pipeline_id", help="the controller task's id")
    p.add_argument("--queue", help="queue to enqueue the controller on (default: the one it ran from)")
    p.add_argument("--force", action="store_true",
                   help="even while an agent still reports running the controller (you know it is dead)")
    p.set_defaults(func=cmd_pipeline_resume)

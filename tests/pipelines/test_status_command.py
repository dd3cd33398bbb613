"""`slm pipeline status` and `resume` (pipelines/status_command.py): each step's row from the controller's
saved DAG and its tasks, and the one-line refusal without a server. The live path:
tests/e2e/test_clearml_faults.py."""
from __future__ import annotations

import subprocess

from helpers import ROOT, SLM
from pipelines.status_command import step_rows

DAG = {"ingest": {"executed": "t1", "queue": "cpu", "status": "completed"},
       "eval": {"executed": None, "job_id": "t2", "queue": "gpu-16gb", "status": "running"},
       "finetune": {"executed": None, "job_id": None, "queue": "gpu-16gb", "status": "pending"},
       "benchmark": {"executed": None, "job_id": None, "queue": "gpu-16gb", "status": "skipped", "skip_job": True},
       "report": {"executed": "t0", "queue": "cpu", "status": "completed"}}
TASKS = {"t1": {"status": "completed", "parent": "c1", "worker": "cpu-0", "attempts": 1},
         "t2": {"status": "in_progress", "parent": "c1", "worker": "gpu-1", "attempts": 2},
         "t3": {"status": "stopped", "parent": "c1", "worker": "gpu-0", "attempts": 1,
                "status_reason": "slm: no sign of life for 31 s"},
         "t0": {"status": "completed", "parent": "an-earlier-pipeline", "worker": "cpu-0", "attempts": 1}}


def test_each_step_has_its_state_attempts_queue_task_and_agent():
    rows = {r["step"]: r for r in step_rows("c1", DAG, {"finetune": {"id": "t3"}}, TASKS)}
    assert rows["ingest"] == {"step": "ingest", "state": "completed", "attempts": 1, "queue": "cpu", "task": "t1",
                              "agent": "cpu-0", "note": ""}
    assert (rows["eval"]["state"], rows["eval"]["attempts"], rows["eval"]["agent"]) == ("running", 2, "gpu-1")
    # launched just before the controller's state was saved: found as its newest child of that name
    assert rows["finetune"]["task"] == "t3" and rows["finetune"]["state"] == "aborted"
    assert rows["finetune"]["note"] == "slm: no sign of life for 31 s"
    assert (rows["benchmark"]["state"], rows["benchmark"]["attempts"], rows["benchmark"]["task"]) == ("skipped", 0, "")
    assert rows["report"]["state"] == "cached"


def test_status_and_resume_need_a_server_and_say_so_in_one_line():
    for verb in ("status", "resume"):
        out = subprocess.run([str(SLM), "pipeline", verb, "abc"], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 2 and out.stderr.strip() == (
            f"error: `pipeline {verb}` needs a ClearML server (api.api_server in clearml.conf or CLEARML_API_HOST)")

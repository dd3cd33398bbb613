"""Running a sweep: ClearML's HyperParameterOptimizer in this process (`slm sweep`), or as a task of its
own on the `services` queue (`slm sweep --remote`: close the laptop, the sweep goes on), which an agent
runs as `python pipelines/sweep_runner.py`, reading the sweep back from the task's `sweep` configuration.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass

from components.core.errors import UserError, run_guarded
from pipelines.sweep import build_optimizer, format_summary, parse_space, summarize_sweep

SWEEP_ENTRY = "pipelines/sweep_runner.py"
SWEEP_CONFIG = "sweep"  # the configuration object holding the SweepJob on the optimizer task


@dataclass(frozen=True)
class SweepJob:
    """Everything the optimizer needs, checked before it is sent anywhere."""
    stage: str
    params: list[str]  # Section/field=KIND:ARGS
    objective_title: str
    objective_series: str
    direction: str
    base_task_id: str
    queue: str
    concurrency: int
    total_jobs: int
    spawn_project: str
    time_limit_minutes: float | None = None
    job_time_limit_minutes: float | None = None
    top: int = 5

    @property
    def objective(self) -> str:
        return f"{self.objective_title}/{self.objective_series}"

    @property
    def task_name(self) -> str:
        return f"sweep {self.stage}: {self.objective}"


def stop_optimizer(optimizer) -> None:
    """`HyperParameterOptimizer.stop()` joins the reporting thread without waking it once the optimization
    thread has ended, and that thread sleeps up to its report period before the last report (a sweep
    sat idle ~2 min after its last job): wake it, then stop (which also aborts jobs still running)."""
    if getattr(optimizer, "_stop_event", None) is not None:
        optimizer._stop_event.set()
    optimizer.stop()


def run_sweep(job: SweepJob, log=print) -> list[dict]:
    """Run the optimizer in this process, reporting into the current task; the summary rows."""
    optimizer = build_optimizer(
        job.base_task_id, parse_space(job.stage, job.params), job.objective_title, job.objective_series,
        job.direction, max_concurrent=job.concurrency, total_jobs=job.total_jobs,
        time_limit_minutes=job.time_limit_minutes, queue=job.queue, stage=job.stage,
        job_time_limit_minutes=job.job_time_limit_minutes, spawn_project=job.spawn_project)
    log(f"up to {job.total_jobs} jobs of {job.base_task_id} on {job.queue!r}, {job.direction} {job.objective}")
    optimizer.start()
    try:
        optimizer.wait()
    finally:  # also on Ctrl-C
        stop_optimizer(optimizer)
    rows = summarize_sweep(optimizer, job.top)
    log(format_summary(rows, job.objective_series))
    if not any(row["rank"] != "-" for row in rows):
        raise RuntimeError(f"no job reported {job.objective}; check one job's log and its SCALARS tab "
                           "(clearml #285)")
    return rows


def run_here(job: SweepJob) -> str:
    """`slm sweep`: an optimizer task in this project, the optimizer in this process."""
    from clearml import Task

    task = Task.init(project_name=job.spawn_project, task_name=job.task_name, task_type=Task.TaskTypes.optimizer,
                     reuse_last_task_id=False, auto_connect_frameworks=False, auto_connect_arg_parser=False)
    task.set_configuration_object(SWEEP_CONFIG, json.dumps(asdict(job), indent=2))
    print(f"sweep {task.id}: ", end="")
    try:
        run_sweep(job)
    finally:
        task.close()
    return task.id


def launch_remote(job: SweepJob, queue: str, source, docker_image: str) -> str:
    """`slm sweep --remote`: a draft optimizer task that runs this file from the templates' commit, enqueued
    on `queue` (a CPU agent's, never the jobs' own: the optimizer would hold the agent its jobs need)."""
    from clearml import Task

    if queue == job.queue:
        raise UserError(f"the optimizer and its jobs on one queue ({queue!r}) deadlock: run it on `services` "
                        "and the jobs on `gpu` (clearml #1328)")
    task = Task.create(project_name=job.spawn_project, task_name=job.task_name, task_type="optimizer",
                       repo=source.repo, branch=source.branch, commit=source.commit or None, script=SWEEP_ENTRY,
                       working_directory=".", docker=docker_image, add_task_init_call=False, packages="")
    task.set_configuration_object(SWEEP_CONFIG, json.dumps(asdict(job), indent=2))
    Task.enqueue(task, queue_name=queue)
    return task.id


def run_remote_sweep() -> int:
    """Entry of the optimizer task on an agent: the sweep comes from the task itself (edited or not)."""
    from clearml import Task

    if Task.running_locally():
        print(f"{SWEEP_ENTRY} is what an agent runs; start a sweep with `slm sweep --remote`", file=sys.stderr)
        return 2

    def go() -> int:
        task = Task.init(auto_connect_frameworks=False, auto_connect_arg_parser=False)
        try:
            job = SweepJob(**json.loads(task.get_configuration_object(SWEEP_CONFIG) or "{}"))
        except (TypeError, json.JSONDecodeError) as e:
            raise UserError(f"the task's {SWEEP_CONFIG!r} configuration is not a sweep ({e})") from None
        run_sweep(job)
        return 0

    return run_guarded(go)


if __name__ == "__main__":
    sys.exit(run_remote_sweep())

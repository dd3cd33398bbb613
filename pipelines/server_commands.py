"""`slm templates register`, `slm pipeline start`, `slm sweep`: the commands that work a ClearML server.

    slm templates register [--project P] [--image I] [--cpu-image C] [--docker-args A] [--branch B]
    slm pipeline start [--queue gpu] [--controller-queue services] [--project P] [--dry-run] [overrides]
    slm pipeline status|resume <controller id>   (pipelines.status_command)
    slm sweep --preset lora|retriever [--param KEY=SPEC ...] [--objective Summary/METRIC] [--direction min]
              [--remote]   (the optimizer runs as a task on the services queue)

`--dry-run` prints what would be sent (the pipeline plan, the sweep space) without a server.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

from components.core.config import AppConfig
from components.core.errors import UserError

DEFAULT_SWEEP_PROJECT = f"{AppConfig().clearml.project}/sweeps"


def _require_server(what: str) -> None:
    from clearml_tasks._tracking import resolve_tracking

    if resolve_tracking("auto") != "online":
        raise UserError(f"{what} needs a ClearML server: set api.api_server in clearml.conf (or "
                        "CLEARML_API_HOST); with no server use --dry-run, or `slm run` to execute locally")


def cmd_templates_register(args: argparse.Namespace) -> int:
    from pipelines.templates import register_templates

    _require_server("registering templates")
    register_templates(args.project, repo_url=args.repo, branch=args.branch, commit=args.commit,
                       docker_image=args.image, cpu_image=args.cpu_image, docker_args=args.docker_args,
                       runs_project=args.runs_project)
    return 0


def cmd_pipeline_start(args: argparse.Namespace) -> int:
    from components.core.overrides import build_config
    from pipelines.controller import build_plan, start_pipeline
    from pipelines.fleet_commands import print_plan
    from pipelines.grid import parse_grid

    grid = parse_grid(args.overrides, args.multirun)
    cfg = build_config(list(grid.fixed))
    stages = kept_stages(args.skip)
    plan = build_plan(cfg, args.queue, args.controller_queue, args.project, grid=grid, stages=stages)
    if args.dry_run:
        print_plan(plan, args.json)
        return 0
    source = None
    if args.repo or args.branch or args.commit:
        from pipelines.templates import git_source

        source = git_source(args.repo, args.branch, args.commit)
    start_pipeline(cfg, args.queue, args.controller_queue, args.project, args.image, source=source, grid=grid,
                   stages=stages)
    return 0


def kept_stages(skip: list[str] | None) -> tuple[str, ...] | None:
    """The stages a pipeline runs: all (None) less `--skip`, as `slm run --skip`."""
    from clearml_tasks.stages import stage_names

    return tuple(s for s in stage_names() if s not in skip) if skip else None


@dataclass(frozen=True)
class SweepRequest:
    stage: str
    params: list[str]
    objective_title: str
    objective_series: str
    direction: str


def resolve_sweep(args: argparse.Namespace) -> SweepRequest:
    """Preset values, replaced key by key by `--param`, and the objective, all checked before any server."""
    from pipelines.sweep import SWEEP_PRESETS, infer_stage, parse_objective, parse_space, validate_objective

    preset = SWEEP_PRESETS[args.preset] if args.preset else None
    params = {text.partition("=")[0]: text for text in (preset.params if preset else ())}
    params.update({text.partition("=")[0]: text for text in args.param or ()})
    objective = args.objective or (preset.objective if preset else None)
    if not params or not objective:
        raise UserError("give --preset, or --param KEY=SPEC and --objective Summary/METRIC")
    title, series = parse_objective(objective)
    stage = args.stage or (preset.stage if preset else infer_stage(list(params.values()), series))
    parse_space(stage, list(params.values()))
    validate_objective(stage, title, series)
    direction = args.direction or (preset.direction if preset else None)
    if direction is None:  # no safe default: half the metrics are losses, half are scores
        raise UserError(f"pass --direction max or min for {objective}")
    return SweepRequest(stage, list(params.values()), title, series, direction)


def _run_sweep(request: SweepRequest, args: argparse.Namespace) -> int:
    from clearml import Task

    from pipelines.sweep import check_template, parse_space
    from pipelines.sweep_runner import SweepJob, launch_remote, run_here
    from pipelines.templates import find_templates, stored_source

    _require_server("a sweep")
    space = parse_space(request.stage, request.params)
    base = (Task.get_task(task_id=args.template_id) if args.template_id
            else find_templates(args.project, [request.stage])[request.stage])
    check_template(request.stage, base.get_parameters(), space)
    queue = args.queue or default_queue(request.stage)
    job = SweepJob(request.stage, request.params, request.objective_title, request.objective_series,
                   request.direction, base.id, queue, args.concurrency, args.total_jobs, DEFAULT_SWEEP_PROJECT,
                   args.time_limit_minutes, args.job_time_limit_minutes, args.top)
    if not args.remote:
        run_here(job)
        return 0
    task_id = launch_remote(job, args.remote_queue, stored_source(base), args.image)
    print(f"sweep {task_id}: enqueued on {args.remote_queue!r}; it runs there until its last job ends (follow it "
          f"under {DEFAULT_SWEEP_PROJECT} in the UI)")
    return 0


def default_queue(stage: str) -> str:
    """Where a job of `stage` goes with no --queue: the fleet class its estimate fits under the defaults."""
    from components.core.config import AppConfig
    from pipelines.fleet import parse_classes, place

    cfg = AppConfig()
    return place(stage, stage, cfg, parse_classes(cfg.fleet.queues)).queue


def cmd_sweep(args: argparse.Namespace) -> int:
    from pipelines.sweep import parse_space

    request = resolve_sweep(args)
    if args.dry_run:
        space = [asdict(p) for p in parse_space(request.stage, request.params)]
        print(json.dumps({**asdict(request), "space": space, "queue": args.queue or default_queue(request.stage),
                          "total_jobs": args.total_jobs, "concurrency": args.concurrency}, indent=2))
        return 0
    return _run_sweep(request, args)


REGISTER_DESCRIPTION = (
    "Create one template task per stage (ingest, index, eval, finetune, benchmark, merge, report) in --project: "
    "its code (this repository at a pushed commit), its image, and its parameters (only those the stage reads, "
    "each with its description and choices), published so it cannot be edited by mistake; a clone runs as it is, "
    "and its run moves to --runs-project under a name that says what it ran. Needs a ClearML server and the code "
    "pushed where agents can clone it (--repo/--branch/--commit otherwise).")


def _add_templates(sub: argparse._SubParsersAction) -> None:
    from pipelines.templates import DEFAULT_TASK_IMAGE, DEFAULT_TEMPLATE_PROJECT

    group = sub.add_parser("templates", help="stage templates on the ClearML server",
                           description="The stage templates researchers clone in the ClearML UI (and pipelines and "
                                       "sweeps clone). Needs a ClearML server.")
    actions = group.add_subparsers(dest="templates_command", required=True, metavar="{register}")
    p = actions.add_parser("register", help="create one published template task per stage on the server",
                           description=REGISTER_DESCRIPTION)
    p.add_argument("--project", default=DEFAULT_TEMPLATE_PROJECT, help="ClearML project of the templates")
    p.add_argument("--runs-project", help="where runs of cloned templates go (default: the templates project's "
                                          "parent, e.g. slm-experiments)")
    p.add_argument("--image", default=DEFAULT_TASK_IMAGE,
                   help="container image of the stages that want a GPU (the CUDA task image, docker/Dockerfile)")
    p.add_argument("--cpu-image", help="container image of the stages without GPU work (ingest, index, merge, "
                                       "report; e.g. the CPU task image); default: --image")
    p.add_argument("--docker-args", default="", help="docker arguments stored with each template's image, "
                                                     "e.g. --docker-args='--ipc=host -e OMP_NUM_THREADS=4' "
                                                     "(the agent's own extra arguments come on top; its "
                                                     "--network wins)")
    p.add_argument("--repo", help="repository URL agents clone (default: this checkout's origin)")
    p.add_argument("--branch", help="branch (default: the current one)")
    p.add_argument("--commit", help="commit id (default: the branch's head here)")
    p.set_defaults(func=cmd_templates_register)


def _add_pipeline(sub: argparse._SubParsersAction) -> None:
    from clearml_tasks.stages import skippable
    from pipelines.controller import DEFAULT_CONTROLLER_QUEUE
    from pipelines import status_command
    from pipelines.fleet_commands import add_plan_parser
    from pipelines.templates import DEFAULT_TASK_IMAGE, DEFAULT_TEMPLATE_PROJECT

    group = sub.add_parser("pipeline", help="the DAG as a ClearML pipeline",
                           description="The DAG `slm run` executes, as a ClearML PipelineController whose steps "
                                       "clone the registered templates.")
    actions = group.add_subparsers(dest="pipeline_command", required=True, metavar="{start,plan,status,resume}")
    p = actions.add_parser("start", help="enqueue the pipeline controller (steps clone the templates)",
                           description="Build the pipeline from the DAG and enqueue its controller on "
                                       "--controller-queue; each step clones its stage's template and runs on its "
                                       "fleet queue (or --queue). Needs a ClearML server, the templates registered "
                                       "(slm templates register), an agent on the controller's queue and agents on "
                                       "the steps' queues. --dry-run needs nothing: it prints the plan.")
    p.add_argument("overrides", nargs="*", help="group=preset or section.field=value")
    p.add_argument("--queue", help="one queue for every step (a one-class fleet); default: each step on the "
                                   "fleet.queues class its memory estimate fits (see `slm pipeline plan`)")
    p.add_argument("--controller-queue", default=DEFAULT_CONTROLLER_QUEUE,
                   help="queue of the controller (a CPU agent); never the steps' queue")
    p.add_argument("--project", default=DEFAULT_TEMPLATE_PROJECT, help="ClearML project of the templates")
    p.add_argument("--image", default=DEFAULT_TASK_IMAGE, help="docker image of the controller")
    p.add_argument("-m", "--multirun", action="store_true",
                   help="comma-separated values of a preset group or scalar field are grid axes")
    p.add_argument("--repo", help="repository the controller runs from (default: the templates')")
    p.add_argument("--branch", help="its branch (default: the templates')")
    p.add_argument("--commit", help="its commit (default: the templates')")
    p.add_argument("--skip", nargs="*", choices=skippable(), help="stages to leave out (as `slm run --skip`)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (as `slm pipeline plan`); no server")
    p.add_argument("--json", action="store_true", help="with --dry-run: the plan as a JSON list of steps")
    p.set_defaults(func=cmd_pipeline_start)
    add_plan_parser(actions)
    status_command.register(actions)


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    from pipelines import sweep
    from pipelines.controller import DEFAULT_CONTROLLER_QUEUE
    from pipelines.sweep import DIRECTIONS, STAGE_METRICS, SWEEP_PRESETS
    from pipelines.templates import DEFAULT_TASK_IMAGE, DEFAULT_TEMPLATE_PROJECT

    p = sub.add_parser("sweep", help="hyperparameter sweep (Optuna) over a stage template",
                       description=sweep.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=list(SWEEP_PRESETS),
                   help="; ".join(f"{k}: {v.description}" for k, v in SWEEP_PRESETS.items()))
    p.add_argument("--stage", choices=list(STAGE_METRICS), help="template to sweep (default: from the preset "
                   "or the parameters)")
    p.add_argument("--param", action="append", metavar="KEY=SPEC",
                   help="Section/field=KIND:ARGS; replaces the preset's entry for that key")
    p.add_argument("--objective", metavar="TITLE/SERIES", help="e.g. Summary/token_recall")
    p.add_argument("--direction", choices=DIRECTIONS)
    p.add_argument("--concurrency", type=int, default=2, help="jobs running at once")
    p.add_argument("--total-jobs", type=int, default=10)
    p.add_argument("--time-limit-minutes", type=float, help="for the whole sweep")
    p.add_argument("--job-time-limit-minutes", type=float, help="a job running longer is aborted")
    p.add_argument("--queue", help="queue of the jobs (default: the fleet.queues class the stage's memory "
                                   "estimate fits with the default config)")
    p.add_argument("--template-id", help="base task to clone (default: the stage's registered template)")
    p.add_argument("--project", default=DEFAULT_TEMPLATE_PROJECT, help="ClearML project of the templates")
    p.add_argument("--top", type=int, default=5, help="best jobs listed at the end")
    p.add_argument("--remote", action="store_true",
                   help="run the optimizer itself as a task on --remote-queue (it goes on without this terminal)")
    p.add_argument("--remote-queue", default=DEFAULT_CONTROLLER_QUEUE, help="queue of the optimizer task")
    p.add_argument("--image", default=DEFAULT_TASK_IMAGE, help="docker image of the optimizer task")
    p.add_argument("--dry-run", action="store_true", help="print the resolved sweep as JSON; no server")
    p.set_defaults(func=cmd_sweep)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `templates`, `pipeline` and `sweep`; each leaf parser sets `func(args) -> int`."""
    _add_templates(subparsers)
    _add_pipeline(subparsers)
    _add_sweep(subparsers)

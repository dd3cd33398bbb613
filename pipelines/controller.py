"""The DAG of `pipelines.dag` compiled into a ClearML PipelineController: each step clones its stage's
template, sets its parameters and runs on the queue of the GPU class its memory estimate fits (or on the
CPU queue; pipelines.fleet); the controller itself runs on `services`.

    slm pipeline start [--queue Q] [--controller-queue services] [--project P] [overrides]
    slm pipeline plan [--json] ...            # each step's queue and memory estimate; no server, no clearml

`build_plan` is pure data (tested without ClearML); `build_controller` turns a plan into a
PipelineController (builds offline with placeholder template ids); `start_pipeline` resolves the
template ids on the server and enqueues the controller. A failed step stops the steps that depend on it
(ClearML's default); independent branches still run and the pipeline is marked failed.

An agent runs the controller as `python pipelines/controller.py`: the DAG and the pipeline parameters
come back from the controller task itself (`always_create_from_code=False`), so a "+ NEW RUN" from the
UI with edited parameters runs the same graph.
"""
from __future__ import annotations

import importlib.metadata
import json
import sys
from typing import Any, Callable

from components.core.config import AppConfig
from components.core.errors import UserError
from components.core.overrides import changed_fields, parse_overrides
from components.core.presets import clear_derived_labels
from clearml_tasks.stages import STAGES
from pipelines.dag import StepSpec, build_dag, referenced_steps, step_config, validate_dag
from pipelines.fleet import FleetRetry
from pipelines.grid import Grid
from pipelines.templates import DEFAULT_TASK_IMAGE, DEFAULT_TEMPLATE_PROJECT, GitSource, untagged_job_class

CONTROLLER_ENTRY = "pipelines/controller.py"
DEFAULT_CONTROLLER_QUEUE = "services"

# The knobs editable on "+ NEW RUN": pipeline parameter -> (config key, description). Steps whose stage
# reads that section get `Section/field = ${pipeline.<name>}`. Names carry no dots: ClearML splits
# `${pipeline.a.b}` at the dot.
PIPELINE_PARAMETERS: dict[str, tuple[str, str]] = {
    "model_name": ("model.name", "model label in results (a preset name, e.g. qwen_0.6b); empty = follows "
                                 "model_path"),
    "model_path": ("model.path", "hub id or local folder; empty = the packaged GGUF"),
    # The packaged GGUF's file name is ignored for a hub id or a plain checkpoint folder (components.backends.models).
    "model_gguf_file": ("model.gguf_file", "GGUF file inside model_path, used where that file exists"),
    "dataset_path": ("dataset.path", "local file, s3://bucket/key, hf:<name>, clearml://<dataset id> or builtin:demo"),
    "max_samples": ("experiment.max_samples", "questions per eval, in file order; 0 = all"),
    "top_k": ("retriever.top_k", "passages retrieved per question"),
    "retriever_kind": ("retriever.kind", "retrieval of retriever_context evals (one of: bm25, dense, hybrid)"),
    # Read by the controller's retry policy (pipelines.fleet.FleetRetry) and its watch over running steps
    # (pipelines.step_watch), not by any step.
    "fleet_queues": ("fleet.queues", "queue classes name:GB; an out-of-memory step moves to the next larger one"),
    "fleet_retries": ("fleet.retries", "retries of a failed step on its own queue"),
    "fleet_step_stale_after_s": ("fleet.step_stale_after_s", "seconds without a sign of life before a running "
                                                            "step's agent is taken for dead and the step re-enqueued"),
}


def clearml_key(config_key: str) -> str:
    """`section.field` (command line) -> `section/field` (ClearML parameter)."""
    return config_key.replace(".", "/", 1)


def parameter_value(value: Any) -> Any:
    """Lists as JSON text: ClearML stores parameters as strings and reads lists back with a YAML parser."""
    return json.dumps(value) if isinstance(value, (list, tuple)) else value


def check_queues(queue: str, controller_queue: str) -> None:
    if queue == controller_queue:
        raise UserError(f"the controller and its steps on one queue ({queue!r}) deadlock: the controller "
                        "holds the only agent while its steps wait (clearml #1328); run the controller on "
                        "`services` and the steps on `gpu`")


def _config_value(cfg: AppConfig, key: str) -> Any:
    section, field = key.split(".", 1)
    return getattr(getattr(cfg, section), field)


def pipeline_parameters(cfg: AppConfig) -> dict[str, Any]:
    """Pipeline parameter -> its default, the run config's value (a preset's name left empty: it follows
    model_path, so a NEW RUN that edits only model_path relabels its results)."""
    cfg = clear_derived_labels(cfg)
    return {name: parameter_value(_config_value(cfg, key)) for name, (key, _) in PIPELINE_PARAMETERS.items()}


def samples_without_seed(cfg: AppConfig, stage: str) -> bool:
    """A section the stage reads samples (`do_sample`) with no seed: its output is not reproducible, so
    it is never served from cache. Greedy decoding, and sampling with a seed, are cacheable."""
    sections = (getattr(cfg, name) for name in STAGES[stage].sections)
    return any(getattr(s, "do_sample", False) and getattr(s, "seed", None) is None for s in sections)


def step_parameters(step: StepSpec, cfg: AppConfig, fixed: dict[str, str] | None = None) -> dict[str, Any]:
    """What a step sets on its cloned template: the changed config fields and pipeline knobs its output
    depends on (the registry's cache config: a renamed run, or a retriever field on a closed-book eval,
    changes no step, so ClearML's step cache still serves it), its own overrides and its inputs. `fixed`:
    the run's own `section.field` overrides (not grid axes), which a grid step carries among its overrides
    too: a knob set that way stays `${pipeline.<name>}`, so a NEW RUN with another value reaches the step."""
    spec = STAGES[step.stage]
    depends = spec.cache_config(step_config(cfg, step))
    connected = {k.replace("/", ".", 1) for k in spec.template_keys()} | set(spec.step_fields)
    fixed = fixed or {}
    own = {k: v for k, v in step.overrides.items() if not (k in fixed and str(fixed[k]) == str(v))}

    def matters(key: str) -> bool:  # the step's output depends on it, and its task reads it
        section, field = key.split(".", 1)
        return field in depends.get(section, {}) and key in connected

    params = {clearml_key(key): parameter_value(value) for key, value in changed_fields(cfg).items()
              if matters(key)}
    # A pipeline knob the step sets itself (a grid axis, the eval mode) is not a knob of that step.
    params.update({clearml_key(key): "${pipeline.%s}" % name
                   for name, (key, _) in PIPELINE_PARAMETERS.items() if matters(key) and key not in own})
    params.update({clearml_key(key): parameter_value(value) for key, value in own.items() if matters(key)})
    params.update({f"inputs/{name}": value for name, value in step.inputs.items()})
    return params


def build_plan(cfg: AppConfig, queue: str | None = None,
               controller_queue: str = DEFAULT_CONTROLLER_QUEUE,
               template_project: str = DEFAULT_TEMPLATE_PROJECT, grid: Grid | None = None,
               stages: tuple[str, ...] | None = None) -> list[dict]:
    """One dict per DAG step (of every grid point; of `stages` only, default all, as `slm run --skip`) with
    everything `PipelineController.add_step` needs and where it runs: `queue` for every step (a one-class
    fleet), else the fleet class its memory estimate fits (pipelines.fleet). No ClearML import."""
    from pipelines.fleet import parse_classes, place

    cfg = clear_derived_labels(cfg)  # labels the paths give are left to follow them (pipeline_parameters)
    steps = build_dag(cfg, stages, grid=grid)
    validate_dag(steps)
    fixed = parse_overrides(grid.fixed) if grid else {}
    classes = parse_classes(cfg.fleet.queues)
    plan = []
    for step in steps:
        step_cfg = step_config(cfg, step)
        placement = place(step.name, step.stage, step_cfg, classes)
        entry = {"name": step.name, "stage": step.stage, "template_project": template_project,
                 "template_name": step.stage, "parents": list(step.parents),
                 "execution_queue": queue or placement.queue,
                 "parameter_override": step_parameters(step, cfg, fixed),
                 "cache_executed_step": not samples_without_seed(step_cfg, step.stage),
                 "retry_on_failure": cfg.fleet.retries, **placement.as_dict()}
        entry.pop("step")
        entry["queue"] = entry["execution_queue"]
        check_queues(entry["execution_queue"], controller_queue)
        plan.append(entry)
    return plan


def pipeline_name(cfg: AppConfig) -> str:
    return f"slm {cfg.experiment.name}"


def pipeline_version() -> str:
    """The package version: the pipeline's shape changes with the code, not with each run."""
    try:
        return importlib.metadata.version("slm-experiments")
    except importlib.metadata.PackageNotFoundError:
        return "0.1.0"


def describe_plan(plan: list[dict], cfg: AppConfig, controller_queue: str) -> dict:
    """The `--dry-run` document: the controller, its editable parameters and the steps."""
    return {"pipeline": {"name": pipeline_name(cfg), "project": cfg.clearml.project,
                         "version": pipeline_version(), "controller_queue": controller_queue},
            "parameters": pipeline_parameters(cfg), "steps": plan}


def _step_source(step: dict, base_task_ids: dict[str, str] | None) -> dict[str, str]:
    """A template by id (works offline) or by project/name (looked up on the server at add_step)."""
    if base_task_ids is None:
        return {"base_task_project": step["template_project"], "base_task_name": step["template_name"]}
    if step["stage"] not in base_task_ids:
        raise UserError(f"no template id for stage {step['stage']!r} (step {step['name']})")
    return {"base_task_id": base_task_ids[step["stage"]]}


def _check_plan(plan: list[dict], controller_queue: str) -> None:
    """Queues apart, and every `${step.id}` names a parent (ClearML would add the parent silently)."""
    for step in plan:
        check_queues(step["execution_queue"], controller_queue)
        for key, value in step["parameter_override"].items():
            refs = referenced_steps(value) if isinstance(value, str) else []
            if not set(refs) <= set(step["parents"]):
                raise UserError(f"step {step['name']}: {key}={value} does not reference a parent")


def controller_class():
    """ClearML's PipelineController, keeping each step's retry when the DAG is rebuilt from the controller
    task on an agent (`_deserialize` recreates the nodes but not the retry callbacks `add_step` registered,
    so a failed step was never retried there), and creating steps without the templates' `template` tag.
    Its fault handling lives in its own modules: the watch over running steps whose agent died
    (pipelines.step_watch) and, on an agent, the steps of a dead controller's run taken back
    (pipelines.resume)."""
    from clearml import PipelineController

    from pipelines.step_watch import StepWatchMixin

    class RetryingPipelineController(StepWatchMixin, PipelineController):
        _clearml_job_class = untagged_job_class()

        def add_parameter(self, name: str, default: Any = None, description: str | None = None,
                          param_type: str | None = None) -> None:
            """ClearML files a description under the bare name but looks it up under `Args/<name>` when it
            writes the parameters, so NEW RUN listed them without descriptions: file it under both."""
            super().add_parameter(name=name, default=default, description=description, param_type=param_type)
            if description:
                self._pipeline_args_desc[f"{self._args_section}/{name}"] = str(description)

        def _deserialize(self, dag_dict: dict, force: bool = False) -> None:
            super()._deserialize(dag_dict, force=force)
            for name in self._nodes:
                self._retries.setdefault(name, 0)
                self._retries_callbacks.setdefault(name, self._retry_on_failure_callback)

        def _prepare_pipeline(self, *args, **kwargs) -> None:
            super()._prepare_pipeline(*args, **kwargs)  # the DAG and its saved progress, read back
            self._slm_start_watching()
            if self._task is not None and not self._task.running_locally():
                from pipelines.resume import reattach_steps

                reattach_steps(self)

    return RetryingPipelineController


def build_controller(plan: list[dict], cfg: AppConfig, controller_queue: str = DEFAULT_CONTROLLER_QUEUE,
                     base_task_ids: dict[str, str] | None = None,
                     docker_image: str = DEFAULT_TASK_IMAGE):
    """A PipelineController with the pipeline parameters and one step per plan entry (not started).

    With `base_task_ids` (stage -> template id) it builds offline; without, each step's template is
    looked up by project/name on the server.
    """
    _check_plan(plan, controller_queue)
    sources = {step["name"]: _step_source(step, base_task_ids) for step in plan}
    controller = controller_class()(
        name=pipeline_name(cfg), project=cfg.clearml.project, version=pipeline_version(),
        add_pipeline_tags=True, always_create_from_code=False, docker=docker_image,
        retry_on_failure=FleetRetry(),  # reads fleet_queues / fleet_retries from the pipeline's parameters
        packages="",  # the task image has every dependency; nothing to install
        working_dir=".")
    defaults = pipeline_parameters(cfg)
    for name, description in parameter_descriptions().items():
        controller.add_parameter(name=name, default=defaults[name], description=description)
    for step in plan:
        controller.add_step(
            name=step["name"], parents=step["parents"], parameter_override=step["parameter_override"],
            execution_queue=step["execution_queue"], cache_executed_step=step["cache_executed_step"],
            retry_on_failure=controller._retry_on_failure_callback, stage=step["stage"], **sources[step["name"]])
    return controller


def _point_at_entry(source: GitSource) -> str:
    """The controller task was created by `slm`, whose script an agent cannot run: make it run this file
    from the repository at the templates' commit, with no local diff. Returns the controller task id."""
    from clearml import Task

    task = Task.current_task()
    task.set_repo(repo=source.repo, branch=source.branch, commit=source.commit)  # waits for detection
    task.set_script(working_dir=".", entry_point=CONTROLLER_ENTRY, diff="")
    return task.id


def start_pipeline(cfg: AppConfig, queue: str | None = None,
                   controller_queue: str = DEFAULT_CONTROLLER_QUEUE,
                   template_project: str = DEFAULT_TEMPLATE_PROJECT, docker_image: str = DEFAULT_TASK_IMAGE,
                   source: GitSource | None = None, log: Callable[[str], None] = print,
                   grid: Grid | None = None, stages: tuple[str, ...] | None = None) -> None:
    """Resolve the templates on the server, build the controller and enqueue it on `controller_queue`.

    `PipelineController.start` enqueues the controller task and ends this process; with no agent on
    `controller_queue` the pipeline stays pending (clearml #1109).
    """
    from clearml_tasks._tracking import resolve_tracking
    from pipelines.templates import find_templates, stored_source

    plan = build_plan(cfg, queue, controller_queue, template_project, grid=grid, stages=stages)
    if resolve_tracking("auto") != "online":
        raise UserError("`pipeline start` needs a ClearML server (api.api_server in clearml.conf or "
                        "CLEARML_API_HOST); see the plan with --dry-run, or run locally with `slm run`")
    templates = find_templates(template_project, [step["stage"] for step in plan])
    # The controller runs the code the steps run: the templates' repository and commit, unless given.
    source = source or stored_source(templates[plan[0]["stage"]])
    controller = build_controller(plan, cfg, controller_queue, {s: t.id for s, t in templates.items()},
                                  docker_image)
    controller_id = _point_at_entry(source)
    per_queue = {q: sum(s["execution_queue"] == q for s in plan) for q in dict.fromkeys(s["execution_queue"] for s in plan)}
    log(f"pipeline {pipeline_name(cfg)!r}: controller task {controller_id} on {controller_queue!r}, steps "
        f"{', '.join(f'{n} on {q!r}' for q, n in per_queue.items())}; code {source.repo} @ {source.branch} "
        f"{source.commit[:12]}")
    for queue_name in (controller_queue, *per_queue):
        workers = queue_workers(queue_name)
        log(f"queue {queue_name!r}: served by {', '.join(workers)}" if workers else
            f"warning: no agent serves queue {queue_name!r}; the pipeline waits until one does "
            f"(clearml-agent daemon --queue {queue_name} --docker; clearml #1109)")
    controller.start(queue=controller_queue)


def queue_workers(queue: str) -> list[str]:
    """Ids of the agents that serve `queue` now ([] when none, or when the server cannot tell)."""
    from clearml.backend_api.session.client import APIClient

    try:
        workers = APIClient().workers.get_all()
    except Exception:  # an older server or no permission: say nothing rather than something wrong
        return []
    return sorted(w.id for w in workers if any(getattr(q, "name", None) == queue for q in (w.queues or [])))


def parameter_descriptions() -> dict[str, str]:
    """What NEW RUN shows beside each pipeline parameter: the config key it sets and what it does."""
    return {name: f"{key}: {description}" for name, (key, description) in PIPELINE_PARAMETERS.items()}


def describe_parameters(task) -> None:
    """Put the descriptions back on a controller task: a NEW RUN (the server's pipelines.start_pipeline)
    stores every parameter it was given without one, so the next NEW RUN would list them bare."""
    current = task.get_parameters() or {}
    keys = {name: f"Args/{name}" for name in PIPELINE_PARAMETERS if f"Args/{name}" in current}
    task._set_parameters({key: current[key] for key in keys.values()}, __update=True, __parameters_descriptions={
        key: parameter_descriptions()[name] for name, key in keys.items()})


def run_remote_controller() -> int:
    """Entry of the controller task on an agent: the DAG is read back from the task, not rebuilt."""
    from clearml import Task

    if Task.running_locally():
        print(f"{CONTROLLER_ENTRY} is what an agent runs; start a pipeline with `slm pipeline start`",
              file=sys.stderr)
        return 2
    task = Task.init()  # attaches to the enqueued controller task, keeping the project and tags set at start
    describe_parameters(task)
    controller = controller_class()(name="", project="", always_create_from_code=False,
                                    retry_on_failure=FleetRetry())
    for name in PIPELINE_PARAMETERS:  # values come back from the task, edited or not
        controller.add_parameter(name=name)
    controller.start()  # on an agent: runs the DAG here until every step is done
    return 0


if __name__ == "__main__":
    sys.exit(run_remote_controller())

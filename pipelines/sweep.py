"""Hyperparameter sweeps: ClearML's HyperParameterOptimizer with Optuna, cloning one stage's template.

    slm sweep --preset lora
    slm sweep --param finetune/r=int:4:32:4 --param finetune/learning_rate=loguniform:1e-5:1e-3 \
              --objective Summary/eval_loss --direction min --total-jobs 12

A parameter is `Section/field=KIND:ARGS`, the key exactly as the template connects it (case included:
ClearML silently ignores an override whose `Section/name` the template lacks, clearml #254):
  int:LOW:HIGH[:STEP]   uniform:LOW:HIGH[:STEP]   loguniform:LOW:HIGH   choice:A,B,C   fixed:VALUE
`fixed:` pins a value in every job, e.g. `experiment/mode=fixed:retriever_context` or the parent a job
reads, `inputs/ingest=fixed:<ingest task id>`.

The objective is `Summary/<metric>`: a stage's results are reported as single values, which ClearML files
under title `Summary` with the metric name as series. The "Final Metrics" table is a plot, which the
optimizer cannot read ("could not find requested metric", clearml #285).

Needs a ClearML server with the templates registered (or --template-id) and an agent on the jobs' queue
(and on --remote-queue with --remote); --dry-run needs nothing.
"""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any, Sequence

from components.core.coercion import coerce_value, field_types
from components.core.config import AppConfig, section_types
from components.core.errors import UserError, did_you_mean
from components.core.overrides import apply_flat
from components.core.formatting import format_table
from clearml_tasks.stages import STAGES

PARAM_KINDS = ("int", "uniform", "loguniform", "choice", "fixed")
OBJECTIVE_TITLE = "Summary"
DIRECTIONS = ("max", "min")
# Numeric results each stage reports as single values (the series under `Summary`); stages that report
# nothing worth optimising (ingest, index) are not sweepable.
STAGE_METRICS: dict[str, tuple[str, ...]] = {name: s.metrics for name, s in STAGES.items() if s.metrics}
# Single-value objectives have no iterations, so this bound never aborts a job; OptimizerOptuna
# requires the argument (a TypeError without it).
MAX_ITERATION_PER_JOB = 10**9
# OptimizerOptuna re-polls a job whose objective has not appeared yet without sleeping; a Summary
# objective appears only when the job ends, so each running trial would query the server in a tight
# loop. This pause between polls restores a sane rate.
POLL_PAUSE_SECONDS = 15.0


@dataclass(frozen=True)
class ParamSpec:
    key: str  # Section/field, as connected by the template
    kind: str  # one of PARAM_KINDS
    values: tuple  # int/uniform/loguniform: (low, high, step or None); choice/fixed: the values


@dataclass(frozen=True)
class SweepPreset:
    stage: str
    params: tuple[str, ...]
    objective: str  # Title/series
    direction: str
    description: str


SWEEP_PRESETS: dict[str, SweepPreset] = {
    "lora": SweepPreset("finetune", ("finetune/r=int:4:32:4", "finetune/alpha=int:8:64:8",
                                     "finetune/learning_rate=loguniform:1e-5:1e-3"),
                        "Summary/eval_loss", "min", "LoRA rank, alpha and learning rate; lowest eval loss"),
    "retriever": SweepPreset("eval", ("retriever/top_k=int:1:10:1",
                                      "experiment/mode=fixed:retriever_context"),
                             "Summary/token_recall", "max", "passages per question; highest token recall"),
}


def stage_parameter_types(stage: str) -> dict[str, Any]:
    """`Section/field -> type` of every parameter the stage's template connects (inputs are task ids)."""
    types = section_types()
    return {key: str if key.startswith("inputs/") else field_types(types[key.split("/")[0]])[key.split("/")[1]]
            for key in STAGES[stage].template_keys()}


def validate_key(stage: str, key: str) -> Any:
    """The field's type; an unknown key is an error with the exact-case suggestion."""
    known = stage_parameter_types(stage)
    if key in known:
        return known[key]
    hint = did_you_mean(key.replace(".", "/", 1), list(known))
    section = key.replace(".", "/", 1).split("/")[0]
    where = "" if section in (*STAGES[stage].template_sections, "inputs") else (
        f"; the {stage} template reads sections {', '.join(STAGES[stage].template_sections)} and inputs")
    raise UserError(f"unknown parameter {key!r} for the {stage} template{hint}{where}. Keys are "
                    "Section/field and case-sensitive: ClearML silently ignores a name the template lacks "
                    "(clearml #254)")


def _number(key: str, text: str, tp: type) -> float:
    try:
        return tp(text)
    except ValueError:
        raise UserError(f"{key}: {text!r} is not a{'n int' if tp is int else ' number'}") from None


def _range(key: str, kind: str, args: list[str], tp: Any) -> tuple:
    number_type = int if kind == "int" else float
    if tp is not number_type:
        wanted = "int" if tp is int else "uniform or loguniform" if tp is float else "choice or fixed"
        raise UserError(f"{key} is {getattr(tp, '__name__', tp)}: use {wanted}, not {kind}")
    if len(args) not in (2, 3) or (kind == "loguniform" and len(args) != 2):
        raise UserError(f"{key}: {kind} takes LOW:HIGH{'' if kind == 'loguniform' else '[:STEP]'}")
    low, high, *step = (_number(key, a, number_type) for a in args)
    if not low < high:
        raise UserError(f"{key}: LOW must be below HIGH, got {low} and {high}")
    if kind == "loguniform" and low <= 0:
        raise UserError(f"{key}: loguniform needs a positive LOW, got {low}")
    if step and step[0] <= 0:
        raise UserError(f"{key}: STEP must be positive, got {step[0]}")
    return (low, high, step[0] if step else None)


def parse_param(stage: str, text: str) -> ParamSpec:
    """`Section/field=KIND:ARGS` -> a ParamSpec with values of the field's type."""
    key, sep, spec = text.partition("=")
    kind, colon, rest = spec.partition(":")
    if not sep or not colon or kind not in PARAM_KINDS:
        raise UserError(f"invalid sweep parameter {text!r}: expected Section/field=KIND:ARGS with KIND one "
                        f"of {', '.join(PARAM_KINDS)} (e.g. finetune/r=int:4:32:4)")
    tp = validate_key(stage, key)
    if typing.get_origin(tp) is list:
        raise UserError(f"{key} is a list; sweep scalar fields only")
    if kind in ("choice", "fixed"):
        raw = rest.split(",") if kind == "choice" else [rest]
        return ParamSpec(key, kind, tuple(coerce_value(key.replace("/", ".", 1), tp, v) for v in raw))
    return ParamSpec(key, kind, _range(key, kind, rest.split(":"), tp))


def parse_space(stage: str, texts: Sequence[str]) -> list[ParamSpec]:
    space = [parse_param(stage, text) for text in texts]
    keys = [p.key for p in space]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise UserError(f"parameter given twice: {', '.join(duplicated)}")
    if not any(p.kind != "fixed" for p in space):
        raise UserError("nothing to sweep: give at least one parameter that is not fixed")
    return space


def parse_objective(text: str) -> tuple[str, str]:
    title, sep, series = text.partition("/")
    if not sep or not title or not series:
        raise UserError(f"invalid objective {text!r}: expected TITLE/SERIES, e.g. Summary/token_recall")
    return title, series


def validate_objective(stage: str, title: str, series: str) -> None:
    metrics = STAGE_METRICS.get(stage, ())
    if not metrics:
        raise UserError(f"the {stage} stage reports no metric to optimise; sweep "
                        f"{', '.join(STAGE_METRICS)}")
    if title != OBJECTIVE_TITLE:
        raise UserError(f"objective title {title!r}: stage metrics are single values, which ClearML files "
                        f"under title {OBJECTIVE_TITLE!r} with the metric as series (the 'Final Metrics' "
                        f"table is a plot the optimizer cannot read, clearml #285); use "
                        f"--objective {OBJECTIVE_TITLE}/{series}")
    if series not in metrics:
        raise UserError(f"the {stage} stage reports no metric {series!r}{did_you_mean(series, metrics)}; "
                        f"it reports {', '.join(metrics)} (clearml #285)")


def infer_stage(param_texts: Sequence[str], series: str) -> str:
    """The one stage whose template has every swept section (and, among several, reports the objective)."""
    sections = {text.partition("=")[0].replace(".", "/", 1).split("/")[0] for text in param_texts}
    covering = [stage for stage in STAGE_METRICS if sections <= {*STAGES[stage].sections, "inputs"}]
    reporting = [stage for stage in covering if series in STAGE_METRICS[stage]]
    for candidates in (reporting, covering):  # a lone covering stage gets the objective's own error
        if len(candidates) == 1:
            return candidates[0]
    found = ", ".join(reporting or covering) or "none"
    raise UserError(f"cannot tell which template to sweep (candidates: {found}); pass --stage or --preset")


def job_configs(stage: str, template_params: dict[str, Any], space: Sequence[ParamSpec]) -> list[AppConfig]:
    """The configs the jobs may run with, as far as the stage's conditional reads go: the template's values
    of the stage's sections, under every choice/fixed value of the space (e.g. an eval swept over modes
    needs the index only if one of them is retriever_context). Ranges are numbers, which decide nothing."""
    base = {key: value for key, value in template_params.items() if key.split("/")[0] in STAGES[stage].sections}
    configs = [apply_flat(AppConfig(), base)]
    for spec in space:
        if spec.kind in ("choice", "fixed") and not spec.key.startswith("inputs/"):
            configs = [apply_flat(cfg, {spec.key: value}) for cfg in configs for value in spec.values]
    return configs


def check_template(stage: str, template_params: dict[str, Any], space: Sequence[ParamSpec]) -> None:
    """Against the real base task: every swept key exists as written, and every input is set somewhere."""
    missing = [p.key for p in space if p.key not in template_params]
    if missing:
        hints = "; ".join(f"{k}{did_you_mean(k, list(template_params))}" for k in missing)
        raise UserError(f"the base task has no parameter {hints} (ClearML would ignore it, clearml #254)")
    pinned = {p.key for p in space}
    needed = {name for cfg in job_configs(stage, template_params, space) for name in STAGES[stage].needed_inputs(cfg)}
    unset = [f"inputs/{name}" for name in STAGES[stage].inputs if name in needed and name not in STAGES[stage].builds
             and not template_params.get(f"inputs/{name}") and f"inputs/{name}" not in pinned]
    if unset:
        raise UserError(f"the base task has no {', '.join(unset)}: every job would fail. Sweep a step of a "
                        f"finished pipeline (--template-id), or pin the parent, e.g. "
                        f"--param {unset[0]}=fixed:<task id>")


def to_clearml_parameter(spec: ParamSpec):
    from clearml.automation import (DiscreteParameterRange, LogUniformParameterRange,
                                    UniformIntegerParameterRange, UniformParameterRange)

    if spec.kind in ("choice", "fixed"):
        return DiscreteParameterRange(spec.key, values=list(spec.values))
    low, high, step = spec.values
    if spec.kind == "int":
        return UniformIntegerParameterRange(spec.key, min_value=low, max_value=high, step_size=step or 1)
    if spec.kind == "loguniform":  # ClearML takes exponents of `base`, not the values
        return LogUniformParameterRange(spec.key, min_value=math.log10(low), max_value=math.log10(high))
    return UniformParameterRange(spec.key, min_value=low, max_value=high, step_size=step)


def _optimizer_class():
    from clearml.automation.optuna import OptimizerOptuna

    from pipelines.templates import untagged_job_class

    class PacedOptimizerOptuna(OptimizerOptuna):
        """OptimizerOptuna that pauses between polls of a job still missing its objective, and whose jobs
        do not inherit the template's `template` tag."""

        _job_class = untagged_job_class()

        def monitor_job(self, job) -> bool:
            running = super().monitor_job(job)
            if running:
                self._stop_event.wait(POLL_PAUSE_SECONDS)
            return running

    return PacedOptimizerOptuna


def build_optimizer(base_task_id: str, space: Sequence[ParamSpec], objective_title: str,
                    objective_series: str, direction: str, max_concurrent: int, total_jobs: int,
                    time_limit_minutes: float | None, queue: str, stage: str,
                    job_time_limit_minutes: float | None = None, spawn_project: str | None = None,
                    pool_period_minutes: float = 0.5):
    """A HyperParameterOptimizer (Optuna) over `space`, reporting into the current task if there is one."""
    from clearml.automation import HyperParameterOptimizer

    for spec in space:
        validate_key(stage, spec.key)
    validate_objective(stage, objective_title, objective_series)
    if direction not in DIRECTIONS:
        raise UserError(f"direction must be max or min, got {direction!r}")
    if max_concurrent < 1 or total_jobs < 1:
        raise UserError("--concurrency and --total-jobs must be at least 1")
    return HyperParameterOptimizer(
        base_task_id=base_task_id, hyper_parameters=[to_clearml_parameter(p) for p in space],
        objective_metric_title=objective_title, objective_metric_series=objective_series,
        objective_metric_sign=direction, optimizer_class=_optimizer_class(),
        max_number_of_concurrent_tasks=max_concurrent, execution_queue=queue,
        optimization_time_limit=time_limit_minutes, total_max_jobs=total_jobs,
        max_iteration_per_job=MAX_ITERATION_PER_JOB, time_limit_per_job=job_time_limit_minutes,
        pool_period_min=pool_period_minutes, spawn_project=spawn_project)


def summarize_sweep(optimizer, top_n: int = 5) -> list[dict]:
    """The best `top_n` jobs with their parameters and objective (clearml #473), then every job that
    produced no objective, reported as failed rather than dropped (clearml #644)."""
    strategy = optimizer.get_optimizer()
    objective = optimizer.objective_metric
    sign = objective.get_objective_sign()
    jobs = strategy.get_created_jobs_tasks()
    scored, failed = [], []
    for task_id, params in strategy.get_created_jobs_ids().items():
        value = objective.get_objective(task_id)
        row = {"task_id": task_id, "status": jobs[task_id].status(), "objective": value, **(params or {})}
        (failed if value is None else scored).append(row)
    scored.sort(key=lambda r: sign * r["objective"], reverse=True)
    for rank, row in enumerate(scored, start=1):
        row["rank"] = rank
    for row in failed:
        row["rank"] = "-"
        row["status"] = f"failed: no objective ({row['status']})"
    return scored[:top_n] + failed


def format_summary(rows: list[dict], objective_name: str) -> str:
    fixed_columns = ("rank", "task_id", "status", "objective")
    params = list(dict.fromkeys(k for r in rows for k in r if k not in fixed_columns))
    renamed = [{**r, objective_name: r["objective"]} for r in rows]
    return format_table(renamed, ["rank", objective_name, *params, "status", "task_id"])


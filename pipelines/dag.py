"""The one DAG definition: a list of step specs, compiled into the local runner and the PipelineController.

A step names its stage (the ClearML template it runs), its parents, the `section.field` values it sets
on top of the run's config (e.g. the eval mode), and its inputs as references to parent steps
(`${ingest.id}`: locally the parent's output folder, on a server the parent task's id). Which stages
exist and what each reads comes from the stage registry (`clearml_tasks.stages`); the edges are the
inputs each stage needs under the step's config.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from clearml_tasks.stages import STAGE_NAMES, STAGES, upstream
from components.config import AppConfig
from components.overrides import apply_flat


@dataclass(frozen=True)
class StepSpec:
    name: str
    stage: str
    parents: tuple[str, ...] = ()
    overrides: dict[str, str] = field(default_factory=dict)  # section.field -> value
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> "${step.id}"
    output_subdir: str | None = None  # None: a folder named after the step

    @property
    def subdir(self) -> str:
        return self.name if self.output_subdir is None else self.output_subdir


def ref(step: str) -> str:
    return "${%s.id}" % step


def referenced_step(value: str) -> str | None:
    """`${ingest.id}` -> `ingest`; None for a literal value."""
    if value.startswith("${") and value.endswith(".id}"):
        return value[2:-4]
    return None


def eval_step_name(mode: str) -> str:
    return f"eval_{mode}"


def step_config(cfg: AppConfig, step: StepSpec) -> AppConfig:
    """The run's config with the step's own overrides on top."""
    return apply_flat(cfg, step.overrides) if step.overrides else cfg


def _variants(stage: str, cfg: AppConfig, single_eval: bool) -> list[tuple[str, dict, str | None]]:
    """(step name, overrides, output subdir) of each step a stage contributes: eval one per mode."""
    if stage != "eval":
        return [(stage, {}, None)]
    if single_eval:
        return [("eval", {"experiment.mode": cfg.experiment.mode}, "")]
    modes = dict.fromkeys(cfg.experiment.modes)
    return [(eval_step_name(m), {"experiment.mode": m}, None) for m in modes]


def build_dag(cfg: AppConfig, stages: tuple[str, ...] = STAGE_NAMES, single_eval: bool = False) -> list[StepSpec]:
    """Steps of the chosen stages in registry order; a step whose needed input is not in the DAG (a
    retriever_context eval without index, a benchmark without finetune) is left out."""
    steps: list[StepSpec] = []
    for stage in (s for s in STAGES if s in stages):
        for name, overrides, subdir in _variants(stage, cfg, single_eval):
            needed = STAGES[stage].needed_inputs(apply_flat(cfg, overrides) if overrides else cfg)
            if all(any(s.name == parent for s in steps) for parent in needed):
                steps.append(StepSpec(name=name, stage=stage, parents=needed, overrides=overrides,
                                      inputs={parent: ref(parent) for parent in needed}, output_subdir=subdir))
    return steps


def with_ancestors(steps: list[StepSpec], names: set[str]) -> list[StepSpec]:
    """The named steps and every step they read from, in DAG order."""
    wanted = set(names)
    for step in reversed(steps):
        if step.name in wanted:
            wanted.update(step.parents)
    return [s for s in steps if s.name in wanted]


def single_eval_dag(cfg: AppConfig) -> list[StepSpec]:
    """`slm eval`: ingest (+ index for retrieval) and one eval whose outputs land in output_dir itself."""
    return with_ancestors(build_dag(cfg, upstream("eval"), single_eval=True), {"eval"})


def stage_dag(stage: str, cfg: AppConfig) -> list[StepSpec]:
    """`slm <stage>`: that stage and what it needs upstream."""
    return build_dag(cfg, upstream(stage))


def validate_dag(steps: list[StepSpec]) -> None:
    """Parents exist and come first; input references point at parents; stages are known."""
    seen: set[str] = set()
    for step in steps:
        if step.stage not in STAGES:
            raise ValueError(f"step {step.name}: unknown stage {step.stage}")
        for parent in step.parents:
            if parent not in seen:
                raise ValueError(f"step {step.name}: parent {parent} is not defined before it")
        for value in step.inputs.values():
            if referenced_step(value) not in step.parents:
                raise ValueError(f"step {step.name}: input {value} does not reference a parent")
        seen.add(step.name)

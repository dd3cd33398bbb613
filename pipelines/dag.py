"""The one DAG definition: a list of step specs, compiled into the local runner and the PipelineController.

A step names its stage (the ClearML template it runs), its parents, the `section.field` values it sets
on top of the run's config (e.g. the eval mode), and its inputs as references to parent steps
(`${ingest.id}`: locally the parent's output folder, on a server the parent task's id).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from components.config import AppConfig

STAGES = ("ingest", "index", "eval", "finetune", "benchmark")

# Config sections each stage reads: connected as its ClearML parameter sections, and hashed into its
# step-cache key. Everything a stage's output depends on must be listed here.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "ingest": ("dataset",),
    "index": ("retriever",),
    "eval": ("experiment", "model", "retriever", "prompt", "generation"),
    "finetune": ("finetune", "model", "prompt"),
    "benchmark": ("benchmark", "model", "prompt"),
}

# What each stage takes from its parents: input name -> parent stage.
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "ingest": (),
    "index": ("ingest",),
    "eval": ("ingest", "index"),
    "finetune": ("ingest",),
    "benchmark": ("ingest", "finetune"),
}


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


def _step(name: str, stage: str, deps: dict[str, str], **kwargs) -> StepSpec:
    return StepSpec(name=name, stage=stage, parents=tuple(dict.fromkeys(deps.values())),
                    inputs={k: ref(v) for k, v in deps.items()}, **kwargs)


def eval_steps(modes: list[str], single: bool = False) -> list[StepSpec]:
    steps = []
    for mode in modes:
        deps = {"ingest": "ingest", **({"index": "index"} if mode == "retriever_context" else {})}
        steps.append(_step("eval" if single else eval_step_name(mode), "eval", deps,
                           overrides={"experiment.mode": mode}, output_subdir="" if single else None))
    return steps


def build_dag(cfg: AppConfig, stages: tuple[str, ...] = STAGES) -> list[StepSpec]:
    """The full pipeline: ingest -> index -> eval per mode, ingest -> finetune -> benchmark."""
    modes = list(dict.fromkeys(cfg.experiment.modes))
    steps = [_step("ingest", "ingest", {})]
    if "index" in stages:
        steps.append(_step("index", "index", {"ingest": "ingest"}))
    if "eval" in stages:
        steps += eval_steps([m for m in modes if "index" in stages or m != "retriever_context"])
    if "finetune" in stages:
        steps.append(_step("finetune", "finetune", {"ingest": "ingest"}))
    if "benchmark" in stages and "finetune" in stages:
        steps.append(_step("benchmark", "benchmark", {"ingest": "ingest", "finetune": "finetune"}))
    return steps


def single_eval_dag(mode: str) -> list[StepSpec]:
    """`slm eval`: ingest (+ index for retrieval) and one eval whose outputs land in output_dir itself."""
    steps = [_step("ingest", "ingest", {})]
    if mode == "retriever_context":
        steps.append(_step("index", "index", {"ingest": "ingest"}))
    return steps + eval_steps([mode], single=True)


def stage_dag(stage: str) -> list[StepSpec]:
    """`slm <stage>`: that stage and what it needs upstream."""
    wanted = {"ingest": ("ingest",), "index": ("ingest", "index"), "finetune": ("ingest", "finetune"),
              "benchmark": ("ingest", "finetune", "benchmark")}[stage]
    return [s for s in build_dag(AppConfig(), stages=wanted) if s.stage in wanted]


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

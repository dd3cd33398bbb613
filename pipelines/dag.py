"""The one DAG definition: a list of step specs, compiled into the local runner and the PipelineController.

A step names its stage (the ClearML template it runs), its parents, the `section.field` values it sets
on top of the run's config (the eval mode, a grid point's values, a shard number), and its inputs as
references to parent steps (`${ingest.id}`: locally the parent's output folder, on a server the parent
task's id; an input of several parents is a comma-separated list of references). Which stages exist and
what each reads comes from the stage registry (`clearml_tasks.stages`); the edges are the inputs each
stage needs under the step's config.

A grid (`pipelines.grid`) compiles into one DAG: a step exists once per combination of the axis values
its output depends on (the registry's cache config, its own or its parents'), and its name says them
(`eval_no_context__model-qwen_0_6b`). One run is a grid of one point.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from clearml_tasks.stages import STAGE_NAMES, STAGES, upstream
from components.core.config import AppConfig
from components.core.overrides import apply_flat
from pipelines.grid import Grid

REF = re.compile(r"\$\{([^}.]+)\.[^}]*\}")  # ${step.id}, ${step.models.output.-1.id}; not ${pipeline.x}


MODEL_REF = re.compile(r"\$\{([^}.]+)\.models\.output\.-1\.id\}")


def model_ref(step: str) -> str:
    """ClearML's reference to the last model a step registered (locally: the folder it registered)."""
    return "${%s.models.output.-1.id}" % step


@dataclass(frozen=True)
class StepSpec:
    name: str
    stage: str
    parents: tuple[str, ...] = ()
    overrides: dict[str, str] = field(default_factory=dict)  # section.field -> value
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> "${step.id}" (or several, joined by ",")
    output_subdir: str | None = None  # None: a folder named after the step

    @property
    def subdir(self) -> str:
        return self.name if self.output_subdir is None else self.output_subdir


def ref(step: str) -> str:
    return "${%s.id}" % step


def referenced_steps(value: str) -> list[str]:
    """`${ingest.id}` -> [ingest]; `${a.id},${b.id}` -> [a, b]; [] for a literal value or a pipeline knob."""
    return [name for name in REF.findall(value) if name != "pipeline"]


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
    return [(eval_step_name(m), {"experiment.mode": m}, None) for m in dict.fromkeys(cfg.experiment.modes)]


class _Builder:
    """Adds steps point by point, merging the steps two points share (same stage, same config that the
    output depends on, same parents)."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.steps: dict[str, StepSpec] = {}
        self.identity: dict[str, str] = {}
        self.axes: dict[str, set[str]] = {}  # step -> the axes its output depends on

    def add(self, stage: str, base_name: str, cfg: AppConfig, point: dict, point_flat: dict, own: dict,
            parents: dict[str, list[str]], subdir: str | None, after: tuple[str, ...] = ()) -> str:
        """`parents` are the step's inputs (input name -> parent steps); `after` are parents it reads another
        way (a model reference in its overrides)."""
        spec = STAGES[stage]
        step_cfg = apply_flat(cfg, own) if own else cfg
        depends = spec.cache_config(step_cfg)
        reads = {f"{s}.{f}" for s, fields in depends.items() for f in fields}
        parent_names = [p for names in parents.values() for p in names] + list(after)
        axes = {a.key for a in self.grid.axes if a.fields & reads}.union(*(self.axes[p] for p in parent_names))
        name = base_name + self.grid.label(point, axes)
        identity = hashlib.sha256(json.dumps([stage, depends, [self.identity[p] for p in parent_names]],
                                             sort_keys=True, default=str).encode()).hexdigest()
        if name in self.steps:
            assert self.identity[name] == identity, f"two different steps named {name}"
            return name
        overrides = {k: v for k, v in point_flat.items() if k in reads}
        overrides.update(own)
        self.steps[name] = StepSpec(name=name, stage=stage, parents=tuple(dict.fromkeys(parent_names)),
                                    overrides=overrides, output_subdir=subdir,
                                    inputs={k: ",".join(ref(p) for p in names) for k, names in parents.items()})
        self.identity[name], self.axes[name] = identity, axes
        return name


def build_dag(cfg: AppConfig, stages: tuple[str, ...] = STAGE_NAMES, single_eval: bool = False,
              grid: Grid | None = None) -> list[StepSpec]:
    """Steps of the chosen stages in registry order, for every point of the grid (default: `cfg` alone).
    A step whose needed input is not in the DAG (a retriever_context eval without index, a benchmark
    without finetune) is left out. Evals with `experiment.shards` > 1 become shard steps and a merge
    step under the eval's name; a `report` step over every eval closes a multi-step run."""
    grid = grid or Grid(base=cfg)
    builder = _Builder(grid)
    finals: list[str] = []  # the steps holding each eval's final outputs
    for point in grid.points():
        point_cfg = grid.config(point) if grid.axes or grid.fixed else cfg
        point_flat = grid.flat(point) if grid.axes or grid.fixed else {}
        made: dict[str, str] = {}  # stage -> this point's step of it (the input names)

        def add_eval(base_name: str, own: dict, subdir: str | None, after: tuple[str, ...] = ()) -> str | None:
            """An eval (or its shards and their merge) when the inputs it needs are in the DAG."""
            needed = STAGES["eval"].needed_inputs(apply_flat(point_cfg, own))
            if not all(p in made for p in needed):
                return None
            parents = {p: [made[p]] for p in needed}
            shards = point_cfg.experiment.shards
            if shards == 1:
                name = builder.add("eval", base_name, point_cfg, point, point_flat, own, parents, subdir, after)
            else:
                shard_names = [builder.add("eval", f"{base_name}__shard-{i}of{shards}", point_cfg, point, point_flat,
                                           {**own, "experiment.shard": i}, parents, None, after)
                               for i in range(shards)]
                name = builder.add("merge", base_name, point_cfg, point, point_flat, {}, {"eval": shard_names}, subdir)
            finals.append(name)
            return name

        for stage in (s for s in STAGES if s in stages and s not in ("merge", "report")):
            for base_name, own, subdir in _variants(stage, point_cfg, single_eval):
                if stage == "eval":
                    add_eval(base_name, own, subdir)
                    continue
                needed = STAGES[stage].needed_inputs(apply_flat(point_cfg, own) if own else point_cfg)
                if all(p in made for p in needed):
                    made[stage] = builder.add(stage, base_name, point_cfg, point, point_flat, own,
                                              {p: [made[p]] for p in needed}, subdir)
            if stage == "finetune" and "finetune" in made and "eval" in stages and point_cfg.experiment.eval_tuned:
                for mode in dict.fromkeys(point_cfg.experiment.modes):  # the tuned model beside the base one
                    own = {"experiment.mode": mode, "model.adapter": model_ref(made["finetune"])}
                    add_eval(f"eval_tuned_{mode}", own, None, after=(made["finetune"],))
    if "report" in stages and finals and not single_eval:
        finals = list(dict.fromkeys(finals))
        builder.add("report", "report", cfg, {}, {}, {}, {"eval": finals}, None)
    return list(builder.steps.values())


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
            if not referenced_steps(value) or not set(referenced_steps(value)) <= set(step.parents):
                raise ValueError(f"step {step.name}: input {value} does not reference a parent")
        seen.add(step.name)

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

from clearml_tasks.stages import STAGES, Stage, joiners, upstream
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


def step_config(cfg: AppConfig, step: StepSpec) -> AppConfig:
    """The run's config with the step's own overrides on top."""
    return apply_flat(cfg, step.overrides) if step.overrides else cfg


def _variants(spec: Stage, cfg: AppConfig, single: bool) -> list[tuple[str, dict, str | None]]:
    """(step name, overrides, output subdir) of each step a stage contributes: one per fan-out value, or with
    `single` the config's own value written into the output folder itself."""
    fan = spec.fan_out
    if fan is None:
        return [(spec.name, {}, None)]
    if single:
        return [(spec.name, {fan.field: cfg.value(fan.field)}, "")]
    return [(f"{spec.name}_{v}", {fan.field: v}, None) for v in dict.fromkeys(cfg.value(fan.over))]


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


def build_dag(cfg: AppConfig, stages: tuple[str, ...] | None = None, single: bool = False,
              grid: Grid | None = None) -> list[StepSpec]:
    """Steps of the chosen stages (default: every registered one) in registry order, for every point of
    the grid (default: `cfg` alone), placed by each stage's declared shape (clearml_tasks.stages). A step
    whose needed input is not in the DAG (a retriever_context eval without index, a benchmark without
    finetune) is left out. `single`: a fan-out stage runs only the config's own variant, into the output
    folder itself, and stages that run only in a multi-step run are left out (`slm eval`)."""
    stages = tuple(STAGES) if stages is None else stages
    grid = grid or Grid(base=cfg)
    builder = _Builder(grid)
    finals: dict[str, list[str]] = {}  # stage -> the steps holding its final outputs (a joiner's for shards)
    looped = [s for s in STAGES if s in stages and s not in joiners() and not STAGES[s].gathers]
    for point in grid.points():
        point_cfg = grid.config(point) if grid.axes or grid.fixed else cfg
        point_flat = grid.flat(point) if grid.axes or grid.fixed else {}
        made: dict[str, str] = {}  # stage -> this point's step of it (the input names)

        def add(stage: str, base_name: str, own: dict, subdir: str | None, after: tuple[str, ...] = ()) -> None:
            """A step (or its shards and their joiner) when the inputs it needs are in the DAG."""
            spec = STAGES[stage]
            needed = spec.needed_inputs(apply_flat(point_cfg, own) if own else point_cfg)
            if not all(p in made for p in needed):
                return
            parents = {p: [made[p]] for p in needed}
            count = point_cfg.value(spec.shards.count) if spec.shards else 1
            if count == 1:
                name = builder.add(stage, base_name, point_cfg, point, point_flat, own, parents, subdir, after)
            else:
                shard_names = [builder.add(stage, f"{base_name}__shard-{i}of{count}", point_cfg, point, point_flat,
                                           {**own, spec.shards.field: i}, parents, None, after)
                               for i in range(count)]
                name = builder.add(spec.shards.joiner, base_name, point_cfg, point, point_flat, {},
                                   {stage: shard_names}, subdir)
            finals.setdefault(stage, []).append(name)
            if spec.fan_out is None:  # a fanned-out stage is read only through a gatherer
                made[stage] = name

        for stage in looped:
            for base_name, own, subdir in _variants(STAGES[stage], point_cfg, single):
                add(stage, base_name, own, subdir)
            for later in (s for s in looped if STAGES[s].after and STAGES[s].after.stage == stage):
                spec = STAGES[later]
                if stage not in made or not point_cfg.value(spec.after.enabled_by):
                    continue
                extra = spec.after.overrides(point_cfg) if spec.after.overrides else {}
                for base_name, own, _ in _variants(spec, point_cfg, single=False):  # beside the base variants
                    label = f"{later}_{spec.after.label}" + base_name[len(later):]
                    add(later, label, {**own, **extra, spec.after.model_field: model_ref(made[stage])}, None,
                        after=(made[stage],))
    for stage in (s for s in STAGES if s in stages and STAGES[s].gathers):
        spec = STAGES[stage]
        gathered = list(dict.fromkeys(finals.get(spec.gathers, [])))
        if gathered and not (single and spec.only_in_run):
            builder.add(stage, stage, cfg, {}, {}, {}, {spec.gathers: gathered}, None)
    return list(builder.steps.values())


def with_ancestors(steps: list[StepSpec], names: set[str]) -> list[StepSpec]:
    """The named steps and every step they read from, in DAG order."""
    wanted = set(names)
    for step in reversed(steps):
        if step.name in wanted:
            wanted.update(step.parents)
    return [s for s in steps if s.name in wanted]


def stage_dag(stage: str, cfg: AppConfig) -> list[StepSpec]:
    """`slm <stage>`: that stage and what it needs upstream; a fanned-out stage runs the config's own
    variant into the output folder itself (`slm eval` runs experiment.mode)."""
    steps = build_dag(cfg, upstream(stage), single=True)
    return with_ancestors(steps, {s.name for s in steps if s.stage == stage})


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

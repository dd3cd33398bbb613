"""Grids of experiments, Hydra multirun style: with `-m`, a comma-separated value of a preset group or a
scalar field is an axis (`model=smollm2_135m_gguf,qwen_0.6b retriever.top_k=1,3,5`), and the grid is
the product of the axes. `pipelines.dag.build_dag` compiles a grid into one DAG in which each step
exists once per combination of the axes its output depends on."""
from __future__ import annotations

import itertools
import re
import typing
from dataclasses import dataclass, field

from components.core.coercion import field_types
from components.core.config import AppConfig, section_types
from components.core.errors import UserError
from components.core.overrides import build_config, parse_overrides
from components.core.presets import GROUPS


@dataclass(frozen=True)
class Axis:
    key: str  # a preset group (model) or section.field
    values: tuple[str, ...]
    fields: frozenset[str]  # the section.field keys its values set

    @property
    def short(self) -> str:
        """The axis in step names: the group, or the field without its section."""
        return self.key.rpartition(".")[2]


@dataclass(frozen=True)
class Grid:
    base: AppConfig  # the defaults, or a saved config (--config)
    fixed: tuple[str, ...] = ()  # overrides that are not axes
    axes: tuple[Axis, ...] = field(default_factory=tuple)

    def points(self) -> list[dict[str, str]]:
        """Every combination of axis values; axes that change the model vary slowest, so a local run
        loads each model once for all of its steps."""
        ordered = sorted(self.axes, key=lambda a: not any(f.startswith("model.") for f in a.fields))
        return [dict(zip((a.key for a in ordered), values))
                for values in itertools.product(*(a.values for a in ordered))]

    def tokens(self, point: dict[str, str]) -> list[str]:
        return [*self.fixed, *(f"{key}={value}" for key, value in point.items())]

    def config(self, point: dict[str, str] | None = None) -> AppConfig:
        return build_config(self.tokens(point or {}), base=self.base)

    def flat(self, point: dict[str, str]) -> dict[str, str]:
        """The `section.field -> value` a point sets on top of the base (presets expanded)."""
        return parse_overrides(self.tokens(point))

    def label(self, point: dict[str, str], axes: set[str]) -> str:
        """The part of a step name that says its axis values (`__model-qwen_0_6b__top_k-3`): ClearML step
        names must not hold dots (`${step.id}` is split at them)."""
        return "".join(f"__{a.short}-{slug(point[a.key])}" for a in self.axes if a.key in axes and a.key in point)


def slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", value) or "none"


def _axis_fields(key: str, values: list[str]) -> frozenset[str]:
    if key in GROUPS:
        presets, name_key = GROUPS[key]
        return frozenset({k for v in values for k in presets.get(v, {})} | ({name_key} if name_key else set()))
    return frozenset({key})


def _is_scalar_field(key: str) -> bool:
    section, _, name = key.partition(".")
    types = section_types()
    if section not in types:
        return False
    tp = field_types(types[section]).get(name)
    return tp is not None and typing.get_origin(tp) is not list


def parse_grid(tokens: list[str], multirun: bool, base: AppConfig | None = None) -> Grid:
    """Split overrides into fixed ones and axes (only with `multirun`); every point is checked."""
    base = base or AppConfig()
    fixed, axes = [], []
    for token in tokens:
        key, sep, value = token.partition("=")
        is_axis = sep and "," in value and not value.strip().startswith("[") and (
            key in GROUPS or _is_scalar_field(key))
        if is_axis and not multirun:
            raise UserError(f"{token}: several values make a grid; add -m (e.g. slm run -m {token})")
        if not is_axis:
            fixed.append(token)
            continue
        values = [v.strip() for v in value.split(",")]
        if len(set(values)) != len(values):  # an empty value is one (model.adapter=,<id>: base and tuned)
            raise UserError(f"axis {key}: repeated values in {value!r}")
        if any(a.key == key for a in axes):
            raise UserError(f"axis {key} given twice")
        axes.append(Axis(key, tuple(values), _axis_fields(key, values)))
    grid = Grid(base, tuple(fixed), tuple(axes))
    for point in grid.points():  # a bad value is an error naming its key before anything runs
        grid.config(point)
    return grid

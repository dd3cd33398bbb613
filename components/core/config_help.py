"""What the config says about itself: every key, each field's help (ending with its choices), its choice
list and which reader it is for, and `slm config`'s listing. The sections themselves: components.core.config."""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from components.core.coercion import field_types
from components.core.config import AppConfig, section_types
from components.core.errors import UserError, did_you_mean


def all_keys() -> list[str]:
    """Every `section.field` of the config."""
    return [f"{s}.{f}" for s, cls in section_types().items() for f in field_types(cls)]


def _section_class(section: str) -> type:
    sections = section_types()
    if section not in sections:
        raise UserError(f"unknown config section: {section}{did_you_mean(section, sections)} "
                        f"(sections: {', '.join(sections)})")
    return sections[section]


def _choices(f: dataclasses.Field) -> tuple:
    choices = f.metadata.get("choices", ())
    return tuple(choices() if callable(choices) else choices)


def _help_text(f: dataclasses.Field) -> str:
    """A field's help, ending with its choices ("one of: a, b"), so the UI's parameter descriptions and `slm
    config` list them; a callable help or choice list is read now, so a registry's later entries show
    (generation.backend)."""
    help = f.metadata.get("help", "")
    text = help() if callable(help) else help
    choices = _choices(f)
    if choices:
        each = "each " if typing.get_origin(f.type) is list or str(f.type).startswith("list") else ""
        text += f" ({each}one of: {', '.join(map(str, choices))})"
    return text


def field_choices(section: str, name: str) -> tuple:
    """The values `section.name` accepts, where it has a fixed list (else ())."""
    return _choices({f.name: f for f in dataclasses.fields(_section_class(section))}[name])


def field_only(section_cls: type, name: str) -> str:
    """Which reader a field is for: "" (every stage reading its section), a stage name, or DAG (see `_f`)."""
    return {f.name: f for f in dataclasses.fields(section_cls)}[name].metadata.get("only", "")


def field_help(section: str, name: str) -> str:
    """The help text of `section.name`; an unknown section or field is a UserError with a spelling hint."""
    fields = {f.name: f for f in dataclasses.fields(_section_class(section))}
    if name not in fields:
        raise UserError(f"unknown config key: {section}.{name}{did_you_mean(name, fields)}")
    return _help_text(fields[name])


def _type_name(tp: Any) -> str:
    return str(tp) if typing.get_origin(tp) else getattr(tp, "__name__", str(tp))


def describe_config(section: str | None = None, config: AppConfig | None = None) -> str:
    """Every section (or only `section`) of `config` (default: the defaults) as a readable block: the section
    name, then `  section.field = <value as JSON>  (<type>)  <help>` per field, in aligned columns."""
    names = [section] if section is not None else list(section_types())
    config = config if config is not None else AppConfig()
    blocks = []
    for name in names:
        cls = _section_class(name)
        types = field_types(cls)
        values = getattr(config, name)
        rows = [(f"{name}.{f.name}", json.dumps(getattr(values, f.name), ensure_ascii=False),
                 f"({_type_name(types[f.name])})", _help_text(f)) for f in dataclasses.fields(cls)]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [f"[{name}]"] + [f"  {k:<{widths[0]}} = {v:<{widths[1]}}  {t:<{widths[2]}}  {h}".rstrip()
                                 for k, v, t, h in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)

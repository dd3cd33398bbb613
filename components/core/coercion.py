"""From a command-line or ClearML string (or a JSON value) to a config field's declared type, and a section
built from raw values: the parsing every entry point shares (overrides, saved configs, sweeps, fleet
queues), for any of components.core.config's dataclasses."""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from components.core.errors import UserError, did_you_mean


def field_types(section_cls: type) -> dict[str, object]:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(section_cls)}


def _coerce_scalar(key: str, tp: Any, value: Any) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise UserError(f"invalid value for {key}: {value!r} (expected true or false)")
    if tp in (int, float):
        if isinstance(value, bool):
            raise UserError(f"invalid value for {key}: {value!r} (expected {tp.__name__})")
        try:
            number = float(value) if tp is float else int(str(value).strip())
        except (TypeError, ValueError):
            raise UserError(f"invalid value for {key}: {value!r} (expected {tp.__name__})") from None
        return number
    if tp is str:
        return value if isinstance(value, str) else str(value)
    raise TypeError(f"unsupported config type {tp} for {key}")


def coerce_value(key: str, tp: Any, value: Any) -> Any:
    """Convert a command-line or ClearML string (or a JSON value) to the field's declared type."""
    if typing.get_origin(tp) is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    value = [v.strip().strip("'\"") for v in text[1:-1].split(",") if v.strip()]
            else:
                value = [v for v in text.split(",") if v] if text else []
        if not isinstance(value, (list, tuple)):
            raise UserError(f"invalid value for {key}: {value!r} (expected a list)")
        return [_coerce_scalar(key, item_tp, v) for v in value]
    return _coerce_scalar(key, tp, value)


def coerce_section(name: str, section_cls: type, values: dict) -> Any:
    """A section built from raw values; an unknown field is an error naming `section.field`."""
    types = field_types(section_cls)
    kwargs = {}
    for field_name, value in values.items():
        key = f"{name}.{field_name}"
        if field_name not in types:
            raise UserError(f"unknown config key: {key}{did_you_mean(field_name, types)}")
        kwargs[field_name] = coerce_value(key, types[field_name], value)
    return section_cls(**kwargs)

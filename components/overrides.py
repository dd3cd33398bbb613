"""Hydra-style command-line overrides: `group=preset` picks a preset, `section.field=value` sets a field.

Presets are applied first (in the order given), then field overrides, so
`experiment_mode=test_10_samples experiment.max_samples=5` runs 5 questions. Unknown keys, presets and
badly typed values raise UserError naming the key and, where one is close, the likely intended name.
"""
from __future__ import annotations

import difflib
import json
import typing
from typing import Any, Iterable

from components.config import AppConfig, field_types, section_types
from components.errors import UserError
from components.presets import GROUPS


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


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
    """Convert a command-line string (or a JSON value) to the field's declared type."""
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
    types = field_types(section_cls)
    kwargs = {}
    for field_name, value in values.items():
        key = f"{name}.{field_name}"
        if field_name not in types:
            raise UserError(f"unknown config key: {key}{_suggest(field_name, types)}")
        kwargs[field_name] = coerce_value(key, types[field_name], value)
    return section_cls(**kwargs)


def all_keys() -> list[str]:
    return [f"{s}.{f}" for s, cls in section_types().items() for f in field_types(cls)]


def _split(token: str) -> tuple[str, str]:
    key, sep, value = token.partition("=")
    if not sep or not key:
        raise UserError(f"invalid override {token!r} (expected key=value, e.g. experiment.max_samples=10)")
    return key.strip(), value


def parse_overrides(tokens: Iterable[str]) -> dict[str, str]:
    """Check every token and return the flat `section.field -> value` mapping they set (presets expanded)."""
    presets: list[dict] = []
    fields: dict[str, str] = {}
    keys = set(all_keys())
    for token in tokens:
        key, value = _split(token)
        if key in GROUPS:
            table, name_key = GROUPS[key]
            if value not in table:
                raise UserError(f"unknown {key} preset: {value!r}{_suggest(value, table)}"
                                f"; choose from {', '.join(table)}")
            presets.append({**table[value], **({name_key: value} if name_key else {})})
        elif key in keys:
            fields[key] = value
        else:
            raise UserError(f"unknown config key: {key}{_suggest(key, list(keys) + list(GROUPS))}")
    flat: dict[str, str] = {}
    for preset in presets:
        flat.update(preset)
    flat.update(fields)
    return flat


def build_config(tokens: Iterable[str] = (), base: AppConfig | None = None) -> AppConfig:
    """Defaults (or `base`) + presets + overrides, validated."""
    data = (base or AppConfig()).to_dict()
    for key, value in parse_overrides(tokens).items():
        section, field_name = key.split(".", 1)
        data[section][field_name] = value
    return AppConfig.from_dict(data)


def apply_flat(config: AppConfig, flat: dict[str, Any]) -> AppConfig:
    """Apply `section.field` (or ClearML-style `section/field`) values, e.g. parameters edited in the UI."""
    return build_config([f"{k.replace('/', '.', 1)}={_as_text(v)}" for k, v in flat.items()], base=config)


def _as_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple)) else str(value)


def changed_fields(config: AppConfig) -> dict[str, Any]:
    """`section.field -> value` for every field that differs from the defaults."""
    default, current = AppConfig().to_dict(), config.to_dict()
    return {f"{s}.{f}": v for s, fields in current.items() for f, v in fields.items() if default[s][f] != v}


__all__ = ["build_config", "parse_overrides", "apply_flat", "coerce_value", "coerce_section", "all_keys",
           "changed_fields"]

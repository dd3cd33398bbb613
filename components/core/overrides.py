"""Hydra-style command-line overrides: `group=preset` picks a preset, `section.field=value` sets a field.

Presets are applied first (in the order given), then field overrides, so
`experiment_mode=test_10_samples experiment.max_samples=5` runs 5 questions. Unknown keys, presets and
badly typed values raise UserError naming the key and, where one is close, the likely intended name.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from components.core.config import AppConfig
from components.core.config_help import all_keys
from components.core.errors import UserError, did_you_mean
from components.core.presets import GROUPS


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
                raise UserError(f"unknown {key} preset: {value!r}{did_you_mean(value, table)}"
                                f"; choose from {', '.join(table)}")
            presets.append({**table[value], **({name_key: value} if name_key else {})})
        elif key in keys:
            fields[key] = value
        else:
            raise UserError(f"unknown config key: {key}{did_you_mean(key, list(keys) + list(GROUPS))}")
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


__all__ = ["build_config", "parse_overrides", "apply_flat", "changed_fields"]

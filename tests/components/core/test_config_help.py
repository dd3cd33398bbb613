"""The config as a documented contract: every field has help text, and describe_config renders it."""
from __future__ import annotations

import dataclasses

import pytest

from components.core.coercion import field_types
from components.core.config import AppConfig, section_types
from components.core.config_help import all_keys, describe_config, field_help
from components.core.errors import UserError
from components.core.overrides import build_config


def test_every_field_has_help():
    for section, cls in section_types().items():
        for f in dataclasses.fields(cls):
            help = f.metadata.get("help", "")
            assert field_help(section, f.name).strip(), f"{section}.{f.name} has no help"
            assert field_help(section, f.name).startswith(help() if callable(help) else help)  # + its choices


def test_list_defaults_are_not_shared():
    a, b = AppConfig(), AppConfig()
    a.retriever.hit_ks.append(99)
    a.clearml.tags.append("x")
    assert b.retriever.hit_ks == [1, 3, 5, 10] and b.clearml.tags == []


def test_describe_config_lists_every_key():
    text = describe_config()
    keys = {line.split()[0] for line in text.splitlines() if line.startswith("  ")}
    assert keys == set(all_keys())
    for section in section_types():
        assert f"[{section}]" in text


def test_describe_config_line_format():
    line = next(l for l in describe_config("generation").splitlines() if "generation.max_batch_tokens" in l)
    assert line.startswith("  generation.max_batch_tokens")
    assert "= 16384" in line and "(int)" in line and line.endswith(field_help("generation", "max_batch_tokens"))


def test_describe_one_section_shows_current_values():
    text = describe_config("retriever", build_config(["retriever.top_k=7"]))
    lines = [l for l in text.splitlines() if l.startswith("  ")]
    assert {l.split()[0] for l in lines} == {f"retriever.{f}" for f in field_types(section_types()["retriever"])}
    top_k = next(l for l in lines if l.split()[0] == "retriever.top_k")
    assert top_k.split()[1:3] == ["=", "7"]
    assert "model." not in text


def test_unknown_section_suggests_the_closest():
    with pytest.raises(UserError, match="did you mean retriever") as e:
        describe_config("retreiver")
    assert "retreiver" in str(e.value)
    for section in section_types():
        assert section in str(e.value)


def test_field_help_unknown_key():
    with pytest.raises(UserError, match="did you mean top_k"):
        field_help("retriever", "topk")

"""Command-line overrides: `group=preset` and `section.field=value` tokens, presets first, errors that name
the key and the likely intended one, ClearML-style flat values applied on a config, and what differs from
the defaults (typed values and their checks: tests/components/core/test_config.py)."""
from __future__ import annotations

import pytest

from components.core.config import AppConfig
from components.core.errors import UserError
from components.core.overrides import apply_flat, build_config, changed_fields, parse_overrides
from components.core.presets import GROUPS


@pytest.mark.parametrize("tokens", [
    ["experiment_mode=test_10_samples", "experiment.max_samples=5"],
    ["experiment.max_samples=5", "experiment_mode=test_10_samples"],  # presets first whatever the order
])
def test_field_overrides_apply_after_presets(tokens):
    cfg = build_config(tokens)
    assert cfg.experiment.max_samples == 5
    assert cfg.experiment.mode == "no_context"


def test_max_samples_combines_with_any_mode():
    cfg = build_config(["experiment_mode=retriever_context", "experiment.max_samples=10"])
    assert (cfg.experiment.mode, cfg.experiment.max_samples) == ("retriever_context", 10)
    cfg = build_config(["experiment.max_samples=10", "experiment_mode=oracle_context"])
    assert (cfg.experiment.mode, cfg.experiment.max_samples) == ("oracle_context", 10)


def test_model_preset_then_field_override():
    cfg = build_config(["model=qwen_0.6b", "model.path=/models/mine"])
    assert cfg.model.name == "qwen_0.6b"
    assert cfg.model.path == "/models/mine"
    assert cfg.model.gguf_package == ""


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(UserError) as e:
        build_config(["experiment.max_sampels=3"])
    msg = str(e.value)
    assert "experiment.max_sampels" in msg
    assert "did you mean experiment.max_samples" in msg


def test_unknown_group_typo_suggests_the_group():
    with pytest.raises(UserError, match="did you mean experiment_mode"):
        build_config(["experiment_mod=test_10_samples"])


def test_unknown_preset_names_group_and_lists_choices():
    with pytest.raises(UserError) as e:
        build_config(["model=qwen_06b"])
    msg = str(e.value)
    assert "model" in msg and "qwen_06b" in msg
    assert "did you mean qwen_0.6b" in msg
    for choice in GROUPS["model"][0]:
        assert choice in msg
    with pytest.raises(UserError) as e:
        build_config(["experiment_mode=nonsense"])
    assert "experiment_mode" in str(e.value)
    for choice in GROUPS["experiment_mode"][0]:
        assert choice in str(e.value)


@pytest.mark.parametrize("token", ["experiment.max_samples", "=3", "experiment.max_samples 3"])
def test_malformed_override_is_a_user_error(token):
    with pytest.raises(UserError, match="key=value"):
        parse_overrides([token])


def test_apply_flat_takes_clearml_style_keys():
    base = build_config(["experiment.max_samples=3"])
    cfg = apply_flat(base, {"generation/max_new_tokens": "16", "experiment/mode": "oracle_context",
                            "retriever/hit_ks": [1, 2], "generation/do_sample": False,
                            "generation.stop_strings": ["\n", "."]})
    assert cfg.generation.max_new_tokens == 16
    assert cfg.experiment.mode == "oracle_context"
    assert cfg.retriever.hit_ks == [1, 2]
    assert cfg.generation.do_sample is False
    assert cfg.generation.stop_strings == ["\n", "."]
    assert cfg.experiment.max_samples == 3  # the base is kept
    assert base.generation.max_new_tokens == 32  # and not mutated
    with pytest.raises(UserError, match="generation.max_new_token"):
        apply_flat(base, {"generation/max_new_token": "16"})


def test_apply_flat_round_trips_every_value_of_a_config():
    """What ClearML hands back (every field of every section, lists included) rebuilds the same config."""
    cfg = build_config(["model=qwen_0.6b", "experiment_mode=retriever_context", "retriever.hit_ks=[2,4]",
                        "generation.stop_strings=['\\n', '###']", "clearml.tags=a,b"])
    flat = {f"{s}/{f}": v for s, fields in cfg.to_dict().items() for f, v in fields.items()}
    assert apply_flat(AppConfig(), flat) == cfg


def test_parse_overrides_expands_presets_and_lets_fields_win():
    flat = parse_overrides(["experiment.max_samples=5", "experiment_mode=test_10_samples", "model=qwen_0.6b"])
    assert flat["experiment.max_samples"] == "5"  # the field, not the preset's 10
    assert flat["experiment.mode"] == "no_context"
    assert flat["model.name"] == "qwen_0.6b" and flat["model.path"] == "Qwen/Qwen3-0.6B"
    assert parse_overrides([]) == {}
    # a value may itself hold "=": only the first one splits key from value
    assert parse_overrides(["prompt.system=a=b"]) == {"prompt.system": "a=b"}


def test_later_presets_of_a_group_win():
    assert build_config(["model=qwen_0.6b", "model=qwen_1.7b"]).model.path == "Qwen/Qwen3-1.7B"


def test_build_config_starts_from_a_base_without_changing_it():
    base = build_config(["experiment.max_samples=3", "retriever.top_k=7"])
    cfg = build_config(["experiment.max_samples=4"], base=base)
    assert (cfg.experiment.max_samples, cfg.retriever.top_k) == (4, 7)
    assert base.experiment.max_samples == 3


def test_changed_fields_lists_exactly_what_differs_from_the_defaults():
    cfg = build_config(["model=qwen_0.6b", "retriever.hit_ks=[2,4]", "experiment.max_samples=0"])
    assert changed_fields(cfg) == {"model.name": "qwen_0.6b", "model.path": "Qwen/Qwen3-0.6B",
                                   "model.gguf_package": "", "model.gguf_file": "", "retriever.hit_ks": [2, 4]}
    assert changed_fields(AppConfig()) == {}
    # what changed_fields reports rebuilds the config from the defaults
    assert apply_flat(AppConfig(), changed_fields(cfg)) == cfg

"""Typed config, presets and overrides (the command line itself: tests/pipelines/test_cli.py)."""
from __future__ import annotations

import pytest

from components.core.config import AppConfig, all_keys
from components.core.errors import UserError
from components.core.overrides import apply_flat, build_config, changed_fields, parse_overrides
from components.core.presets import GROUPS


def test_defaults_build_and_are_valid():
    cfg = build_config([])
    assert cfg == AppConfig()
    assert cfg.experiment.mode == "no_context"
    assert cfg.experiment.max_samples == 0
    assert cfg.model.name == "smollm2_135m_gguf"
    assert cfg.generation.stop_strings == ["\n"]
    assert changed_fields(cfg) == {}


@pytest.mark.parametrize("group,name", [(g, n) for g, (table, _) in GROUPS.items() for n in table])
def test_every_preset_builds(group, name):
    table, name_key = GROUPS[group]
    cfg = build_config([f"{group}={name}"])
    data = cfg.to_dict()
    for key, value in table[name].items():
        section, field = key.split(".", 1)
        assert data[section][field] == value, key
    if name_key:
        section, field = name_key.split(".", 1)
        assert data[section][field] == name


def test_test_10_samples_is_closed_book_on_ten():
    cfg = build_config(["experiment_mode=test_10_samples"])
    assert cfg.experiment.mode == "no_context"
    assert cfg.experiment.max_samples == 10
    assert build_config(["experiment_mode=test_100_samples"]).experiment.max_samples == 100


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


@pytest.mark.parametrize("token,key", [
    ("experiment.max_samples=-1", "experiment.max_samples"),
    ("experiment.max_samples=ten", "experiment.max_samples"),
    ("experiment.mode=closed_book", "experiment.mode"),
    ("experiment.modes=no_context,closed_book", "experiment.modes"),
    ("generation.batch_size=abc", "generation.batch_size"),
    ("generation.batch_size=0", "generation.batch_size"),
    ("generation.do_sample=maybe", "generation.do_sample"),
    ("generation.top_p=1.5", "generation.top_p"),
    ("retriever.hit_ks=[1,x]", "retriever.hit_ks"),
    ("retriever.hit_ks=[1,0]", "retriever.hit_ks"),
    ("retriever.kind=tfidf", "retriever.kind"),
    ("dataset.test_fraction=1.0", "dataset.test_fraction"),
])
def test_invalid_values_name_the_key(token, key):
    with pytest.raises(UserError) as e:
        build_config([token])
    assert key in str(e.value)


@pytest.mark.parametrize("token", ["experiment.max_samples", "=3", "experiment.max_samples 3"])
def test_malformed_override_is_a_user_error(token):
    with pytest.raises(UserError, match="key=value"):
        parse_overrides([token])


@pytest.mark.parametrize("text", ["[1,5]", "1,5", "[1, 5]", " 1, 5 ", "['1', '5']"])
def test_int_lists_parse(text):
    assert build_config([f"retriever.hit_ks={text}"]).retriever.hit_ks == [1, 5]


def test_python_repr_list_of_strings_parses():
    cfg = build_config(["generation.stop_strings=['a', 'b']"])
    assert cfg.generation.stop_strings == ["a", "b"]
    cfg = build_config(['generation.stop_strings=["a", "b"]'])
    assert cfg.generation.stop_strings == ["a", "b"]
    assert build_config(["experiment.modes=no_context"]).experiment.modes == ["no_context"]


def test_scalars_are_coerced():
    cfg = build_config(["generation.do_sample=true", "generation.temperature=0.7", "generation.top_k=5",
                        "model.chat_template=False"])
    assert cfg.generation.do_sample is True
    assert cfg.generation.temperature == pytest.approx(0.7)
    assert isinstance(cfg.generation.top_k, int) and cfg.generation.top_k == 5
    assert cfg.model.chat_template is False


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


def test_from_dict_round_trips():
    cfg = build_config(["model=qwen_1.7b", "experiment_mode=test_10_samples", "retriever.hit_ks=[1,5]",
                        "generation.stop_strings=['x', 'y']", "experiment.modes=no_context,oracle_context"])
    again = AppConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()
    # a saved config with only some sections fills the rest with defaults
    assert AppConfig.from_dict({"experiment": {"max_samples": 7}}).experiment.max_samples == 7


def test_from_dict_unknown_keys_are_errors():
    data = AppConfig().to_dict()
    data["experiment"]["max_sampels"] = 3
    with pytest.raises(UserError, match="experiment.max_sampels.*did you mean max_samples"):
        AppConfig.from_dict(data)
    data = AppConfig().to_dict()
    data["experimnet"] = {}
    with pytest.raises(UserError, match="experimnet"):
        AppConfig.from_dict(data)


def test_all_keys_cover_every_section_field():
    keys = set(all_keys())
    for section, fields in AppConfig().to_dict().items():
        for field in fields:
            assert f"{section}.{field}" in keys
    assert len(keys) == sum(len(fields) for fields in AppConfig().to_dict().values())


def test_benchmark_and_generation_share_one_sampling_definition():
    import dataclasses

    from components.core.config import BenchmarkConfig, GenerationConfig, SamplingConfig, field_help

    shared = [f.name for f in dataclasses.fields(SamplingConfig)]
    assert shared == ["max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "seed"]
    for name in shared:  # same help under both sections, own defaults where the benchmark wants them
        assert field_help("benchmark", name) == field_help("generation", name)
    assert (BenchmarkConfig().max_new_tokens, GenerationConfig().max_new_tokens) == (64, 32)
    assert BenchmarkConfig(temperature=0.5).sampling() == dict(max_new_tokens=64, do_sample=False, temperature=0.5,
                                                               top_p=0.9, top_k=0, seed=0)
    for section in ("generation", "benchmark"):  # one set of checks, each naming its own section
        with pytest.raises(UserError, match=rf"invalid value for {section}\.top_k: -1"):
            build_config([f"{section}.top_k=-1"])

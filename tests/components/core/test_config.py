"""Typed config: defaults, value parsing and checks, dict round trips (presets: test_presets.py; overrides:
test_overrides.py; the command line itself: tests/pipelines/test_cli.py)."""
from __future__ import annotations

import pytest

from components.core.config import AppConfig
from components.core.config_help import all_keys
from components.core.errors import UserError
from components.core.overrides import build_config, changed_fields


def test_defaults_build_and_are_valid():
    cfg = build_config([])
    assert cfg == AppConfig()
    assert cfg.experiment.mode == "no_context"
    assert cfg.experiment.max_samples == 0
    assert cfg.model.name == ""  # follows model.path (test_presets.py: model_label)
    assert cfg.generation.stop_strings == ["\n"]
    assert changed_fields(cfg) == {}


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

    from components.core.config import BenchmarkConfig, GenerationConfig, SamplingConfig
    from components.core.config_help import field_help

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


def test_a_field_with_choices_lists_them_in_its_help():
    """The help is what `slm config` prints and the templates' parameter descriptions show: a choice field
    says what it accepts, a list field that each item must be one of them, a registry's choices are read live."""
    from components.backends.registry import backend_choices
    from components.core.config import MODES
    from components.core.config_help import field_choices, field_help

    assert field_help("experiment", "mode").endswith(f"(one of: {', '.join(MODES)})")
    assert field_help("experiment", "modes").endswith(f"(each one of: {', '.join(MODES)})")
    assert field_choices("generation", "backend") == backend_choices()
    assert field_help("generation", "backend").endswith(f"(one of: {', '.join(backend_choices())})")
    assert field_choices("experiment", "max_samples") == () and "one of" not in field_help("experiment", "max_samples")
    for key in all_keys():  # no field is left undocumented
        assert field_help(*key.split(".")), key


def test_model_max_input_tokens_is_gone():
    """It was documented as "not read by any stage yet": a dead knob on every template."""
    with pytest.raises(UserError, match="model.max_input_tokens"):
        build_config(["model.max_input_tokens=512"])

"""The preset tables chosen as `group=name`: each builds, sets what it lists and records its name."""
from __future__ import annotations

import pytest

from components.core.overrides import build_config
from components.core.presets import GROUPS, dataset_label, model_label


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


def test_the_defaults_are_the_default_presets():
    """The default model and dataset are presets by those names: choosing them explicitly changes nothing."""
    from components.core.config import AppConfig

    default = AppConfig()
    label, data = model_label(default.model), dataset_label(default.dataset)
    assert label in GROUPS["model"][0] and data in GROUPS["dataset"][0]
    assert build_config([f"model={label}"]) == build_config([f"model.name={label}"])  # only the name is set
    assert build_config([f"dataset={data}"]) == build_config([f"dataset.name={data}"])


@pytest.mark.parametrize("overrides, label", [
    ([], "smollm2_135m_gguf"),
    (["model.path=Qwen/Qwen3-0.6B"], "qwen_0.6b"),  # a preset's model: the preset's name
    (["model.path=Qwen/Qwen3-8B", "model.load_in_4bit=true"], "qwen_8b_4bit"),
    (["model.path=HuggingFaceTB/SmolLM2-360M-Instruct"], "smollm2_360m"),
    (["model.path=org/Some-Model-1B"], "Some-Model-1B"),  # no preset: the hub id's model
    (["model.path=/models/my-ckpt/"], "my-ckpt"),  # a folder: its name
    (["model.gguf_file=Other.Q8_0.gguf"], "Other.Q8_0"),  # another packaged GGUF: its stem
])
def test_the_model_label_follows_model_path(overrides, label):
    assert model_label(build_config(overrides).model) == label


def test_mode_and_retriever_groups_offer_every_choice_under_its_own_name():
    from components.core.config import MODES, RETRIEVER_KINDS

    for mode in MODES:
        assert build_config([f"experiment_mode={mode}"]).experiment.mode == mode
    assert set(GROUPS["retriever"][0]) == set(RETRIEVER_KINDS)
    for kind in RETRIEVER_KINDS:
        assert build_config([f"retriever={kind}"]).retriever.kind == kind


def test_model_presets_name_one_weights_source_each():
    """A hub model preset clears the packaged-GGUF fields, so the embedded GGUF never shadows it."""
    table, _ = GROUPS["model"]
    for name, values in table.items():
        cfg = build_config([f"model={name}"]).model
        assert bool(cfg.path) != bool(cfg.gguf_package), name  # exactly one of hub/path or packaged GGUF
        assert bool(cfg.gguf_package) == bool(cfg.gguf_file), name
    assert build_config(["model=qwen_8b_4bit"]).model.load_in_4bit is True
    assert build_config(["model=qwen_8b"]).model.load_in_4bit is False


@pytest.mark.parametrize("path, label", [
    ("builtin:demo", "demo"), ("data/nq/NQ-open.dev.merged.jsonl", "local_nq"),  # a preset's path: its name
    ("s3://datasets/nq/NQ-open.dev.jsonl.gz", "NQ-open.dev"), ("/data/simple_qa.csv", "simple_qa"),
    ("hf:nq_open", "nq_open"), ("clearml://slm/nq-open@1.0", "nq-open")])
def test_the_dataset_label_follows_dataset_path(path, label):
    assert dataset_label(build_config([f"dataset.path={path}"]).dataset) == label

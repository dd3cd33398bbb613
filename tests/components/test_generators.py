"""`generation.backend`: which backend `auto` picks, the one-line errors when a backend cannot run what
was asked, and the pieces of the llama.cpp and vLLM backends that need no model (sampling, the
conversion cache, SamplingParams). Real answers from both CPU backends: tests/e2e/test_backends_real.py."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from components import generators, llama_cpp_generator
from components.config import GenerationConfig, ModelConfig
from components.errors import UserError
from components.overrides import build_config
from components.vllm_generator import sampling_params

PLAIN = ModelConfig(name="plain", path="some-org/some-model", gguf_package="", gguf_file="")


@pytest.fixture
def installed(monkeypatch):
    """Which optional backends look installed, and whether a CUDA device does."""
    state = {"vllm": False, "llama_cpp": False, "cuda": False}
    monkeypatch.setattr(generators, "_installed", lambda module: state[module])
    monkeypatch.setattr(generators, "resolve_device",
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
    with pytest.raises(UserError, match=r"generation\.backend: 'llamacpp'.*hf, llama_cpp, vllm, auto"):
        build_config(["generation.backend=llamacpp"])
    with pytest.raises(UserError, match=r"generation\.llama_cpp_weights: 'q4'.*as_is, q8_0, f32"):
        build_config(["generation.llama_cpp_weights=q4"])


def test_vllm_without_cuda_is_one_line_naming_the_setting(installed):
    with pytest.raises(UserError) as e:
        generators.load_generator(PLAIN, GenerationConfig(backend="vllm"))
    assert "generation.backend=vllm needs a CUDA GPU" in str(e.value) and "\n" not in str(e.value)


def test_llama_cpp_refuses_a_plain_checkpoint_and_an_adapter(installed):
    with pytest.raises(UserError, match="runs GGUF files, and model.path names a plain checkpoint"):
        generators.load_generator(PLAIN, GenerationConfig(backend="llama_cpp"))
    with pytest.raises(UserError, match="generation.backend=llama_cpp does not apply model.adapter"):
        generators.load_generator(ModelConfig(adapter="x"), GenerationConfig(backend="llama_cpp"))


def test_llama_cpp_missing_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    with pytest.raises(UserError, match=r"needs llama-cpp-python: pip install -e '\.\[cpu\]'"):
        generators.load_generator(ModelConfig(), GenerationConfig(backend="llama_cpp"))


def test_greedy_sampling_is_the_argmax():
    logits = np.array([0.1, 3.0, 2.9, -1.0], dtype=np.float32)
    rng = np.random.default_rng(0)
    assert llama_cpp_generator.sample_token(logits, GenerationConfig(), rng) == 1


def test_sampling_keeps_to_top_k_and_top_p():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rng = np.random.default_rng(0)
    top2 = GenerationConfig(do_sample=True, top_k=2)
    assert {llama_cpp_generator.sample_token(logits, top2, rng) for _ in range(300)} == {0, 1}
    # top_p=0.7: the smallest set with mass >= 0.7 is {0, 1}
    nucleus = GenerationConfig(do_sample=True, top_p=0.7)
    assert {llama_cpp_generator.sample_token(logits, nucleus, rng) for _ in range(300)} == {0, 1}
    draws = [llama_cpp_generator.sample_token(logits, GenerationConfig(do_sample=True), rng) for _ in range(4000)]
    assert abs(draws.count(0) / len(draws) - 0.5) < 0.04, "temperature 1 keeps the model's distribution"


def test_threads_follow_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert llama_cpp_generator.cpu_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert llama_cpp_generator.cpu_threads() >= 1


def test_as_is_weights_are_the_file_itself(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert llama_cpp_generator.converted_gguf(gguf, "as_is", tmp_path / "cache") == gguf
    assert not (tmp_path / "cache").exists()


def test_vllm_sampling_params_mean_what_the_config_means():
    greedy = sampling_params(GenerationConfig(max_new_tokens=7, stop_strings=["\n", ""]), seed=3)
    assert greedy == dict(n=1, max_tokens=7, temperature=0.0, top_p=1.0, top_k=-1, seed=3, stop=["\n"],
                          skip_special_tokens=True)
    sampled = sampling_params(GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=5), seed=0)
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (0.7, 0.9, 5)
    assert sampling_params(GenerationConfig(do_sample=True), seed=0)["top_k"] == -1, "top_k=0 means off"


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


"""The vLLM backend without vLLM: a stand-in `vllm` module records what the backend asks of the engine, so
these run everywhere and never reach the hub (the real engine on CPU: tests/e2e/test_vllm_cpu.py; on CUDA:
tests/e2e/test_vllm_gpu.py)."""
from __future__ import annotations

import os
import sys
import types

import pytest

from components.backends import base, vllm as backend
from components.backends.vllm import sampling_params
from components.core.config import GenerationConfig, ModelConfig
from components.core.errors import UserError

LOCAL = ModelConfig(name="local", path="/nowhere/checkpoint", gguf_package="", gguf_file="")


def test_vllm_sampling_params_mean_what_the_config_means():
    greedy = sampling_params(GenerationConfig(max_new_tokens=7, stop_strings=["\n", ""]), seed=3)
    assert greedy == dict(n=1, max_tokens=7, temperature=0.0, top_p=1.0, top_k=-1, seed=3, stop=["\n"],
                          skip_special_tokens=True)
    sampled = sampling_params(GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=5), seed=0)
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (0.7, 0.9, 5)
    assert sampling_params(GenerationConfig(do_sample=True), seed=0)["top_k"] == -1, "top_k=0 means off"


@pytest.fixture
def engine(monkeypatch):
    """A stand-in vLLM whose platform is `state["platform"]`, on a machine whose device is `state["device"]`;
    `state["engines"]` collects the keywords of every engine started."""
    state = {"platform": "cpu", "device": "cpu", "engines": []}

    class LLM:
        def __init__(self, **kwargs):
            state["engines"].append({**kwargs, "env": {k: os.environ.get(k) for k in backend.CPU_ENV}})

    module = types.ModuleType("vllm")
    module.__version__ = "0.30.0"
    module.LLM = LLM
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(device_type=state["platform"])
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    monkeypatch.setattr(backend, "resolve_device", lambda cfg: state["device"])
    monkeypatch.setattr(backend, "resolve_weights", lambda cfg: cfg.path)
    monkeypatch.setattr(backend, "load_tokenizer", lambda source, cfg: "tokenizer")
    monkeypatch.setattr(backend, "weights_bytes", lambda source, dtype: {"float32": 400, "bfloat16": 200}[dtype])
    for key in backend.CPU_ENV:
        monkeypatch.delenv(key, raising=False)

    def set_platform(name):
        platforms.current_platform = types.SimpleNamespace(device_type=name)

    state["set_platform"] = set_platform
    return state


def test_on_cpu_the_cpu_build_runs_float32_eager_with_an_explicit_kv_cache_on_every_core(engine):
    generator = base.load_generator(LOCAL, GenerationConfig(backend="vllm"))
    (kwargs,) = engine["engines"]
    assert kwargs["model"] == kwargs["tokenizer"] == "/nowhere/checkpoint"
    assert kwargs["dtype"] == "float32", "the project's rule, not vLLM's auto (bf16 on CPU too)"
    assert kwargs["kv_cache_memory_bytes"] == 1024 ** 3 and "gpu_memory_utilization" not in kwargs
    assert kwargs["enforce_eager"] is True and kwargs["enable_prefix_caching"] is True
    assert kwargs["env"] == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    assert generator.backend_version == "vllm 0.30.0" and generator.model_size_bytes == 400


def test_a_users_thread_setting_and_memory_settings_win(engine, monkeypatch):
    monkeypatch.setenv("VLLM_CPU_NUM_OF_RESERVED_CPU", "1")
    base.load_generator(ModelConfig(**{**LOCAL.__dict__, "dtype": "bfloat16"}),
                        GenerationConfig(backend="vllm", vllm_kv_cache_gb=2.5))
    (kwargs,) = engine["engines"]
    assert kwargs["env"] == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}
    assert kwargs["kv_cache_memory_bytes"] == int(2.5 * 1024 ** 3) and kwargs["dtype"] == "bfloat16"


def test_on_cuda_vllm_keeps_its_compiled_graphs_and_sizes_the_cache_from_the_gpu_share(engine):
    engine.update(device="cuda")
    engine["set_platform"]("cuda")
    generator = base.load_generator(LOCAL, GenerationConfig(backend="vllm", vllm_gpu_memory_utilization=0.5))
    (kwargs,) = engine["engines"]
    assert kwargs["dtype"] == "bfloat16" and kwargs["gpu_memory_utilization"] == 0.5
    assert "kv_cache_memory_bytes" not in kwargs and "enforce_eager" not in kwargs
    assert kwargs["env"] == {"VLLM_CPU_NUM_OF_RESERVED_CPU": None}, "CPU settings stay off a GPU run"
    assert generator.model_size_bytes == 200, "the weights at the dtype vLLM runs them in"


@pytest.mark.parametrize("platform, device", [("cuda", "cpu"), ("cpu", "cuda"), ("", "cpu")])
def test_a_vllm_build_for_another_device_is_one_line_naming_the_setting(engine, platform, device):
    engine.update(device=device)
    engine["set_platform"](platform)
    with pytest.raises(UserError) as e:
        base.load_generator(LOCAL, GenerationConfig(backend="vllm"))
    message = str(e.value)
    assert message.startswith("generation.backend=vllm: the installed vLLM 0.30.0 runs on ") and "\n" not in message
    assert f"model.device resolves to {device}" in message
    assert engine["engines"] == [], "no engine is started (and nothing fetched) for a run that cannot work"


def test_vllm_missing_names_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm now raises ImportError
    with pytest.raises(UserError, match=r"needs vLLM: .*'\.\[vllm\]' on CUDA machines, `make vllm-cpu`"):
        base.load_generator(LOCAL, GenerationConfig(backend="vllm"))


def test_weights_bytes_counts_every_tensor_at_the_run_dtype(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5, dtype=torch.float16)}, str(tmp_path / "model.safetensors"))
    assert backend.weights_bytes(str(tmp_path), "float32") == 17 * 4
    assert backend.weights_bytes(str(tmp_path), "bfloat16") == 17 * 2

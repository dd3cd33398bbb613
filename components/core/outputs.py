"""Names and folders every stage shares, written once: the results file whose presence marks a finished
step, the folders one stage writes and another reads (the index, the adapter), the cache folder, and the
clearing of final outputs before a rerun (so a failed rerun never leaves a stale result behind)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

RESULTS_FILE = "results.json"  # every stage writes it last: its presence means the step completed
MB = 1024 * 1024
PREDICTIONS_FILE = "predictions.jsonl"  # an eval's per-question rows
MEMORY_FILE = "memory_usage.json"  # an eval's detailed_log and peak_usage
TASK_FILE = "clearml_task.json"  # the ClearML task that wrote a step folder (id, web UI url), on a server

INDEX_SUBDIR = "index"  # the index stage's retriever files, read by retriever_context evals
INDEX_RESULTS_FILE = "index_results.json"
ADAPTER_DIR = "adapter"  # the finetune stage's peft adapter, read by the benchmark
CHECKPOINT_DIR = "checkpoints"  # Trainer checkpoints: only for resuming on the machine that ran
STEP_MANIFEST = ".step.json"  # written last into a finished local step's folder (its cache key + results)


def cache_root() -> Path:
    """`$SLM_CACHE_DIR`, else ~/.cache/slm-experiments: converted models, downloaded datasets, the
    offline ClearML config."""
    return Path(os.environ.get("SLM_CACHE_DIR") or Path.home() / ".cache" / "slm-experiments")


def clear_outputs(output_dir: Path, names: Iterable[str]) -> None:
    """Remove a rerun's final files and folders before it starts."""
    for name in names:
        path = Path(output_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

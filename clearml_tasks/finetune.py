"""Finetune template: a LoRA or QLoRA adapter trained on the ingest stage's training split;
per-step Trainer logs become scalars, the adapter, trainer state, results and plots artifacts.

Run: python clearml_tasks/finetune.py finetune.max_steps=200   (or `slm finetune`)

Scalars go through the stage's tracker from a TrainerCallback, not through the Trainer's own ClearML
integration (`report_to=["clearml"]`): the tracker already owns the task, the integration would report
every scalar a second time, may upload checkpoints (CLEARML_LOG_MODEL), and on a cloned, edited template
it does not apply the edited hyperparameters (transformers #21822). The Trainer's arguments come from the
connected `finetune` section instead, so an edited clone trains with the edited values, and the same
callback works offline and with --no-clearml.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from transformers import TrainerCallback

from components.core.config import AppConfig
from components.core.console import progress_bar
from components.stages.finetune import FINGERPRINT_FILE, TRAINER_STATE_FILE, run_finetune
from components.core.outputs import ADAPTER_DIR, CHECKPOINT_DIR, RESULTS_FILE
from clearml_tasks._task import main
from clearml_tasks._tracker import NullTracker

STAGE = "finetune"


class TrackerScalars(TrainerCallback):
    """Every numeric value of a Trainer log as a scalar at its global step: one graph per quantity
    (`loss`, `learning_rate`, `grad_norm`, `epoch`, `tokens_per_second`, ...), series `train` or `eval`,
    so train and eval loss share a graph. The end-of-training summary goes to the results instead."""

    def __init__(self, tracker: NullTracker):
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_loss" in logs:
            return
        # An eval log repeats the train log's epoch and token count: only its eval_ values are new.
        prefix, series = ("eval_", "eval") if any(k.startswith("eval_") for k in logs) else ("", "train")
        for key, value in logs.items():
            if key.startswith(prefix) and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.tracker.report_scalar(key[len(prefix):], series, float(value), state.global_step)


CHECKPOINT_ARTIFACT = "checkpoint"


class KeepCheckpoint(TrainerCallback):
    """After each save, the newest checkpoint (with the fingerprint of what it was trained on) is kept
    where the next attempt of this task finds it if this agent dies: on an agent, the task's artifact
    `checkpoint`; run_finetune resumes from it when the fingerprint matches."""

    def __init__(self, tracker: NullTracker, checkpoint_dir: Path):
        self.tracker, self.checkpoint_dir = tracker, checkpoint_dir

    def on_save(self, args, state, control, **kwargs):
        newest = self.checkpoint_dir / f"checkpoint-{state.global_step}"
        if not newest.is_dir():
            return
        with tempfile.TemporaryDirectory(prefix="slm-checkpoint-") as tmp:
            kept = Path(tmp) / CHECKPOINT_DIR  # the folder name the next attempt restores into
            kept.mkdir()
            shutil.copy2(self.checkpoint_dir / FINGERPRINT_FILE, kept / FINGERPRINT_FILE)
            shutil.copytree(newest, kept / newest.name)
            self.tracker.keep_progress(CHECKPOINT_ARTIFACT, kept, {"global_step": state.global_step})


def body(cfg: AppConfig, inputs: dict, output_dir: Path, tracker: NullTracker) -> dict:
    checkpoint_dir = output_dir / CHECKPOINT_DIR
    if tracker.restore_progress(CHECKPOINT_ARTIFACT, checkpoint_dir):
        print("found the checkpoint an earlier attempt of this task kept; training resumes from it", flush=True)
    results = run_finetune(cfg, inputs["ingest"], output_dir,
                           callbacks=[TrackerScalars(tracker), KeepCheckpoint(tracker, checkpoint_dir)],
                           progress=progress_bar)
    if results["resumed_from_step"]:
        print(f"resumed: training went on from step {results['resumed_from_step']}", flush=True)
    tracker.report_results({k: v for k, v in results.items() if k != "meta"}, title="Final Metrics")
    # The loss and learning-rate curves are SCALARS already (TrackerScalars); the PNGs stay files.
    for plot in map(Path, results["plots"]):
        tracker.upload_artifact(plot.stem, plot)
    for name in (TRAINER_STATE_FILE, RESULTS_FILE):
        tracker.upload_artifact(Path(name).stem, output_dir / name)
    ft = cfg.finetune
    results["model_id"] = tracker.register_model(
        name=f"{cfg.model.name} {ft.method} adapter", folder=output_dir / ADAPTER_DIR,
        config={"base_model": cfg.model.name, "base_model_path": cfg.model.path or cfg.model.gguf_file,
                "method": ft.method, "r": ft.r, "alpha": ft.alpha, "dropout": ft.dropout,
                "target_modules": ft.target_modules, "prompt_mode": ft.mode, "train_data": cfg.dataset.path,
                "train_data_name": cfg.dataset.name},
        tags=["finetune", ft.method, cfg.model.name],
        comment=f"peft {ft.method} adapter (r={ft.r}, alpha={ft.alpha}) for {cfg.model.name}, trained on "
                f"{cfg.dataset.name}")
    results["model_dir"] = str(output_dir / ADAPTER_DIR)  # what `${finetune.models.output.-1.id}` is locally
    tracker.drop_progress(CHECKPOINT_ARTIFACT)
    return results


if __name__ == "__main__":
    sys.exit(main(STAGE, body))

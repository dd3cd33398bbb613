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

import sys
from pathlib import Path

from transformers import TrainerCallback

from components.core.config import AppConfig
from components.core.console import progress_bar
from components.stages.finetune import TRAINER_STATE_FILE, run_finetune
from components.core.outputs import ADAPTER_DIR, RESULTS_FILE
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


def body(cfg: AppConfig, inputs: dict, output_dir: Path, tracker: NullTracker) -> dict:
    results = run_finetune(cfg, inputs["ingest"], output_dir, callbacks=[TrackerScalars(tracker)],
                           progress=progress_bar)
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
    return results


if __name__ == "__main__":
    sys.exit(main(STAGE, body))

"""The finetune console: one bar over the optimizer steps, and each Trainer log as a line a person reads
(`step 5/12  epoch 1.18  loss 4.7310  lr 2.00e-04  grad_norm 14.47  tokens/s 612  peak RAM MB 1,995`)
instead of the Trainer's own bar and raw log dicts (`{'loss': '4.73', 'grad_norm': '14.47', ...}`)."""
from __future__ import annotations

from typing import Callable

from transformers import TrainerCallback

# (log key, label, format), in the order a line shows them; a key a log lacks is left out
FIELDS = (("epoch", "epoch", "{:.2f}"), ("loss", "loss", "{:.4f}"), ("eval_loss", "eval_loss", "{:.4f}"),
          ("learning_rate", "lr", "{:.2e}"), ("grad_norm", "grad_norm", "{:.2f}"),
          ("tokens_per_second", "tokens/s", "{:,.0f}"), ("cpu_ram_peak_mb", "peak RAM MB", "{:,.0f}"),
          ("gpu_ram_peak_mb", "peak GPU MB", "{:,.0f}"))


def log_line(step: int, max_steps: int, logs: dict) -> str:
    """One Trainer log as one line; the end-of-training summary as its own sentence."""
    if "train_runtime" in logs:
        loss = f", mean loss {logs['train_loss']:.4f}" if isinstance(logs.get("train_loss"), float) else ""
        return f"trained {step} steps in {logs['train_runtime']:.1f} s{loss}"
    shown = [f"{label} {fmt.format(logs[key]) if logs[key] else 0}" for key, label, fmt in FIELDS
             if isinstance(logs.get(key), (int, float)) and not (key == "epoch" and "eval_loss" in logs)]
    return "  ".join([f"step {step}/{max_steps}", *shown]) if shown else ""


class TrainingProgress(TrainerCallback):
    """`progress(total, desc, unit=...)` makes the bar (components.core.console.progress_bar). Goes after
    the callback that adds tokens/s and peak memory to the logs."""

    def __init__(self, progress: Callable):
        self.progress = progress
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = self.progress(state.max_steps, "finetune", unit="step")
            self.bar.update(state.global_step)  # a resumed run starts at its checkpoint's step

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        line = log_line(state.global_step, state.max_steps, logs or {})
        if line and self.bar is not None:
            self.bar.write(line)  # above the bar in a terminal, a line of its own in a log

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

"""The finetune console: Trainer logs as readable lines under one bar over the steps."""
from __future__ import annotations

from types import SimpleNamespace

from components.stages.training_log import TrainingProgress, log_line

TRAIN_LOG = {"loss": 4.7312, "grad_norm": 14.4712, "learning_rate": 0.0002, "epoch": 0.2, "num_input_tokens_seen": 430,
             "tokens_per_second": 612.43, "samples_per_second": 0.354, "cpu_ram_peak_mb": 2297.2}


def test_a_train_log_is_one_readable_line():
    assert log_line(5, 12, TRAIN_LOG) == ("step 5/12  epoch 0.20  loss 4.7312  lr 2.00e-04  grad_norm 14.47  "
                                          "tokens/s 612  peak RAM MB 2,297")


def test_eval_and_end_of_training_logs():
    assert log_line(10, 12, {"eval_loss": 3.21401, "eval_runtime": 0.8, "epoch": 2.0}) == "step 10/12  eval_loss 3.2140"
    assert log_line(12, 12, {"train_runtime": 45.31, "train_loss": 3.9021, "epoch": 2.4}) == \
        "trained 12 steps in 45.3 s, mean loss 3.9021"
    assert log_line(3, 12, {"total_flos": 1e12}) == ""  # nothing a person reads: no line
    assert log_line(1, 12, {"loss": 4.73, "learning_rate": 0.0}) == "step 1/12  loss 4.7300  lr 0"  # warmup's first


class FakeBar:
    def __init__(self, total, desc, unit):
        self.total, self.desc, self.unit, self.n, self.lines, self.closed = total, desc, unit, 0, [], False

    def update(self, n):
        self.n += n

    def write(self, line):
        self.lines.append(line)

    def close(self):
        self.closed = True


def test_the_bar_follows_the_steps_from_a_resumed_checkpoint():
    bars = []
    callback = TrainingProgress(lambda total, desc, unit: bars.append(FakeBar(total, desc, unit)) or bars[-1])
    state = SimpleNamespace(is_world_process_zero=True, max_steps=12, global_step=4)  # resumed at step 4
    callback.on_train_begin(None, state, None)
    (bar,) = bars
    assert (bar.total, bar.desc, bar.unit, bar.n) == (12, "finetune", "step", 4)
    state.global_step = 5
    callback.on_step_end(None, state, None)
    callback.on_log(None, state, None, logs=dict(TRAIN_LOG))
    assert bar.n == 5 and bar.lines == [log_line(5, 12, TRAIN_LOG)]
    callback.on_train_end(None, state, None)
    assert bar.closed and callback.bar is None

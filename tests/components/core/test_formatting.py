"""The `slm run` summary: numbers a person reads, each step with its own metrics, no wall of `-`."""
from __future__ import annotations

from components.core.formatting import format_summary

METRICS = ["step", "status", "seconds", "num_examples", "token_recall", "token_f1", "gold_hit@5",
           "train_loss_first", "train_loss_last", "cpu_ram_used_mb"]
ROWS = [
    {"step": "ingest", "status": "ran", "seconds": 1.0, "num_questions": 42},
    {"step": "index", "status": "ran", "seconds": 0.6, "gold_hit@5": 1.0, "leaderboard": "x"},
    {"step": "eval_no_context", "status": "ran", "seconds": 124.4, "num_examples": 42, "token_recall": 0.76190476,
     "token_f1": 0.2073, "cpu_ram_used_mb": 1317.8},
    {"step": "eval_oracle_context", "status": "cached", "seconds": 0.0, "num_examples": 8, "token_recall": 0.9,
     "token_f1": 0.21, "cpu_ram_used_mb": 1701.04},
    {"step": "finetune", "status": "ran", "seconds": 61.25, "train_loss_first": 4.73, "train_loss_last": 2.1,
     "token_f1": None},
]


def _lines():
    return format_summary(ROWS, METRICS).splitlines()


def test_each_step_shows_its_own_metrics_as_readable_numbers():
    lines = _lines()
    assert lines[0].split() == ["step", "status", "seconds", "results"]
    by_step = {line.split()[0]: line for line in lines[1:]}
    assert by_step["ingest"].split() == ["ingest", "ran", "1.0"]  # nothing of the list: nothing shown
    assert by_step["index"].split() == ["index", "ran", "0.6", "gold_hit@5", "1.000"]
    assert by_step["eval_no_context"].split() == ["eval_no_context", "ran", "124.4", "num_examples", "42",
                                                  "token_recall", "0.762", "token_f1", "0.207",
                                                  "cpu_ram_used_mb", "1,318"]
    assert by_step["finetune"].split()[2:] == ["61.2", "train_loss_first", "4.730", "train_loss_last", "2.100"]
    assert " - " not in "\n".join(lines) and "1.0000" not in "\n".join(lines)


def test_steps_of_one_stage_line_up():
    lines = _lines()
    evals = [line for line in lines if line.startswith("eval_")]
    assert len({line.index("token_recall") for line in evals}) == 1
    assert len({line.index("cpu_ram_used_mb") for line in evals}) == 1
    seconds_end = {line.index(word) + len(word) for line in lines[1:]
                   for word in [line.split()[2]]}
    assert len(seconds_end) == 1  # right-aligned seconds


def test_tiny_and_large_values():
    table = format_summary([{"step": "s", "status": "ran", "seconds": 3600.04, "learning_rate": 4.7e-05,
                             "tokens": 123456}], ["learning_rate", "tokens"])
    assert table.splitlines()[1].split() == ["s", "ran", "3,600.0", "learning_rate", "4.70e-05", "tokens", "123,456"]

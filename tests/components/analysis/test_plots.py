"""Plots: the smoothing on a hand case, and every plot a complete PNG with no temporary file left."""
from __future__ import annotations

import pytest

from components.analysis import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LOG_HISTORY = [{"loss": 3.0, "learning_rate": 1e-4, "grad_norm": 2.0, "epoch": 0.5, "step": 1},
               {"loss": 2.0, "learning_rate": 2e-4, "grad_norm": 1.5, "epoch": 1.0, "step": 2},
               {"eval_loss": 2.5, "epoch": 1.0, "step": 2},
               {"loss": 1.0, "learning_rate": 1e-4, "grad_norm": 1.0, "epoch": 1.5, "step": 3},
               {"train_runtime": 4.0, "train_loss": 2.0, "epoch": 1.5, "step": 3}]


def test_ema_is_debiased():
    # weight 0.5: running 1.5 / (1 - 0.5) = 3; then (0.75 + 1.0) / 0.75 = 2.333...
    assert plots.ema([3.0, 2.0], weight=0.5) == pytest.approx([3.0, 7 / 3])
    assert plots.ema([5.0, 5.0, 5.0], weight=0.9) == pytest.approx([5.0, 5.0, 5.0])
    assert plots.ema([]) == []


def _assert_png(path, folder):
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_training_plots(tmp_path):
    _assert_png(plots.training_loss(LOG_HISTORY, tmp_path / "loss.png"), tmp_path)
    _assert_png(plots.learning_rate(LOG_HISTORY, tmp_path / "lr.png"), tmp_path)


def test_comparison_plots(tmp_path):
    summaries = {"base": {"token_f1": {"mean": 0.2, "ci_low": 0.1, "ci_high": 0.3},
                          "key_info_numbers": {"mean": None, "ci_low": None, "ci_high": None}},
                 "tuned": {"token_f1": {"mean": 0.5, "ci_low": None, "ci_high": None},
                           "key_info_numbers": {"mean": None, "ci_low": None, "ci_high": None}}}
    _assert_png(plots.metric_bars(summaries, ["token_f1", "key_info_numbers"], tmp_path / "bars.png"), tmp_path)
    hist = plots.histograms({"base": [0.0, 0.5, 1.0], "tuned": [1.0, 1.0]}, tmp_path / "hist.png",
                            "Token F1", "token F1", bins=[0, 0.5, 1.0])
    _assert_png(hist, tmp_path)
    _assert_png(plots.histograms({"base": [], "tuned": []}, tmp_path / "empty.png", "t", "x"), tmp_path)

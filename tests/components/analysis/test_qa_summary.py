"""An eval's summary from its prediction rows alone: metric means, bootstrap CIs beside the CI metrics,
and the context figures of the context modes."""
from __future__ import annotations

import pytest

from components.analysis.metrics import QA_METRICS, score_prediction
from components.analysis.qa_summary import CI_METRICS, summarize
from components.analysis.stats import mean_ci


def row(prediction: str, answers: list[str], context_ids=(), has_answer=False, hit_max=False) -> dict:
    return {**score_prediction(prediction, answers), "context_ids": list(context_ids),
            "context_has_answer": has_answer, "hit_max_new_tokens": hit_max}


ROWS = [row("Paris", ["Paris"], ["p1"], True), row("the city of Rome", ["Rome"], ["p2", "p3"], True),
        row("no idea", ["Tokyo"], [], False, hit_max=True), row("Madrid Spain", ["Madrid"], ["p4"], False)]


def test_closed_book_summary_is_the_mean_of_every_metric():
    summary = summarize(ROWS, "no_context")
    for name in QA_METRICS:
        assert summary[name] == pytest.approx(sum(r[name] for r in ROWS) / len(ROWS)), name
    assert summary["exact_match"] == 0.25 and summary["substring_match"] == 0.75
    assert summary["num_examples"] == 4 and summary["mode"] == "no_context"
    assert summary["share_hit_max_new_tokens"] == 0.25
    assert "context_has_answer_rate" not in summary and "num_without_context" not in summary
    assert not any(key.endswith(("_ci_low", "_ci_high")) for key in summary)  # no bootstrap asked


def test_context_modes_add_how_often_the_context_held_the_answer():
    for mode in ("oracle_context", "retriever_context"):
        summary = summarize(ROWS, mode)
        assert summary["context_has_answer_rate"] == 0.5 and summary["num_without_context"] == 1
        assert summary["mode"] == mode


def test_bootstrap_ci_beside_each_ci_metric():
    summary = summarize(ROWS, "no_context", bootstrap_samples=200)
    for name in CI_METRICS:
        low, high = mean_ci([r[name] for r in ROWS], 200)
        assert (summary[f"{name}_ci_low"], summary[f"{name}_ci_high"]) == (round(low, 6), round(high, 6))
        assert summary[f"{name}_ci_low"] <= summary[name] <= summary[f"{name}_ci_high"]
    assert "legacy_token_recall_ci_low" not in summary  # only the CI metrics get one
    assert summarize(ROWS, "no_context", 200) == summary  # a fixed seed: the same rows, the same CI

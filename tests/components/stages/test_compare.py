"""Two runs diffed on hand-made evals: cells matched by system and mode (by mode alone when each run is one
system that the differing setting names), what only one run has, and a diff with nothing shared."""
from __future__ import annotations

import pytest

from components.analysis.compare import compare_runs
from components.analysis.evals import EvalEntry
from components.core.errors import UserError
from components.stages.compare import write_compare


def entry(name: str, model: str, mode: str, scores: list[float], top_k: int = 3) -> EvalEntry:
    rows = [{"id": f"q{i}", "question": f"question {i}?", "answers": ["x"], "prediction": f"{model} {s}",
             "token_recall": s} for i, s in enumerate(scores)]
    config = {"model": {"name": model}, "experiment": {"name": "x"}}
    return EvalEntry(name, {"mode": mode, "model": model, "dataset": "demo", "meta": {"config": config}}, rows,
                     {"model.name": model})


def test_runs_of_different_models_are_matched_by_mode():
    a = [entry("nc", "small", "no_context", [1, 0, 0, 1]), entry("rag", "small", "retriever_context", [1, 1, 0, 0])]
    b = [entry("nc", "big", "no_context", [1, 1, 1, 0]), entry("or", "big", "oracle_context", [1, 1, 1, 1])]
    diff = compare_runs(a, b, samples=100)
    assert diff["config_difference"] == {"model.name": {"A": ["small"], "B": ["big"]}}
    [cell] = diff["cells"]
    assert cell["label"] == "small @ demo / no_context vs big @ demo / no_context"
    assert [q["id"] for q in cell["gained"]] == ["q1", "q2"] and [q["id"] for q in cell["lost"]] == ["q3"]
    assert cell["difference"]["mean"] == 0.25
    assert diff["only_in_a"] == ["small @ demo / retriever_context"]
    assert diff["only_in_b"] == ["big @ demo / oracle_context"]


def test_a_closed_book_eval_matches_across_runs_whatever_retriever_settings_vary():
    def rag(name, top_k, scores):
        e = entry(name, "m", "retriever_context", scores, top_k)
        e.config["retriever.top_k"] = top_k
        return e

    a = [entry("nc", "m", "no_context", [1, 0]), rag("k1", 1, [1, 1]), rag("k3", 3, [0, 1])]
    b = [entry("nc", "m", "no_context", [0, 0]), rag("k3", 3, [1, 1])]
    diff = compare_runs(a, b, samples=20)
    # a's k=3 eval reads what b's only retriever eval reads: the same cell (labelled by each run's own view)
    assert [(c["a_eval"], c["b_eval"]) for c in diff["cells"]] == [("nc", "nc"), ("k3", "k3")]
    assert diff["cells"][1]["label"] == "m @ demo (top_k=3) / retriever_context vs m @ demo / retriever_context"
    assert diff["only_in_a"] == ["m @ demo (top_k=1) / retriever_context"] and diff["only_in_b"] == []


def test_only_the_questions_both_answered_are_compared():
    a = [entry("nc", "m", "no_context", [1, 0, 0, 1])]
    b = [entry("nc", "m", "no_context", [0, 1])]  # the first two questions only
    [cell] = compare_runs(a, b, samples=50)["cells"]
    assert cell["n"] == 2 and cell["a_mean"] == 0.5 and cell["b_mean"] == 0.5 and cell["difference"]["n"] == 2


def test_nothing_shared_is_an_error(tmp_path):
    a = [entry("a1", "m", "no_context", [1]), entry("a2", "n", "no_context", [1])]
    b = [entry("b1", "o", "oracle_context", [1])]
    with pytest.raises(UserError, match="share no cell"):
        write_compare(a, b, tmp_path, samples=10)
    with pytest.raises(UserError, match="B: no finished evals"):
        write_compare(a, [], tmp_path, samples=10)
    assert not list(tmp_path.iterdir())  # nothing written

"""The leaderboard from hand-made evals: systems and their variants, cells with CIs and the best per column,
paired differences over the same questions, and the CSV / JSON / Markdown / HTML it writes."""
from __future__ import annotations

import csv
import io
import json

import pytest

from components.core.errors import UserError
from components.stages.report import EvalEntry, build_leaderboard, to_csv, to_markdown, write_leaderboard
from components.analysis.stats import mean_ci

IDS = [f"q{i}" for i in range(20)]


def entry(name: str, model: str, mode: str, scores: list[float], **config) -> EvalEntry:
    rows = [{"id": q, "token_recall": s, "token_f1": s / 2, "exact_match": float(s == 1.0),
             "substring_match": float(s > 0)} for q, s in zip(IDS, scores)]
    ci = mean_ci(scores, 200)
    results = {"mode": mode, "model": model, "dataset": "demo", "num_examples": len(rows),
               "token_recall": sum(scores) / len(scores), "token_recall_ci_low": ci[0], "token_recall_ci_high": ci[1],
               "model_size_mb": 500.0 if model == "small" else 1500.0, "cpu_ram_used_mb": 1000.0,
               "gpu_ram_peak_mb": 0.0, "seconds_per_question": 0.1 if mode == "no_context" else 0.3}
    return EvalEntry(name, results, rows, {"model.name": model, **config})


@pytest.fixture
def entries() -> list[EvalEntry]:
    closed = [1.0, 0.0] * 10
    return [entry("small_nc", "small", "no_context", closed),
            entry("small_oracle", "small", "oracle_context", [1.0] * 20),
            entry("small_rag_k1", "small", "retriever_context", [1.0, 1.0, 0.0, 1.0] * 5, **{"retriever.top_k": 1}),
            entry("small_rag_k3", "small", "retriever_context", closed, **{"retriever.top_k": 3}),
            entry("big_nc", "big", "no_context", [1.0, 1.0, 1.0, 0.0] * 5)]


def test_systems_are_model_dataset_and_the_settings_their_evals_differ_in(entries):
    board = build_leaderboard(entries, samples=200)
    assert [r["system"] for r in board["rows"]] == ["small @ demo (top_k=1)", "small @ demo (top_k=3)", "big @ demo"]
    small_k1, small_k3, big = board["rows"]
    # the closed-book and oracle evals read no retriever: they serve both variants
    assert small_k1["cells"]["no_context"]["token_recall"]["eval"] == "small_nc"
    assert small_k3["cells"]["oracle_context"]["token_recall"]["eval"] == "small_oracle"
    assert small_k1["cells"]["retriever_context"]["token_recall"]["mean"] == 0.75
    assert set(big["cells"]) == {"no_context"} and big["costs"]["model_size_mb"] == 1500.0
    assert board["best"]["no_context/token_recall"] == 0.75 and board["best"]["retriever_context/token_recall"] == 0.75


def test_paired_differences_use_the_same_questions(entries):
    small_k1 = build_leaderboard(entries, samples=500)["rows"][0]
    oracle = small_k1["differences"]["oracle_context - no_context"]
    assert oracle["mean"] == 0.5 and oracle["n"] == 20
    assert 0 < oracle["ci_low"] <= 0.5 <= oracle["ci_high"]  # the oracle never does worse on a question
    rag = small_k1["differences"]["retriever_context - no_context"]
    assert rag["mean"] == 0.25 and rag["ci_low"] < 0 < 0.25 <= rag["ci_high"]  # gains and losses: not sure


def test_markdown_csv_json_and_html(entries, tmp_path):
    board = build_leaderboard(entries, samples=200)
    md = to_markdown(board)
    assert "| small @ demo (top_k=1) | 0.500 [" in md and "**0.750 [" in md  # best no_context is big's 0.75
    assert "retriever_context - no_context" in md
    table = list(csv.DictReader(io.StringIO(to_csv(board))))
    assert table[0]["retriever_context:token_recall"] == "0.75" and table[2]["variant"] == ""
    assert float(table[0]["no_context:token_recall_ci_low"]) <= 0.5 <= float(table[0]["no_context:token_recall_ci_high"])
    paths = write_leaderboard(board, tmp_path)
    assert json.loads(paths["json"].read_text())["rows"][0]["system"] == "small @ demo (top_k=1)"
    page = paths["html"].read_text()
    assert page.count('src="data:image/png;base64,') == 3 and 'id="leaderboard"' in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    assert page.count('class="best"') >= 3


def test_two_evals_of_one_cell_are_an_error(entries):
    with pytest.raises(UserError, match="two no_context evals of small @ demo"):
        build_leaderboard(entries + [entry("again", "small", "no_context", [0.0] * 20)], samples=50)
    with pytest.raises(UserError, match="no finished evals"):
        build_leaderboard([], samples=50)

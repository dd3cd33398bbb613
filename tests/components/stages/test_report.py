"""The report from hand-made evals: systems and their variants, cells with CIs in every metric and the best
per column, paired differences over the same questions, each eval's own costs, the retrieval-vs-reading
split, and the CSV / JSON / Markdown / HTML it writes (with the drill-down data and the run's metadata)."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest

from components.analysis.drilldown import decode
from components.analysis.evals import EvalEntry
from components.analysis.leaderboard import build_leaderboard, to_csv, to_markdown
from components.analysis.qa_summary import summarize
from components.core.errors import UserError
from components.core.fileio import write_json
from components.stages.report import local_extras, write_report

IDS = [f"q{i}" for i in range(20)]


def entry(name: str, model: str, mode: str, scores: list[float], gold_shown: list[bool] | None = None,
          folder=None, **config) -> EvalEntry:
    """An eval whose token recall per question is `scores` (F1 half of it, EM when 1, substring when > 0);
    a context mode shows two passages, the first gold where `gold_shown` says so (default: all)."""
    gold_shown = gold_shown or [True] * len(scores)
    rows = []
    for q, s, g in zip(IDS, scores, gold_shown):
        context = {} if mode == "no_context" else {
            "context_ids": [f"p{q}", "px"], "context_scores": [2.0, 1.0], "context_titles": [f"T {q}", "Other"],
            "context_is_gold": [g, False], "context_holds_answer": [g, False], "has_gold_passage": True,
            "context_has_answer": g}
        rows.append({"id": q, "question": f"question {q}?", "answers": [f"answer {q}"],
                     "prediction": f"{model} says {s}", "token_recall": s, "token_f1": s / 2,
                     "exact_match": float(s == 1.0), "substring_match": float(s > 0), "legacy_token_recall": s,
                     "context_ids": [], "context_scores": [], "hit_max_new_tokens": False, **context})
    results = {**summarize(rows, mode, 200), "model": model, "dataset": "demo",
               "model_size_mb": 500.0 if model == "small" else 1500.0, "cpu_ram_used_mb": 1000.0 + len(name),
               "cpu_ram_scope": "step", "gpu_ram_peak_mb": 0.0, "duration_seconds": 3.0,
               "seconds_per_question": 0.1 if mode == "no_context" else 0.3,
               "meta": {"date": "2026-12-01T10:00:00+00:00", "git_commit": "abc123def4567890", "versions": {},
                        "config": {"experiment": {"name": "unit", "bootstrap_samples": 200},
                                   "model": {"name": model}}}}
    return EvalEntry(name, results, rows, {"model.name": model, **config}, folder)


@pytest.fixture
def entries() -> list[EvalEntry]:
    closed = [1.0, 0.0] * 10
    return [entry("small_nc", "small", "no_context", closed),
            entry("small_oracle", "small", "oracle_context", [1.0] * 20),
            entry("small_rag_k1", "small", "retriever_context", [1.0, 1.0, 0.0, 1.0] * 5,
                  [True, False, True, True] * 5, **{"retriever.top_k": 1}),
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
    # one cell per eval: the shared closed-book eval once, labelled without the setting it does not read
    assert [e["label"] for e in board["evals"]] == [
        "small @ demo / no_context", "small @ demo / oracle_context", "small @ demo (top_k=1) / retriever_context",
        "small @ demo (top_k=3) / retriever_context", "big @ demo / no_context"]


def test_paired_differences_use_the_same_questions_in_every_metric(entries):
    small_k1 = build_leaderboard(entries, samples=500)["rows"][0]
    oracle = small_k1["differences"]["token_recall"]["oracle_context - no_context"]
    assert oracle["mean"] == 0.5 and oracle["n"] == 20
    assert 0 < oracle["ci_low"] <= 0.5 <= oracle["ci_high"]  # the oracle never does worse on a question
    rag = small_k1["differences"]["token_recall"]["retriever_context - no_context"]
    assert rag["mean"] == 0.25 and rag["ci_low"] < 0 < 0.25 <= rag["ci_high"]  # gains and losses: not sure
    assert small_k1["differences"]["token_f1"]["oracle_context - no_context"]["mean"] == 0.25  # F1 = recall / 2


def test_gpu_energy_is_a_cost_column_where_measured_and_a_dash_elsewhere(entries):
    entries[0].results.update(gpu_energy_joules=812.5, gpu_mean_power_watts=210.3)  # small_nc ran on a GPU
    board = build_leaderboard(entries, samples=200)
    evals = {e["name"]: e for e in board["evals"]}
    assert evals["small_nc"]["costs"]["gpu_energy_joules"] == 812.5
    assert evals["big_nc"]["costs"]["gpu_energy_joules"] is None, "absent without a GPU, not 0"
    table = to_markdown(board).split("## Each eval's own costs")[1]
    header, _, *rows = [line for line in table.splitlines() if line.startswith("|")]
    assert header.endswith("| GPU energy (J) | mean GPU power (W) |")
    assert sum(r.endswith("| 812.5 | 210.3 |") for r in rows) == 1
    assert sum(r.endswith("| - | - |") for r in rows) == 4


def test_each_eval_keeps_its_own_costs_and_a_retriever_eval_its_split(entries):
    board = build_leaderboard(entries, samples=200)
    evals = {e["name"]: e for e in board["evals"]}
    assert evals["small_nc"]["costs"]["seconds_per_question"] == 0.1  # not a mean over the modes
    assert evals["small_rag_k1"]["costs"]["seconds_per_question"] == 0.3
    assert evals["small_rag_k1"]["costs"]["cpu_ram_used_mb"] == 1000.0 + len("small_rag_k1")
    assert "rag_split" not in evals["small_nc"] and "rag_split" not in evals["small_oracle"]
    split = evals["small_rag_k1"]["rag_split"]["token_recall"]
    # per 4 questions: gold & right, not gold & right, gold & wrong, gold & right
    assert {g: v["count"] for g, v in split["groups"].items()} == \
        {"gold_right": 10, "gold_wrong": 5, "nogold_right": 5, "nogold_wrong": 0}
    # against small_nc (right, wrong, right, wrong): helped on q1, q3; hurt on q2 (of every 4)
    assert (split["context_helped"], split["context_hurt"], split["n_paired"]) == (10, 5, 20)


def test_markdown_and_csv_rank_by_the_chosen_metric(entries):
    md = to_markdown(build_leaderboard(entries, samples=200))
    assert "| small @ demo (top_k=1) | 0.500 [" in md and "**0.750 [" in md  # best no_context is big's 0.75
    assert "retriever_context - no_context" in md and "## Retrieval vs reading" in md
    assert "| small @ demo (top_k=1) / retriever_context | gold passage | 20 | 0.500 [" in md
    by_f1 = build_leaderboard(entries, "token_f1", samples=200)
    md_f1 = to_markdown(by_f1)
    assert "# Leaderboard: token_f1" in md_f1 and "| small @ demo (top_k=1) | 0.250 [" in md_f1
    table = list(csv.DictReader(io.StringIO(to_csv(by_f1))))
    assert table[0]["retriever_context:token_recall"] == "0.75" and table[0]["retriever_context:token_f1"] == "0.375"
    assert table[0]["no_context:seconds_per_question"] == "0.1"
    assert table[0]["retriever_context:seconds_per_question"] == "0.3"
    assert table[0]["retriever_context:gold_right"] == "0.5"  # F1 0.5 (recall 1.0) with the gold passage shown
    assert table[0]["retriever_context:split_definition"] == "gold passage" and table[2]["variant"] == ""
    with pytest.raises(UserError, match="unknown metric 'f1'"):
        build_leaderboard(entries, "f1", samples=10)


def test_one_system_marks_no_best(entries):
    board = build_leaderboard([entries[0], entries[1]], samples=50)
    assert all(v is None for v in board["best"].values())
    assert "**" not in to_markdown(board)


def test_the_html_page_is_self_contained_and_carries_every_question(entries, tmp_path):
    board, paths = write_report(entries, tmp_path / "report", samples=200, extras={})
    assert json.loads(paths["json"].read_text())["rows"][0]["system"] == "small @ demo (top_k=1)"
    page = paths["html"].read_text()
    assert page.count('src="data:image/png;base64,') == 3
    assert 'id="leaderboard"' in page and page.count('class="leaderboard"') == 4 and 'id="metric"' in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing to fetch
    assert page.count('class="num best"') >= 3
    assert "settings that differ from the defaults" in page and "abc123def456" in page
    block = re.search(r'id="drilldown-data">([^<]+)</script>', page).group(1)
    data = decode(block)
    assert data["ids"] == IDS and [c["label"] for c in data["cells"]] == [e["label"] for e in board["evals"]]
    rag_k1 = [c["name"] for c in data["cells"]].index("small_rag_k1")
    assert data["answers"][rag_k1][1] == "small says 1.0" and data["scores"][rag_k1][0][2] == 0
    title, flags, score = data["passages"][rag_k1][1][0]
    assert data["titles"][title] == "T q1" and flags == 2 * 0 + 0 and score == 2.0  # q1: gold not shown
    assert data["passages"][rag_k1][0][0][1] == 3  # q0: gold and holds an answer
    assert data["passages"][[c["name"] for c in data["cells"]].index("small_nc")] is None
    assert sorted(p.name for p in (tmp_path / "report").glob("*.png")) == [
        "leaderboard_bars.png", "quality_vs_peak_memory.png", "quality_vs_seconds_per_question.png"]


def test_the_page_names_the_code_and_warns_when_evals_come_from_different_code(entries, tmp_path):
    def commit_row(evals, name):
        page = write_report(evals, tmp_path / name, samples=50, extras={})[1]["html"].read_text()
        return re.search(r"<th>commit</th><td>(.*?)</td>", page).group(1)

    for e in entries:
        e.results["meta"]["code_version"] = "c0de000000000001"
    assert "abc123def456 · code c0de000000000001" in commit_row(entries, "same")
    assert "code versions" not in commit_row(entries, "same")
    entries[-1].results["meta"]["code_version"] = "c0de000000000002"  # e.g. an uncommitted edit in between
    row = commit_row(entries, "mixed")
    assert "c0de000000000001, c0de000000000002" in row and "2 code versions" in row


def test_the_run_folder_gives_step_links_and_finetune_benchmark_results(entries, tmp_path):
    run = tmp_path / "run"
    for step, stage in (("ingest", "ingest"), ("small_nc", "eval"), ("finetune", "finetune"),
                        ("benchmark", "benchmark")):
        write_json(run / step / ".step.json", {"key": "k", "stage": stage, "results": {}})
    write_json(run / "finetune" / "results.json", {"method": "lora", "model": "small", "train_loss_last": 1.5})
    summary = {w: {"token_f1": {"mean": v, "ci_low": v - 0.1, "ci_high": v + 0.1, "n": 8}}
               for w, v in (("base", 0.138), ("tuned", 0.5), ("delta", 0.362))}
    write_json(run / "benchmark" / "results.json", {"model": "small", "num_examples": 8, "summary": summary})
    found = [entry("small_nc", "small", "no_context", [1.0, 0.0] * 10, folder=run / "small_nc")]
    extras = local_extras(found, run / "report")
    assert [s["name"] for s in extras["steps"]] == ["benchmark", "finetune", "ingest", "small_nc"]
    assert extras["steps"][2]["url"] == "../ingest/"  # relative to the report folder
    assert extras["finetune"][0]["results"]["train_loss_last"] == 1.5
    _, paths = write_report(found, run / "report", samples=50)
    page = paths["html"].read_text()
    assert 'id="finetune-benchmark"' in page and "0.138" in page and "0.500" in page and 'href="../finetune/"' in page


def test_two_evals_of_one_cell_are_an_error(entries):
    with pytest.raises(UserError, match="two no_context evals of small @ demo"):
        build_leaderboard(entries + [entry("again", "small", "no_context", [0.0] * 20)], samples=50)
    with pytest.raises(UserError, match="no finished evals"):
        build_leaderboard([], samples=50)

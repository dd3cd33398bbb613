"""The index stage: the index over ingest's passages, gold_hit@k / answer_hit@k, and index_results.json
(the retrievers themselves: tests/components/data/test_retrieval.py)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from components.core.config import RetrieverConfig
from components.core.errors import UserError
from components.core.fileio import read_json, write_jsonl
from components.core.outputs import INDEX_RESULTS_FILE, INDEX_SUBDIR
from components.data.retrieval import INDEX_MANIFEST
from components.data.schema import PASSAGES_FILE, QUESTIONS_FILE, Passage, Question
from components.stages.index import answer_hit_at_k, gold_hit_at_k, retrieval_metrics, run_index

from helpers import CORPUS, LEXICAL_QUERIES, SHARED_DATA
NQ_ORACLE = SHARED_DATA / "nq_open" / "nq-open-oracle.jsonl.gz"



def test_gold_and_answer_hit_at_k_by_hand():
    questions = [
        Question("q1", "?", ["Paris"], gold_passage_ids=["p2"]),
        Question("q2", "?", ["1889"], gold_passage_ids=["p9"]),
        Question("q3", "?", ["the Moon"]),  # no gold ids: left out of gold_hit, kept in answer_hit
    ]
    hits = [[("p1", 3.0), ("p2", 2.0)], [("p3", 1.0), ("p1", 0.5)], [("p3", 1.0)]]
    assert gold_hit_at_k(hits, questions, 1) == 0.0
    assert gold_hit_at_k(hits, questions, 2) == 0.5  # q1 at rank 2; q2's gold never retrieved
    texts = {"p1": " tower in paris completed in 1889 ", "p2": " nothing ", "p3": " on moon "}
    assert answer_hit_at_k(hits, questions, texts, 1) == pytest.approx(2 / 3)  # q1 and q3
    texts["p1"] = " parisian towers "  # "paris" inside a longer word is not the answer
    assert answer_hit_at_k(hits, questions, texts, 2) == pytest.approx(1 / 3)  # q3 only
    assert gold_hit_at_k(hits, questions[2:], 1) is None


def _write_ingest(folder: Path, passages: list[Passage], questions: list[Question]) -> Path:
    write_jsonl(folder / PASSAGES_FILE, [p.to_dict() for p in passages])
    write_jsonl(folder / QUESTIONS_FILE, [q.to_dict() for q in questions])
    return folder


def test_run_index_writes_results(tmp_path):
    questions = [Question(f"q{i}", text, [], gold_passage_ids=[pid])
                 for i, (text, pid) in enumerate(LEXICAL_QUERIES.items())]
    questions.append(Question("qa", "Who discovered insulin?", ["Frederick Banting"]))
    ingest = _write_ingest(tmp_path / "ingest", CORPUS, questions)
    results = run_index(RetrieverConfig(kind="bm25", hit_ks=[1, 3]), ingest, tmp_path / "out")
    assert read_json(tmp_path / "out" / INDEX_RESULTS_FILE) == results
    assert results["gold_hit@1"] == 1.0 and results["answer_hit@1"] == pytest.approx(1 / 4)
    size = read_json(tmp_path / "out" / INDEX_SUBDIR / INDEX_MANIFEST)["size_bytes"]
    assert results["retriever_index_size_bytes"] == size
    assert results["retriever_index_size_mb"] == round(size / 2**20, 3)
    assert results["num_passages"] == len(CORPUS) and results["num_questions_with_gold"] == 3
    assert results["queries_per_second"] > 0


def test_run_index_rejects_missing_or_empty_passages(tmp_path):
    with pytest.raises(UserError, match=f"{PASSAGES_FILE}: file not found"):
        run_index(RetrieverConfig(), tmp_path, tmp_path / "out")
    _write_ingest(tmp_path, [], [Question("q1", "?", ["a"])])
    with pytest.raises(UserError, match=f"{PASSAGES_FILE}: no passages to index"):
        run_index(RetrieverConfig(), tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _nq_oracle_rows(limit: int) -> list[dict]:
    with gzip.open(NQ_ORACLE, "rt", encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(limit), f)]


@pytest.mark.skipif(not NQ_ORACLE.is_file(), reason="shared NQ data not present")
def test_bm25_finds_real_nq_gold_passages(tmp_path):
    from components.data.schema import passage_id

    rows = _nq_oracle_rows(500)
    passages, questions = {}, []
    for i, row in enumerate(rows):
        gold = [c for c in row["ctxs"] if c.get("isgold")]
        for c in gold:
            pid = passage_id(c["title"], c["text"])
            passages[pid] = Passage(pid, c["title"], c["text"])
        questions.append(Question(f"q{i}", row["question"], row["answers"],
                                  [passage_id(c["title"], c["text"]) for c in gold]))
    ingest = _write_ingest(tmp_path / "ingest", list(passages.values()), questions)
    results = run_index(RetrieverConfig(kind="bm25", hit_ks=[1, 10]), ingest, tmp_path / "out")
    # Measured 0.868 / 0.968 / 0.966 on these 500 questions; chance at 10 is 10/498.
    assert 0.8 < results["gold_hit@1"] < results["gold_hit@10"] < 1.0
    assert results["answer_hit@10"] > 0.9


def test_retrieval_metrics_per_distinct_k_and_answers_found_in_titles():
    passages = [Passage("p1", "Guido van Rossum", "He created a language."), Passage("p2", "", "Nothing here."),
                Passage("p3", "Unretrieved", "Guido van Rossum")]
    questions = [Question("q1", "?", ["guido van rossum"], gold_passage_ids=["p2"])]
    hits = [[("p2", 2.0), ("p1", 1.0)]]
    metrics = retrieval_metrics(hits, questions, passages, [2, 1, 2])
    assert metrics == {"gold_hit@1": 1.0, "gold_hit@2": 1.0, "answer_hit@1": 0.0, "answer_hit@2": 1.0}
    assert list(metrics) == ["gold_hit@1", "gold_hit@2", "answer_hit@1", "answer_hit@2"]


def test_answer_hit_counts_questions_without_an_answer_as_misses():
    hits = [[("p1", 1.0)], [("p1", 1.0)]]
    questions = [Question("q1", "?", ["Paris"]), Question("q2", "?", ["", "  "])]
    assert answer_hit_at_k(hits, questions, {"p1": " paris "}, 1) == 0.5
    assert answer_hit_at_k([], [], {}, 1) is None


def test_run_index_without_questions_reports_no_quality(tmp_path):
    ingest = _write_ingest(tmp_path / "ingest", CORPUS, [])
    results = run_index(RetrieverConfig(kind="bm25", hit_ks=[1]), ingest, tmp_path / "out")
    assert (results["num_questions"], results["num_passages"]) == (0, len(CORPUS))
    assert results["gold_hit@1"] is None and results["answer_hit@1"] is None
    assert results["queries_per_second"] is None and results["search_seconds"] == 0.0
    assert (tmp_path / "out" / INDEX_SUBDIR / INDEX_MANIFEST).is_file()

"""The index stage: build the retriever index over ingest's passages and measure retrieval quality.

Writes, into its output folder:
  index/              the index (see components.data.retrieval)
  index_results.json  size, build time, queries/s and hit@k

Metrics (k in `retriever.hit_ks`; every question is searched once with the largest k):
- gold_hit@k: share of questions with gold passage ids that have one of them in the top k. None when no
  question has gold ids (e.g. SimpleQA pages without a long_answer column).
- answer_hit@k: share of questions whose top k holds a passage (title and text, as indexed) that contains
  a gold answer, both sides normalised with `metrics.normalize_answer` and matched on word boundaries.
  Questions without a non-empty answer count as misses.
- queries_per_second: questions / seconds of one batched search over all of them (the index is loaded
  and, for dense, the embedding model warmed up beforehand, so this is search speed, not start-up).
"""
from __future__ import annotations

import time
from pathlib import Path

from components.core.config import RetrieverConfig
from components.core.errors import UserError
from components.core.fileio import write_json
from components.analysis.metrics import normalize_answer
from components.core.outputs import INDEX_RESULTS_FILE, INDEX_SUBDIR, MB
from components.data.retrieval import Hits, build_index, load_retriever, passage_text
from components.data.schema import PASSAGES_FILE, Passage, Question
from components.stages.stage_inputs import read_passages, read_questions

def _passages_to_index(ingest_dir: Path) -> list[Passage]:
    passages = read_passages(ingest_dir)
    if not passages:
        raise UserError(f"{Path(ingest_dir) / PASSAGES_FILE}: no passages to index (the dataset has no passages "
                        "or documents; use one that does for retriever_context)")
    return passages


def gold_hit_at_k(hits: Hits, questions: list[Question], k: int) -> float | None:
    """Share of questions with gold ids that have a gold passage among their top k hits."""
    judged = [(row, set(q.gold_passage_ids)) for row, q in zip(hits, questions) if q.gold_passage_ids]
    if not judged:
        return None
    return sum(any(pid in gold for pid, _ in row[:k]) for row, gold in judged) / len(judged)


def answer_hit_at_k(hits: Hits, questions: list[Question], normalized_texts: dict[str, str],
                    k: int) -> float | None:
    """Share of questions with a retrieved passage in the top k containing a normalised gold answer."""
    if not questions:
        return None

    def found(row: list[tuple[str, float]], question: Question) -> bool:
        answers = [f" {a} " for a in map(normalize_answer, question.answers) if a]
        return any(a in normalized_texts[pid] for pid, _ in row[:k] for a in answers)

    return sum(found(row, q) for row, q in zip(hits, questions)) / len(questions)


def _normalized_texts(hits: Hits, passages: list[Passage]) -> dict[str, str]:
    """Normalised text (space-padded for whole-word matching) of just the passages that were retrieved."""
    retrieved = {pid for row in hits for pid, _ in row}
    return {p.id: f" {normalize_answer(passage_text(p))} " for p in passages if p.id in retrieved}


def retrieval_metrics(hits: Hits, questions: list[Question], passages: list[Passage],
                      hit_ks: list[int]) -> dict:
    texts = _normalized_texts(hits, passages)
    metrics: dict = {}
    for k in sorted(set(hit_ks)):
        metrics[f"gold_hit@{k}"] = gold_hit_at_k(hits, questions, k)
    for k in sorted(set(hit_ks)):
        metrics[f"answer_hit@{k}"] = answer_hit_at_k(hits, questions, texts, k)
    return metrics


def _timed_search(index_dir: Path, queries: list[str], k: int) -> tuple[Hits, float]:
    if not queries:
        return [], 0.0
    retriever = load_retriever(index_dir)
    retriever.search(queries[:1], k)  # warm-up: model load and first-call overheads are not search speed
    start = time.perf_counter()
    hits = retriever.search(queries, k)
    return hits, time.perf_counter() - start


def run_index(cfg: RetrieverConfig, ingest_dir: Path, output_dir: Path) -> dict:
    """Build the index into `output_dir/index/`, score it on ingest's questions, write index_results.json."""
    ingest_dir, output_dir = Path(ingest_dir), Path(output_dir)
    passages = _passages_to_index(ingest_dir)
    questions = read_questions(ingest_dir)

    start = time.perf_counter()
    manifest = build_index(cfg, passages, output_dir / INDEX_SUBDIR)
    build_seconds = time.perf_counter() - start

    queries = [q.question for q in questions]
    hits, search_seconds = _timed_search(output_dir / INDEX_SUBDIR, queries, max(cfg.hit_ks))
    results = {
        "kind": cfg.kind,
        "embedding_model": manifest["embedding_model"],
        "num_passages": manifest["num_passages"],
        "num_questions": len(questions),
        "num_questions_with_gold": sum(bool(q.gold_passage_ids) for q in questions),
        "retriever_index_size_bytes": manifest["size_bytes"],
        "retriever_index_size_mb": round(manifest["size_bytes"] / MB, 3),
        "index_build_seconds": round(build_seconds, 3),
        "search_seconds": round(search_seconds, 3),
        "queries_per_second": round(len(queries) / search_seconds, 1) if search_seconds > 0 else None,
        **retrieval_metrics(hits, questions, passages, cfg.hit_ks),
    }
    write_json(output_dir / INDEX_RESULTS_FILE, results)
    return results

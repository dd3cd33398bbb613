"""The eval stage: a model answers every selected question in one mode; predictions, metrics, memory.

Output folder (final names appear only when the run completes, by rename):
  predictions.jsonl   one line per question, in question order, with its metrics
  results.json        aggregate metrics + seed-000 keys + provenance
  memory_usage.json   detailed_log (memory per operation) and peak_usage
While running, `predictions.partial.jsonl` grows one line per finished batch; a killed run started again
with the same config skips those batches and ends with exactly the predictions of an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from components import schema
from components.config import AppConfig
from components.errors import UserError
from components.indexing import INDEX_RESULTS_FILE, INDEX_SUBDIR
from components.fileio import read_json, read_jsonl, write_json, write_jsonl
from components.decoding import build_prefix_cache, common_prefix_length
from components.generation import Generated, generate_token_batch, plan_batches, plan_fingerprint
from components.memory import MemoryLog
from components.metrics import QA_METRICS, mean, normalize_answer, score_prediction
from components.models import LoadedModel, load_model
from components.prompts import render_prompt, user_message
from components.provenance import stamp
from components.schema import Passage, Question

PARTIAL_FILE = "predictions.partial.jsonl"
PREDICTIONS_FILE = "predictions.jsonl"
RESULTS_FILE = "results.json"
MEMORY_FILE = "memory_usage.json"
MB = 1024 * 1024

_MODEL_CACHE: dict[str, LoadedModel] = {}


def shared_model(cfg: AppConfig) -> LoadedModel:
    """Load a model once per process: every eval mode (and the benchmark's base run) reuses it."""
    key = json.dumps(cfg.model.__dict__, sort_keys=True)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()  # one model in memory at a time
        _MODEL_CACHE[key] = load_model(cfg.model)
    return _MODEL_CACHE[key]


def select_questions(ingest_dir: Path, split: str, max_samples: int) -> list[Question]:
    """Questions in file order (`all`) or from the train/test split; the first max_samples when set."""
    name = {"all": schema.QUESTIONS_FILE, "train": schema.TRAIN_FILE, "test": schema.TEST_FILE}[split]
    rows = read_jsonl(Path(ingest_dir) / name)
    if max_samples:
        rows = rows[:max_samples]
    if not rows:
        raise UserError(f"{Path(ingest_dir) / name}: no questions to evaluate")
    return [Question.from_dict(r) for r in rows]


def load_passages(ingest_dir: Path) -> dict[str, Passage]:
    return {r["id"]: Passage.from_dict(r) for r in read_jsonl(Path(ingest_dir) / schema.PASSAGES_FILE)}


@dataclass
class Contexts:
    passages: list[list[Passage]]
    scores: list[list[float]]
    index_size_bytes: int = 0


def build_contexts(cfg: AppConfig, mode: str, questions: list[Question], ingest_dir: Path,
                   index_dir: Path | None) -> Contexts:
    if mode == "no_context":
        return Contexts([[] for _ in questions], [[] for _ in questions])
    corpus = load_passages(ingest_dir)
    if mode == "oracle_context":
        if not any(q.gold_passage_ids for q in questions):
            raise UserError(f"oracle_context needs gold passages, and {ingest_dir} has none for these "
                            "questions (use a dataset with passages, e.g. nq-open-oracle.jsonl.gz)")
        chosen = [[corpus[p] for p in q.gold_passage_ids if p in corpus] for q in questions]
        return Contexts(chosen, [[1.0] * len(c) for c in chosen])
    if index_dir is None:
        raise UserError("retriever_context needs an index (run `slm index` first)")
    from components.retrieval import load_retriever

    hits = load_retriever(Path(index_dir) / INDEX_SUBDIR).search([q.question for q in questions], cfg.retriever.top_k)
    size = int(read_json(Path(index_dir) / INDEX_RESULTS_FILE)["retriever_index_size_bytes"])
    return Contexts([[corpus[pid] for pid, _ in row] for row in hits], [[s for _, s in row] for row in hits],
                    index_size_bytes=size)


def _read_partial(path: Path, fingerprint: str) -> dict[int, list[dict]]:
    """Finished batches of an earlier run with the same plan; anything else means starting over."""
    if not path.is_file():
        return {}
    done: dict[int, list[dict]] = {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        return {}
    if header.get("plan") != fingerprint:
        return {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            break  # a batch cut short by a kill: it and anything after it is redone
        done[entry["batch"]] = entry["rows"]
    return done


def _start_partial(path: Path, fingerprint: str, num_batches: int, done: dict[int, list[dict]]):
    """Rewrite the partial file as header + intact finished batches (dropping a torn tail), open to append."""
    entries = [{"plan": fingerprint, "num_batches": num_batches}] + [
        {"batch": b, "rows": rows} for b, rows in sorted(done.items())]
    write_jsonl(path, entries)
    return open(path, "a", encoding="utf-8")


def _append_line(f, obj: dict) -> None:
    f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())


def _prediction_row(q: Question, passages: list[Passage], scores: list[float], gen: Generated) -> dict:
    golds = [normalize_answer(a) for a in q.answers]
    context_text = normalize_answer(" ".join(p.text for p in passages))
    return {"id": q.id, "question": q.question, "answers": q.answers, "prediction": gen.text,
            "context_ids": [p.id for p in passages], "context_scores": [round(s, 4) for s in scores],
            "context_has_answer": bool(passages) and any(g and g in context_text for g in golds),
            "new_tokens": gen.new_tokens, "hit_max_new_tokens": gen.hit_max_new_tokens,
            **score_prediction(gen.text, q.answers)}


def summarize(rows: list[dict], mode: str) -> dict:
    """Aggregate metrics over prediction rows (also what a reader recomputes from predictions.jsonl)."""
    summary = {name: mean(r[name] for r in rows) for name in QA_METRICS}
    summary.update(num_examples=len(rows), mode=mode,
                   share_hit_max_new_tokens=mean(float(r["hit_max_new_tokens"]) for r in rows))
    if mode != "no_context":
        summary["context_has_answer_rate"] = mean(float(r["context_has_answer"]) for r in rows)
        summary["num_without_context"] = sum(1 for r in rows if not r["context_ids"])
    return summary


def _clear_final_outputs(output_dir: Path) -> None:
    # A rerun replaces these; if it then fails, no stale results.json may pass for its result.
    for name in (RESULTS_FILE, PREDICTIONS_FILE, MEMORY_FILE):
        (output_dir / name).unlink(missing_ok=True)


def run_eval(cfg: AppConfig, mode: str, ingest_dir: Path, index_dir: Path | None, output_dir: Path,
             progress: Callable | None = None) -> dict:
    """Answer, score and write the outputs for one mode; returns the results dict."""
    started = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _clear_final_outputs(output_dir)
    memory = MemoryLog()
    questions = select_questions(ingest_dir, cfg.experiment.split, cfg.experiment.max_samples)
    contexts = build_contexts(cfg, mode, questions, ingest_dir, index_dir)
    memory.record("build contexts")
    load_start = time.perf_counter()
    lm = shared_model(cfg)
    load_seconds = time.perf_counter() - load_start
    memory.record("load model")

    timing: dict[str, float] = {"load_model_seconds": load_seconds}
    clock = time.perf_counter()
    prompts = [render_prompt(lm.tokenizer, user_message(q.question, ctx, cfg.prompt), cfg.prompt, cfg.model)
               for q, ctx in zip(questions, contexts.passages)]
    token_ids = lm.tokenizer(prompts, add_special_tokens=False)["input_ids"]
    batches = plan_batches([len(ids) for ids in token_ids], cfg.generation.batch_size,
                           cfg.generation.max_batch_tokens)
    fingerprint = plan_fingerprint(prompts, batches, cfg.generation, lm.source,
                                   scored_against=[[q.id, q.answers] for q in questions])
    partial_path = output_dir / PARTIAL_FILE
    done = _read_partial(partial_path, fingerprint)
    timing["tokenize_seconds"] = time.perf_counter() - clock
    memory.record("tokenize prompts")

    clock = time.perf_counter()
    # The head every prompt shares (chat template + instruction) is prefilled once for the whole run.
    prefix = build_prefix_cache(lm.model, token_ids[0][: common_prefix_length(token_ids)], lm.device)
    timing["shared_prefix_seconds"] = time.perf_counter() - clock
    gen_start = time.perf_counter()
    rows_by_index: dict[int, dict] = {}
    with _start_partial(partial_path, fingerprint, len(batches), done) as partial:
        for b, batch in enumerate(progress(batches) if progress else batches):
            rows = done.get(b)
            if rows is None:
                outputs = generate_token_batch(lm.model, lm.tokenizer, [token_ids[i] for i in batch],
                                               cfg.generation, lm.device, prefix=prefix,
                                               seed=cfg.generation.seed + b, timings=timing)
                clock = time.perf_counter()
                rows = [_prediction_row(questions[i], contexts.passages[i], contexts.scores[i], out)
                        for i, out in zip(batch, outputs)]
                _append_line(partial, {"batch": b, "rows": rows})
                timing["score_seconds"] = timing.get("score_seconds", 0.0) + time.perf_counter() - clock
            rows_by_index.update(zip(batch, rows))
    generation_seconds = time.perf_counter() - gen_start
    memory.record("generate")

    rows = [rows_by_index[i] for i in range(len(questions))]
    results = summarize(rows, mode)
    peak = memory.peak_usage()
    new_tokens = sum(r["new_tokens"] for r in rows)
    results.update(
        model=cfg.model.name, dataset=cfg.dataset.name,
        model_size_bytes=lm.model_size_bytes, model_size_mb=round(lm.model_size_bytes / MB, 2),
        retriever_index_size_bytes=contexts.index_size_bytes,
        retriever_index_size_mb=round(contexts.index_size_bytes / MB, 3),
        **peak,
        duration_seconds=round(time.perf_counter() - started, 3),
        load_seconds=round(load_seconds, 3), generation_seconds=round(generation_seconds, 3),
        seconds_per_question=round(generation_seconds / len(rows), 4),
        generated_tokens_per_second=round(new_tokens / generation_seconds, 2) if generation_seconds else 0.0,
        resumed_batches=len(done), num_batches=len(batches),
        timing={k: round(v, 3) for k, v in timing.items()},
        meta={**stamp(), "config": cfg.to_dict()})
    write_jsonl(output_dir / PREDICTIONS_FILE, rows)
    write_json(output_dir / MEMORY_FILE, memory.to_dict())
    write_json(output_dir / RESULTS_FILE, results)  # last: its presence means the step completed
    partial_path.unlink(missing_ok=True)
    return results

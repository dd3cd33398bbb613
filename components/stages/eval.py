"""The eval stage: a model answers every selected question in one mode; predictions, metrics, memory.

Output folder (final names appear only when the run completes, by rename):
  predictions.jsonl   one line per question, in question order, with its metrics
  results.json        aggregate metrics + seed-000 keys + provenance
  memory_usage.json   detailed_log (memory per operation) and peak_usage
While running, `predictions.partial.jsonl` (components.stages.resume_log) grows one line per finished batch; a
killed run started again with the same config skips those batches and ends with exactly the predictions
of an uninterrupted run.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from components.core.clock import process_age_seconds
from components.core.code_version import code_version
from components.core.config import AppConfig
from components.core.fileio import write_json, write_jsonl
from components.backends.generation import Generated, plan_batches, plan_fingerprint, shared_prefix
from components.backends.base import Generator, shared_generator
from components.core.memory import MemoryLog
from components.analysis.metrics import normalize_answer, score_prediction
from components.core.outputs import MB, MEMORY_FILE, PREDICTIONS_FILE, RESULTS_FILE, clear_outputs
from components.core.provenance import stamp
from components.analysis.qa_summary import summarize
from components.stages.resume_log import PARTIAL_FILE, ResumeLog
from components.data.schema import Passage, Question
from components.stages.stage_inputs import Contexts, build_contexts, render_prompts, select_questions



def _prediction_row(q: Question, passages: list[Passage], scores: list[float], gen: Generated) -> dict:
    """One question's line of predictions.jsonl. Per passage shown, best first: its id, score, title,
    whether it is one of the question's gold passages and whether it holds a gold answer string (what the
    report's retrieval-vs-reading split reads); `has_gold_passage` says whether the question has any."""
    golds = [g for g in (normalize_answer(a) for a in q.answers) if g]
    context_text = normalize_answer(" ".join(p.text for p in passages))
    gold_ids = set(q.gold_passage_ids)
    return {"id": q.id, "question": q.question, "answers": q.answers, "prediction": gen.text,
            "context_ids": [p.id for p in passages], "context_scores": [round(s, 4) for s in scores],
            "context_titles": [p.title for p in passages],
            "context_is_gold": [p.id in gold_ids for p in passages],
            "context_holds_answer": [any(g in normalize_answer(p.text) for g in golds) for p in passages],
            "has_gold_passage": bool(gold_ids),
            "context_has_answer": bool(passages) and any(g in context_text for g in golds),
            "new_tokens": gen.new_tokens, "hit_max_new_tokens": gen.hit_max_new_tokens,
            **score_prediction(gen.text, q.answers)}


def assemble_results(cfg: AppConfig, mode: str, rows: list[dict], generator: Generator, contexts: Contexts,
                     memory: MemoryLog, timing: dict[str, float], resumed_batches: int, num_batches: int,
                     started: float) -> dict:
    """results.json: the metrics over the rows, the seed-000 sizes and memory keys, speed, provenance."""
    results = summarize(rows, mode, cfg.experiment.bootstrap_samples)
    generation_seconds = timing.get("generation_seconds", 0.0)
    new_tokens = sum(r["new_tokens"] for r in rows)
    results.update(
        model=cfg.model.name, adapter=cfg.model.adapter, dataset=cfg.dataset.name, backend=generator.backend,
        backend_version=generator.backend_version, precision=generator.precision,
        model_size_bytes=generator.model_size_bytes, model_size_mb=round(generator.model_size_bytes / MB, 2),
        retriever_index_size_bytes=contexts.index_size_bytes,
        retriever_index_size_mb=round(contexts.index_size_bytes / MB, 3),
        **memory.peak_usage(), **memory.energy(),
        duration_seconds=round(time.perf_counter() - started, 3),
        load_seconds=round(timing["load_model_seconds"], 3), generation_seconds=round(generation_seconds, 3),
        seconds_per_question=round(generation_seconds / len(rows), 4) if rows else 0.0,
        generated_tokens_per_second=round(new_tokens / generation_seconds, 2) if generation_seconds else 0.0,
        resumed_batches=resumed_batches, num_batches=num_batches,
        timing={k: round(v, 3) for k, v in timing.items() if k != "generation_seconds"},
        meta={**stamp(__name__), "config": cfg.to_dict()})
    return results


def prefill_throughput(prompt_ids: list[list[int]], prefix: int, timing: dict[str, float]) -> dict:
    """Prompt tokens and the prefill rate: the tokens past the shared head (`prefix` tokens, prefilled once,
    apart) over the prefill seconds, so runs and backends compare on the work that grows with the questions."""
    own = sum(len(ids) for ids in prompt_ids) - prefix * len(prompt_ids)
    seconds = timing.get("prefill_seconds", 0.0)
    return {"prompt_tokens": own + prefix * len(prompt_ids), "shared_prefix_tokens": prefix,
            "prefill_tokens_per_second": round(own / seconds, 1) if seconds else 0.0}


def run_eval(cfg: AppConfig, mode: str, ingest_dir: Path, index_dir: Path | None, output_dir: Path,
             progress: Callable | None = None, generator: Generator | None = None,
             keep_progress: Callable[[Path, int, int], None] | None = None) -> dict:
    """Answer, score and write the outputs for one mode; returns the results dict. `progress(total, desc)`
    makes a bar (components.core.console.progress_bar) updated per answered question. `generator` defaults
    to the process-wide model of `cfg.model`. With `experiment.shard` set, only that shard's whole
    batches of the fixed plan run (batch b belongs to shard b % shards), so merged shards give exactly
    the unsharded predictions (components.stages.merge). `keep_progress(partial file, batches finished,
    batches of this run)` is called after each batch is appended (an agent uploads the file there)."""
    started = time.perf_counter()
    age_at_start = process_age_seconds()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # A rerun replaces these; if it then fails, no stale results.json may pass for its result.
    clear_outputs(output_dir, (RESULTS_FILE, PREDICTIONS_FILE, MEMORY_FILE))
    memory = MemoryLog()
    questions = select_questions(ingest_dir, cfg.experiment.split, cfg.experiment.max_samples)
    contexts = build_contexts(cfg, mode, questions, ingest_dir, index_dir)
    memory.record("build contexts")
    load_start = time.perf_counter()
    generator = generator or shared_generator(cfg.model, cfg.generation)
    timing: dict[str, float] = {"process_age_at_eval_seconds": age_at_start,
                                "load_model_seconds": time.perf_counter() - load_start}
    memory.record("load model")

    clock = time.perf_counter()
    prompts = render_prompts(cfg, generator.tokenizer, questions, contexts)
    token_ids = generator.tokenizer(prompts, add_special_tokens=False)["input_ids"]
    batches = plan_batches([len(ids) for ids in token_ids], cfg.generation.batch_size,
                           cfg.generation.max_batch_tokens)
    fingerprint = plan_fingerprint(prompts, batches, cfg.generation, generator.source, code_version(__name__),
                                   scored_against=[[q.id, q.answers] for q in questions])
    timing["tokenize_seconds"] = time.perf_counter() - clock
    memory.record("tokenize prompts")

    clock = time.perf_counter()
    generator.prepare(token_ids)
    timing["shared_prefix_seconds"] = time.perf_counter() - clock
    gen_start = time.perf_counter()
    shard, shards = cfg.experiment.shard, cfg.experiment.shards
    mine = [b for b in range(len(batches)) if shard < 0 or b % shards == shard]
    rows_by_index: dict[int, dict] = {}
    # counted in questions: a closed-book run is often one or two batches, which a batch count cannot show
    bar = progress(sum(len(batches[b]) for b in mine), f"eval {mode}") if progress else None
    finished = 0  # batches of this run done, resumed or not
    with ResumeLog(output_dir / PARTIAL_FILE, fingerprint, len(batches)) as log:
        for b in mine:
            batch = batches[b]
            rows = log.done.get(b)
            if rows is None:
                timing.setdefault("process_age_at_first_batch_seconds", process_age_seconds())
                outputs = generator.generate([token_ids[i] for i in batch], cfg.generation,
                                             seed=cfg.generation.seed + b, timings=timing)
                clock = time.perf_counter()
                rows = [_prediction_row(questions[i], contexts.passages[i], contexts.scores[i], out)
                        for i, out in zip(batch, outputs)]
                log.append(b, rows)
                timing["score_seconds"] = timing.get("score_seconds", 0.0) + time.perf_counter() - clock
                if keep_progress:
                    keep_progress(log.path, finished + 1, len(mine))
            finished += 1
            rows_by_index.update(zip(batch, rows))
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    timing["generation_seconds"] = time.perf_counter() - gen_start
    memory.record("generate")

    rows = [rows_by_index[i] for i in sorted(rows_by_index)]  # question order
    results = assemble_results(cfg, mode, rows, generator, contexts, memory, timing, len(log.done),
                               len(batches), started)
    results.update(prefill_throughput([token_ids[i] for b in mine for i in batches[b]],
                                      len(shared_prefix(token_ids)), timing))
    if shard >= 0:  # what the merge step checks and orders by
        results.update(shard=shard, shards=shards, plan=fingerprint, question_ids=[q.id for q in questions])
    write_jsonl(output_dir / PREDICTIONS_FILE, rows)
    write_json(output_dir / MEMORY_FILE, memory.to_dict())
    write_json(output_dir / RESULTS_FILE, results)  # last: its presence means the step completed
    log.remove()
    return results

"""The eval stage with a fake generator (tests/helpers.py): outputs, metrics recomputed from the
predictions, the memory log, failures that leave no results, and resume after a crash (a finished batch
is never generated again; another plan's or a torn log line is never reused). The real model:
tests/e2e/test_eval_real.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.core.config import MODES, DatasetConfig
from components.core.errors import UserError
from components.analysis.qa_summary import summarize
from components.core.outputs import MEMORY_FILE, PREDICTIONS_FILE
from components.stages.eval import prefill_throughput, run_eval
from components.core.fileio import read_json, read_jsonl
from components.analysis.metrics import QA_METRICS, mean, normalize_answer
from components.core.outputs import RESULTS_FILE
from components.core.overrides import build_config
from components.stages.resume_log import PARTIAL_FILE
from helpers import FIXTURES, FakeGenerator, Interrupted, question_of

SEED_KEYS = ("token_recall", "num_examples", "model_size_bytes", "model_size_mb", "retriever_index_size_bytes",
             "retriever_index_size_mb", "cpu_ram_used_mb", "gpu_ram_used_mb", "gpu_ram_peak_mb",
             "reserved_gpu_ram_mb", "duration_seconds")
PREDICTION_KEYS = ("id", "question", "answers", "prediction", "context_ids", "context_scores", "context_titles",
                   "context_is_gold", "context_holds_answer", "has_gold_passage", "context_has_answer",
                   "new_tokens", "hit_max_new_tokens", *QA_METRICS)
NUM = 6
RESUME_ARGS = ["experiment.max_samples=8", "generation.batch_size=2"]


def _partial_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line]


def _gold_for_even(demo_ingest_dir: Path):
    """A fake that knows the demo answers of every other question: recall is 0.5 by construction."""
    answers = {q["question"]: q["answers"][0] for q in read_jsonl(demo_ingest_dir / "questions.jsonl")}
    order = list(answers)
    return lambda prompt: (answers[question_of(prompt)] if order.index(question_of(prompt)) % 2 == 0
                           else "no idea")


@pytest.fixture(scope="module")
def mode_runs(demo_ingest_dir, demo_index_dir, tmp_path_factory) -> dict[str, tuple[dict, Path, FakeGenerator]]:
    cfg = build_config([f"experiment.max_samples={NUM}", "generation.batch_size=4"])
    runs = {}
    for mode in MODES:
        out = tmp_path_factory.mktemp(f"eval_{mode}")
        generator = FakeGenerator(answer=_gold_for_even(demo_ingest_dir))
        index = demo_index_dir if mode == "retriever_context" else None
        runs[mode] = (run_eval(cfg, mode, demo_ingest_dir, index, out, generator=generator), out, generator)
    return runs


@pytest.mark.parametrize("mode", MODES)
def test_results_have_seed_keys(mode_runs, mode, demo_index_dir):
    results, out, _ = mode_runs[mode]
    on_disk = read_json(out / RESULTS_FILE)
    for key in SEED_KEYS:
        assert key in on_disk, key
        assert isinstance(on_disk[key], (int, float)) and not isinstance(on_disk[key], bool), key
    assert on_disk["num_examples"] == NUM and on_disk["mode"] == mode and on_disk["backend"] == "fake"
    assert on_disk["model_size_bytes"] == 4096
    assert on_disk["model_size_mb"] == pytest.approx(4096 / 2**20, abs=0.01)
    assert on_disk["cpu_ram_used_mb"] > 0 and on_disk["duration_seconds"] > 0
    assert on_disk["meta"]["config"]["experiment"]["max_samples"] == NUM
    if mode == "retriever_context":
        expected = read_json(demo_index_dir / "index_results.json")["retriever_index_size_bytes"]
        assert on_disk["retriever_index_size_bytes"] == expected > 0
    else:
        assert on_disk["retriever_index_size_bytes"] == 0 and on_disk["retriever_index_size_mb"] == 0
    assert json.loads(json.dumps(results, default=str)) == on_disk
    assert on_disk["precision"] == "float32"  # the generator's, recorded with every result
    # the fixed cost as a process sees it: its age when the eval started, then when the first batch did
    timing = on_disk["timing"]
    assert 0 < timing["process_age_at_eval_seconds"] <= timing["process_age_at_first_batch_seconds"]


def test_prefill_throughput_counts_the_tokens_past_the_shared_head():
    prompts = [[1, 2, 3, 4, 5], [1, 2, 3, 9], [1, 2, 3]]  # a shared head of 3 tokens
    assert prefill_throughput(prompts, 3, {"prefill_seconds": 0.5}) == {
        "prompt_tokens": 12, "shared_prefix_tokens": 3, "prefill_tokens_per_second": 6.0}
    assert prefill_throughput(prompts, 3, {})["prefill_tokens_per_second"] == 0.0  # every batch resumed


@pytest.mark.parametrize("mode", MODES)
def test_metrics_recompute_from_predictions(mode_runs, mode):
    results, out, _ = mode_runs[mode]
    rows = read_jsonl(out / PREDICTIONS_FILE)
    assert len(rows) == NUM
    assert results["token_recall"] == pytest.approx(0.5)  # the fake knows every other answer
    for name, fn in QA_METRICS.items():
        assert results[name] == pytest.approx(mean(fn(r["prediction"], r["answers"]) for r in rows)), name
        for r in rows:
            assert r[name] == pytest.approx(fn(r["prediction"], r["answers"])), (name, r["id"])
    for key, value in summarize(rows, mode).items():
        assert results[key] == (pytest.approx(value) if isinstance(value, float) else value), key


@pytest.mark.parametrize("mode", MODES)
def test_prompts_and_prediction_rows(mode_runs, mode, demo_ingest_dir):
    results, out, generator = mode_runs[mode]
    rows = read_jsonl(out / PREDICTIONS_FILE)
    questions = read_jsonl(demo_ingest_dir / "questions.jsonl")[:NUM]
    assert [r["id"] for r in rows] == [q["id"] for q in questions]  # question (file) order
    passages = {p["id"]: p for p in read_jsonl(demo_ingest_dir / "passages.jsonl")}
    prompts = {question_of(p): p for batch in generator.calls for p in batch}
    assert generator.prepared == 1 and len(prompts) == NUM
    for row, q in zip(rows, questions):
        assert all(key in row for key in PREDICTION_KEYS)
        assert row["question"] == q["question"] and row["answers"] == q["answers"]
        assert len(row["context_scores"]) == len(row["context_ids"])
        prompt = prompts[q["question"]]
        if mode == "no_context":
            assert row["context_ids"] == [] and row["context_has_answer"] is False
            assert "Context:" not in prompt
        elif mode == "oracle_context":
            assert row["context_ids"] == q["gold_passage_ids"] and row["context_ids"]
        else:
            assert len(row["context_ids"]) == 3 and set(row["context_ids"]) <= set(passages)  # top_k
            assert row["context_scores"] == sorted(row["context_scores"], reverse=True)
        for pid in row["context_ids"]:  # the passages shown are the ones recorded
            assert passages[pid]["text"].split(" ")[0] in prompt
        # per passage: its title, whether it is gold, whether it holds an answer string (by hand)
        assert row["context_titles"] == [passages[p]["title"] for p in row["context_ids"]]
        assert row["context_is_gold"] == [p in q["gold_passage_ids"] for p in row["context_ids"]]
        assert row["context_holds_answer"] == [any(normalize_answer(a) in normalize_answer(passages[p]["text"])
                                                   for a in q["answers"]) for p in row["context_ids"]]
        assert row["has_gold_passage"] is bool(q["gold_passage_ids"])
        if any(row["context_holds_answer"]):  # (the joined context may hold one that no single passage holds)
            assert row["context_has_answer"]
    if mode == "oracle_context":
        assert results["context_has_answer_rate"] == 1.0  # every demo gold passage states its answer
        assert results["num_without_context"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_memory_log_and_clean_folder(mode_runs, mode):
    results, out, _ = mode_runs[mode]
    memory = read_json(out / MEMORY_FILE)
    operations = [e["operation"] for e in memory["detailed_log"]]
    assert operations.index("load model") < operations.index("generate")
    for entry in memory["detailed_log"]:
        assert entry["cpu_ram_used_mb"] > 0 and "gpu_ram_used_mb" in entry
    peak = memory["peak_usage"]
    for key in ("cpu_ram_used_mb", "gpu_ram_used_mb", "gpu_ram_peak_mb", "reserved_gpu_ram_mb"):
        assert key in peak
    assert peak["cpu_ram_used_mb"] >= max(e["cpu_ram_used_mb"] for e in memory["detailed_log"])
    assert results["cpu_ram_used_mb"] <= peak["cpu_ram_used_mb"]
    assert sorted(p.name for p in out.iterdir()) == sorted([MEMORY_FILE, PREDICTIONS_FILE, RESULTS_FILE])


def test_failed_eval_leaves_no_results(tmp_path):
    from components.stages.ingest import run_ingest

    ingest = tmp_path / "ingest"
    run_ingest(DatasetConfig(path=str(FIXTURES / "nq_open.jsonl")), ingest)  # NQ-open: no passages
    out = tmp_path / "out"
    out.mkdir()
    for name in (RESULTS_FILE, PREDICTIONS_FILE, MEMORY_FILE):  # an earlier run's outputs
        (out / name).write_text("{}\n")
    cfg = build_config([])
    with pytest.raises(UserError, match="oracle_context"):
        run_eval(cfg, "oracle_context", ingest, None, out, generator=FakeGenerator())
    for name in (RESULTS_FILE, PREDICTIONS_FILE, MEMORY_FILE):
        assert not (out / name).exists(), name
    with pytest.raises(UserError, match="index"):
        run_eval(cfg, "retriever_context", ingest, None, out, generator=FakeGenerator())
    assert not (out / RESULTS_FILE).exists()


# --- resume -------------------------------------------------------------------------------------------

def _interrupted_run(cfg, ingest_dir, out, fail_after=2) -> None:
    with pytest.raises(Interrupted):
        run_eval(cfg, "no_context", ingest_dir, None, out, generator=FakeGenerator(fail_after=fail_after))
    for name in (RESULTS_FILE, PREDICTIONS_FILE, MEMORY_FILE):
        assert not (out / name).exists(), name
    assert len(_partial_lines(out / PARTIAL_FILE)) == 1 + fail_after


def test_resume_generates_only_the_unfinished_batches(demo_ingest_dir, tmp_path):
    cfg = build_config(RESUME_ARGS)
    reference = run_eval(cfg, "no_context", demo_ingest_dir, None, tmp_path / "ref", generator=FakeGenerator())
    assert reference["num_batches"] == 4 and reference["resumed_batches"] == 0

    _interrupted_run(cfg, demo_ingest_dir, tmp_path / "out")
    lines = _partial_lines(tmp_path / "out" / PARTIAL_FILE)
    header = json.loads(lines[0])
    assert header["num_batches"] == 4 and header["plan"]
    assert [json.loads(line)["batch"] for line in lines[1:]] == [0, 1]

    generator = FakeGenerator()
    results = run_eval(cfg, "no_context", demo_ingest_dir, None, tmp_path / "out", generator=generator)
    assert results["resumed_batches"] == 2 and len(generator.calls) == 2
    assert not (tmp_path / "out" / PARTIAL_FILE).exists()
    assert read_jsonl(tmp_path / "out" / PREDICTIONS_FILE) == read_jsonl(tmp_path / "ref" / PREDICTIONS_FILE)


def test_partial_of_another_plan_is_ignored(demo_ingest_dir, tmp_path):
    # a partial written under other generation settings (so another fingerprint) is not reused
    _interrupted_run(build_config(RESUME_ARGS), demo_ingest_dir, tmp_path)
    generator = FakeGenerator()
    results = run_eval(build_config(RESUME_ARGS + ["generation.max_new_tokens=6"]), "no_context",
                       demo_ingest_dir, None, tmp_path, generator=generator)
    assert results["resumed_batches"] == 0 and len(generator.calls) == 4

    # a forged partial: a well-formed line under a wrong plan id, and a header that is not JSON
    stale = [{**r, "prediction": "STALE"} for r in read_jsonl(tmp_path / PREDICTIONS_FILE)[:2]]
    for header in (json.dumps({"plan": "0" * 64, "num_batches": 4}), "not json"):
        (tmp_path / PARTIAL_FILE).write_text(
            header + "\n" + json.dumps({"batch": 0, "rows": stale}) + "\n", encoding="utf-8")
        generator = FakeGenerator()
        results = run_eval(build_config(RESUME_ARGS), "no_context", demo_ingest_dir, None, tmp_path,
                           generator=generator)
        assert results["resumed_batches"] == 0 and len(generator.calls) == 4
        assert all(r["prediction"] != "STALE" for r in read_jsonl(tmp_path / PREDICTIONS_FILE))


def test_torn_last_line_is_ignored(demo_ingest_dir, tmp_path):
    cfg = build_config(RESUME_ARGS)
    _interrupted_run(cfg, demo_ingest_dir, tmp_path)
    partial = tmp_path / PARTIAL_FILE
    intact = partial.read_text(encoding="utf-8")
    torn = json.dumps({"batch": 2, "rows": [{"id": "demo-03", "prediction": "TORN"}]})[:25]
    partial.write_text(intact + torn, encoding="utf-8")  # killed mid-write: no newline, not JSON

    seen_on_restart = []

    class Watching(FakeGenerator):
        def generate(self, *args, **kwargs):
            if not seen_on_restart:  # what the run itself left in the partial before its first new batch
                seen_on_restart.append(partial.read_text(encoding="utf-8"))
            return super().generate(*args, **kwargs)

    generator = Watching()
    results = run_eval(cfg, "no_context", demo_ingest_dir, None, tmp_path, generator=generator)
    assert results["resumed_batches"] == 2 and len(generator.calls) == 2
    assert seen_on_restart == [intact]  # the torn tail was dropped before appending
    rows = read_jsonl(tmp_path / PREDICTIONS_FILE)
    assert len(rows) == 8 and all(r["prediction"] != "TORN" for r in rows)
    assert [r["id"] for r in rows] == [f"demo-{i:02d}" for i in range(1, 9)]
    resumed_rows = [row for line in intact.splitlines()[1:] for row in json.loads(line)["rows"]]
    by_id = {r["id"]: r for r in rows}
    assert len(resumed_rows) == 4 and all(by_id[r["id"]] == r for r in resumed_rows)


def test_progress_is_kept_after_each_new_batch_and_a_copy_elsewhere_resumes(demo_ingest_dir, tmp_path):
    """What an agent uploads as the run grows (keep_progress) is enough for another machine to resume from."""
    cfg = build_config(RESUME_ARGS)
    kept = []

    def keep(path, done, total):  # an agent uploads the file here; keep a copy as the server would
        kept.append((done, total, path.name, path.read_bytes()))

    with pytest.raises(Interrupted):
        run_eval(cfg, "no_context", demo_ingest_dir, None, tmp_path / "a", generator=FakeGenerator(fail_after=2),
                 keep_progress=keep)
    assert [(d, t, n) for d, t, n, _ in kept] == [(1, 4, PARTIAL_FILE), (2, 4, PARTIAL_FILE)]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / PARTIAL_FILE).write_bytes(kept[-1][3])  # the next attempt, on another disk
    kept.clear()
    generator = FakeGenerator()
    results = run_eval(cfg, "no_context", demo_ingest_dir, None, tmp_path / "b", generator=generator,
                       keep_progress=keep)
    assert results["resumed_batches"] == 2 and len(generator.calls) == 2
    assert [(d, t) for d, t, _, _ in kept] == [(3, 4), (4, 4)]  # only new batches are kept
    reference = run_eval(cfg, "no_context", demo_ingest_dir, None, tmp_path / "ref", generator=FakeGenerator())
    assert reference["resumed_batches"] == 0
    assert (tmp_path / "b" / PREDICTIONS_FILE).read_bytes() == (tmp_path / "ref" / PREDICTIONS_FILE).read_bytes()

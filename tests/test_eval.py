"""The eval stage end to end with the real embedded model (smollm2_135m_gguf): outputs, metrics, memory
log, and resume after a failure or a real `kill -9`.

Question subset: the mode tests score demo-09..demo-14 (the demo questions from index 8 on, with
`experiment.max_samples=6`), chosen deliberately: on demo-01..06 the closed-book model already answers
all six (token recall 1.0 in every mode), so "oracle context beats no context" could not be seen there;
on 09..14 it misses two planets closed-book and gets all six with the gold passage. The passage corpus
is the whole demo corpus either way.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import components.evaluation as evaluation
from components.config import MODES, DatasetConfig
from components.errors import UserError
from components.evaluation import (MEMORY_FILE, PARTIAL_FILE, PREDICTIONS_FILE, RESULTS_FILE, run_eval,
                                   shared_model, summarize)
from components.fileio import read_json, read_jsonl
from components.generation import Generated
from components.metrics import QA_METRICS, mean, token_recall
from components.overrides import build_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SLM = ROOT / ".venv" / "bin" / "slm"
FIXTURES = Path(__file__).parent / "fixtures"
SEED_KEYS = ("token_recall", "num_examples", "model_size_bytes", "model_size_mb", "retriever_index_size_bytes",
             "retriever_index_size_mb", "cpu_ram_used_mb", "gpu_ram_used_mb", "gpu_ram_peak_mb",
             "reserved_gpu_ram_mb", "duration_seconds")
PREDICTION_KEYS = ("id", "question", "answers", "prediction", "context_ids", "context_scores",
                   "context_has_answer", "new_tokens", "hit_max_new_tokens", *QA_METRICS)
SUBSET_START = 8  # demo-09: see the module docstring
NUM = 6


def _partial_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line]


@pytest.fixture(scope="module")
def lm():
    return shared_model(build_config([]))  # the process-wide model cache: loaded once for all tests


@pytest.fixture(scope="module")
def subset_ingest_dir(demo_ingest_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("subset_ingest")
    shutil.copy(demo_ingest_dir / "passages.jsonl", out / "passages.jsonl")
    lines = (demo_ingest_dir / "questions.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (out / "questions.jsonl").write_text("".join(lines[SUBSET_START:]), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def mode_runs(lm, subset_ingest_dir, demo_index_dir, tmp_path_factory) -> dict[str, tuple[dict, Path]]:
    cfg = build_config([f"experiment.max_samples={NUM}"])
    runs = {}
    for mode in MODES:
        out = tmp_path_factory.mktemp(f"eval_{mode}")
        index = demo_index_dir if mode == "retriever_context" else None
        started = time.perf_counter()
        results = run_eval(cfg, mode, subset_ingest_dir, index, out)
        print(f"{mode}: {time.perf_counter() - started:.1f} s, token_recall {results['token_recall']:.3f}")
        runs[mode] = (results, out)
    return runs


@pytest.mark.parametrize("mode", MODES)
def test_results_have_seed_keys(mode_runs, mode, demo_index_dir):
    results, out = mode_runs[mode]
    on_disk = read_json(out / RESULTS_FILE)
    for key in SEED_KEYS:
        assert key in on_disk, key
        assert isinstance(on_disk[key], (int, float)) and not isinstance(on_disk[key], bool), key
    assert on_disk["num_examples"] == NUM
    assert on_disk["mode"] == mode
    assert on_disk["model_size_bytes"] > 0
    assert on_disk["model_size_mb"] == pytest.approx(on_disk["model_size_bytes"] / 2**20, abs=0.01)
    assert on_disk["cpu_ram_used_mb"] > 0
    assert on_disk["duration_seconds"] > 0
    assert on_disk["meta"]["config"]["experiment"]["max_samples"] == NUM
    if mode == "retriever_context":
        expected = read_json(demo_index_dir / "index_results.json")["retriever_index_size_bytes"]
        assert on_disk["retriever_index_size_bytes"] == expected > 0
        assert on_disk["retriever_index_size_mb"] == pytest.approx(expected / 2**20, abs=0.001)
    else:
        assert on_disk["retriever_index_size_bytes"] == 0
        assert on_disk["retriever_index_size_mb"] == 0
    assert json.loads(json.dumps(results, default=str)) == on_disk


@pytest.mark.parametrize("mode", MODES)
def test_metrics_recompute_from_predictions(mode_runs, mode):
    results, out = mode_runs[mode]
    rows = read_jsonl(out / PREDICTIONS_FILE)
    assert len(rows) == NUM
    recomputed = sum(token_recall(r["prediction"], r["answers"]) for r in rows) / len(rows)
    assert results["token_recall"] == pytest.approx(recomputed)
    for name, fn in QA_METRICS.items():
        assert results[name] == pytest.approx(mean(fn(r["prediction"], r["answers"]) for r in rows)), name
        for r in rows:
            assert r[name] == pytest.approx(fn(r["prediction"], r["answers"])), (name, r["id"])
    summary = summarize(rows, mode)
    for key, value in summary.items():
        assert results[key] == (pytest.approx(value) if isinstance(value, float) else value), key


@pytest.mark.parametrize("mode", MODES)
def test_predictions_rows(mode_runs, mode, subset_ingest_dir, demo_ingest_dir):
    results, out = mode_runs[mode]
    rows = read_jsonl(out / PREDICTIONS_FILE)
    questions = read_jsonl(subset_ingest_dir / "questions.jsonl")[:NUM]
    assert [r["id"] for r in rows] == [q["id"] for q in questions]  # question (file) order
    corpus = {p["id"] for p in read_jsonl(demo_ingest_dir / "passages.jsonl")}
    for row, q in zip(rows, questions):
        for key in PREDICTION_KEYS:
            assert key in row, key
        assert row["question"] == q["question"] and row["answers"] == q["answers"]
        assert isinstance(row["prediction"], str) and "\n" not in row["prediction"]  # cut at the stop string
        assert 0 < row["new_tokens"] <= 32
        assert len(row["context_scores"]) == len(row["context_ids"])
        if mode == "no_context":
            assert row["context_ids"] == [] and row["context_has_answer"] is False
        elif mode == "oracle_context":
            assert row["context_ids"] == q["gold_passage_ids"] and row["context_ids"]
        else:
            assert len(row["context_ids"]) == 3  # retriever.top_k
            assert set(row["context_ids"]) <= corpus
            assert row["context_scores"] == sorted(row["context_scores"], reverse=True)
    if mode == "oracle_context":
        assert results["context_has_answer_rate"] == 1.0  # every demo gold passage states its answer
        assert results["num_without_context"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_memory_log_and_clean_folder(mode_runs, mode):
    results, out = mode_runs[mode]
    memory = read_json(out / MEMORY_FILE)
    operations = [e["operation"] for e in memory["detailed_log"]]
    for op in ("load model", "generate"):
        assert op in operations
    assert operations.index("load model") < operations.index("generate")
    for entry in memory["detailed_log"]:
        assert entry["cpu_ram_used_mb"] > 0 and "gpu_ram_used_mb" in entry
    peak = memory["peak_usage"]
    for key in ("cpu_ram_used_mb", "gpu_ram_used_mb", "gpu_ram_peak_mb", "reserved_gpu_ram_mb"):
        assert key in peak
    assert peak["cpu_ram_used_mb"] >= max(e["cpu_ram_used_mb"] for e in memory["detailed_log"])
    assert results["cpu_ram_used_mb"] <= peak["cpu_ram_used_mb"]
    assert not (out / PARTIAL_FILE).exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([MEMORY_FILE, PREDICTIONS_FILE, RESULTS_FILE])


def test_oracle_context_beats_no_context(mode_runs):
    closed = mode_runs["no_context"][0]["token_recall"]
    oracle = mode_runs["oracle_context"][0]["token_recall"]
    print(f"token_recall no_context {closed:.3f}, oracle_context {oracle:.3f}, "
          f"retriever_context {mode_runs['retriever_context'][0]['token_recall']:.3f}")
    assert oracle >= closed
    assert oracle > closed, "the subset was chosen so that the gold passage helps (see module docstring)"


# --- failures leave no results ---------------------------------------------------------------------

def test_failed_eval_leaves_no_results(tmp_path):
    ingest = tmp_path / "ingest"
    from components.ingest import run_ingest

    run_ingest(DatasetConfig(path=str(FIXTURES / "nq_open.jsonl")), ingest)  # NQ-open: no passages
    out = tmp_path / "out"
    out.mkdir()
    for name in (RESULTS_FILE, PREDICTIONS_FILE, MEMORY_FILE):  # an earlier run's outputs
        (out / name).write_text("{}\n")
    cfg = build_config([])
    with pytest.raises(UserError, match="oracle_context"):
        run_eval(cfg, "oracle_context", ingest, None, out)
    for name in (RESULTS_FILE, PREDICTIONS_FILE, MEMORY_FILE):
        assert not (out / name).exists(), name
    with pytest.raises(UserError, match="index"):
        run_eval(cfg, "retriever_context", ingest, None, out)
    assert not (out / RESULTS_FILE).exists()


# --- resume -----------------------------------------------------------------------------------------

RESUME_ARGS = ["experiment.max_samples=8", "generation.batch_size=2", "generation.max_new_tokens=8"]


class _Interrupted(RuntimeError):
    pass


def _generator_name() -> str:
    """The batch generator run_eval calls (by prompt text or, with the prefix-cache decoder, token ids)."""
    for name in ("generate_token_batch", "generate_batch"):
        if callable(getattr(evaluation, name, None)):
            return name
    raise AssertionError("components.evaluation calls no known batch generator")


def _patch_generator(monkeypatch, fn) -> None:
    monkeypatch.setattr(evaluation, _generator_name(), fn)


def _counting(fn, fail_after: int | None = None):
    """Wrap a batch generator: count calls, optionally raise on the call after `fail_after` calls."""
    calls = []

    def wrapper(model, tokenizer, prompts, *args, **kwargs):
        if fail_after is not None and len(calls) >= fail_after:
            raise _Interrupted("simulated kill")
        calls.append(list(prompts))
        return fn(model, tokenizer, prompts, *args, **kwargs)

    return wrapper, calls


def _fake_generate(model, tokenizer, prompts, *args, **kwargs):
    """Deterministic stand-in for the model: the answer depends only on the prompt (text or ids)."""
    return [Generated(text="fake " + hashlib.sha1(repr(p).encode()).hexdigest()[:8], new_tokens=3,
                      hit_max_new_tokens=False, seconds=0.0) for p in prompts]


@pytest.fixture(scope="module")
def uninterrupted(lm, demo_ingest_dir, tmp_path_factory) -> tuple[dict, list[dict]]:
    out = tmp_path_factory.mktemp("uninterrupted")
    results = run_eval(build_config(RESUME_ARGS), "no_context", demo_ingest_dir, None, out)
    assert results["num_batches"] == 4 and results["resumed_batches"] == 0
    return results, read_jsonl(out / PREDICTIONS_FILE)


def test_resume_after_failure_is_identical(uninterrupted, demo_ingest_dir, tmp_path, monkeypatch):
    cfg = build_config(RESUME_ARGS)
    real = getattr(evaluation, _generator_name())
    failing, _ = _counting(real, fail_after=2)
    _patch_generator(monkeypatch, failing)
    with pytest.raises(_Interrupted):
        run_eval(cfg, "no_context", demo_ingest_dir, None, tmp_path)
    for name in (RESULTS_FILE, PREDICTIONS_FILE, MEMORY_FILE):
        assert not (tmp_path / name).exists(), name
    lines = _partial_lines(tmp_path / PARTIAL_FILE)
    assert len(lines) == 3  # header + 2 finished batches
    header = json.loads(lines[0])
    assert header["num_batches"] == 4 and header["plan"]
    assert [json.loads(line)["batch"] for line in lines[1:]] == [0, 1]

    counting, calls = _counting(real)
    _patch_generator(monkeypatch, counting)
    results = run_eval(cfg, "no_context", demo_ingest_dir, None, tmp_path)
    assert results["resumed_batches"] == 2
    assert len(calls) == 2  # only the two unfinished batches were generated
    assert not (tmp_path / PARTIAL_FILE).exists()
    rows = read_jsonl(tmp_path / PREDICTIONS_FILE)
    assert rows == uninterrupted[1]
    for key in QA_METRICS:
        assert results[key] == pytest.approx(uninterrupted[0][key])


def _interrupted_fake_run(cfg, ingest_dir, out, monkeypatch, fail_after=2):
    failing, _ = _counting(_fake_generate, fail_after=fail_after)
    _patch_generator(monkeypatch, failing)
    with pytest.raises(_Interrupted):
        run_eval(cfg, "no_context", ingest_dir, None, out)
    assert len(_partial_lines(out / PARTIAL_FILE)) == 1 + fail_after


def test_partial_of_another_plan_is_ignored(lm, demo_ingest_dir, tmp_path, monkeypatch):
    # a partial written under other generation settings (so another fingerprint) is not reused
    _interrupted_fake_run(build_config(RESUME_ARGS), demo_ingest_dir, tmp_path, monkeypatch)
    counting, calls = _counting(_fake_generate)
    _patch_generator(monkeypatch, counting)
    results = run_eval(build_config(RESUME_ARGS + ["generation.max_new_tokens=6"]), "no_context",
                       demo_ingest_dir, None, tmp_path)
    assert results["resumed_batches"] == 0 and len(calls) == 4

    # a forged partial: a well-formed line under a wrong plan id, and a header that is not JSON
    good_rows = read_jsonl(tmp_path / PREDICTIONS_FILE)[:2]
    stale = [{**r, "prediction": "STALE"} for r in good_rows]
    for header in (json.dumps({"plan": "0" * 64, "num_batches": 4}), "not json"):
        (tmp_path / PARTIAL_FILE).write_text(
            header + "\n" + json.dumps({"batch": 0, "rows": stale}) + "\n", encoding="utf-8")
        counting, calls = _counting(_fake_generate)
        _patch_generator(monkeypatch, counting)
        results = run_eval(build_config(RESUME_ARGS), "no_context", demo_ingest_dir, None, tmp_path)
        assert results["resumed_batches"] == 0 and len(calls) == 4
        assert all(r["prediction"] != "STALE" for r in read_jsonl(tmp_path / PREDICTIONS_FILE))


def test_torn_last_line_is_ignored(lm, demo_ingest_dir, tmp_path, monkeypatch):
    cfg = build_config(RESUME_ARGS)
    _interrupted_fake_run(cfg, demo_ingest_dir, tmp_path, monkeypatch)
    partial = tmp_path / PARTIAL_FILE
    intact = partial.read_text(encoding="utf-8")
    torn = json.dumps({"batch": 2, "rows": [{"id": "demo-03", "prediction": "TORN"}]})[:25]
    partial.write_text(intact + torn, encoding="utf-8")  # killed mid-write: no newline, not JSON

    seen_on_restart = []

    def fake(*args, **kwargs):
        if not seen_on_restart:  # what the run itself left in the partial before its first new batch
            seen_on_restart.append(partial.read_text(encoding="utf-8"))
        return _fake_generate(*args, **kwargs)

    counting, calls = _counting(fake)
    _patch_generator(monkeypatch, counting)
    results = run_eval(cfg, "no_context", demo_ingest_dir, None, tmp_path)
    assert results["resumed_batches"] == 2 and len(calls) == 2
    assert seen_on_restart == [intact]  # the torn tail was dropped before appending
    rows = read_jsonl(tmp_path / PREDICTIONS_FILE)
    assert len(rows) == 8 and all(r["prediction"] != "TORN" for r in rows)
    assert [r["id"] for r in rows] == [f"demo-{i:02d}" for i in range(1, 9)]
    resumed_rows = [row for line in intact.splitlines()[1:] for row in json.loads(line)["rows"]]
    assert len(resumed_rows) == 4
    by_id = {r["id"]: r for r in rows}
    assert all(by_id[r["id"]] == r for r in resumed_rows)  # the finished batches were taken as written


# --- a real kill -9 of `slm eval` ------------------------------------------------------------------

KILL_ARGS = ["experiment.max_samples=12", "generation.batch_size=2", "generation.max_new_tokens=8"]


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _slm_eval(out: Path, log: Path) -> subprocess.Popen:
    cmd = [str(SLM), "eval", "--no-clearml", *KILL_ARGS, f"experiment.output_dir={out}"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait(proc: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    return text


def test_kill_9_then_rerun_matches_uninterrupted(tmp_path):
    killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
    reference = _slm_eval(reference_dir, tmp_path / "reference.log")  # runs alongside, never interrupted
    victim = _slm_eval(killed_dir, tmp_path / "killed.log")
    partial = killed_dir / PARTIAL_FILE
    deadline = time.monotonic() + 300
    try:
        while True:
            if partial.is_file() and len(_partial_lines(partial)) >= 3:  # header + 2 batches
                os.kill(victim.pid, signal.SIGKILL)
                break
            assert victim.poll() is None, "slm eval ended before it could be killed:\n" + (
                tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no progress in predictions.partial.jsonl"
            time.sleep(0.02)
        victim.wait(timeout=30)
        assert victim.returncode == -signal.SIGKILL
        assert not (killed_dir / RESULTS_FILE).exists()
        assert not (killed_dir / PREDICTIONS_FILE).exists()
        assert not (killed_dir / ".step.json").exists()  # the eval step is not marked done
        done_at_kill = sum(1 for line in _partial_lines(partial)[1:] if _is_json(line))  # intact batches
        assert done_at_kill >= 2

        rerun_log = tmp_path / "rerun.log"
        rerun_text = _wait(_slm_eval(killed_dir, rerun_log), rerun_log)
        reference_text = _wait(reference, tmp_path / "reference.log")
    finally:
        for proc in (victim, reference):
            if proc.poll() is None:
                proc.kill()
    assert "[ingest] unchanged since the last run: cached" in rerun_text
    assert "[eval] running eval" in rerun_text
    resumed = read_json(killed_dir / RESULTS_FILE)
    assert resumed["resumed_batches"] == done_at_kill >= 2
    assert resumed["num_batches"] == 6
    assert read_json(reference_dir / RESULTS_FILE)["resumed_batches"] == 0
    assert "[eval] running eval" in reference_text
    killed_rows = read_jsonl(killed_dir / PREDICTIONS_FILE)
    reference_rows = read_jsonl(reference_dir / PREDICTIONS_FILE)
    assert len(killed_rows) == 12
    assert killed_rows == reference_rows
    assert not partial.exists()

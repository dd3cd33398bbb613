"""A grid on the real model, as the issue's done-criterion runs it (smaller: 12 questions, 3 batches):
`slm run -m retriever.top_k=1,3 experiment.shards=2 ...` ends with a leaderboard whose cells are the
steps' results, each with a CI; the merged shards equal the unsharded evals byte for byte; a second run
runs nothing; adding top_k=5 runs only its steps; the HTML report renders in headless Chromium."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess

import pytest

from components.core.fileio import read_json
from helpers import ROOT, SLM

COMMON = ["experiment.max_samples=12", "generation.batch_size=4", "generation.max_new_tokens=8",
          "experiment.modes=[no_context,retriever_context]", "--skip", "finetune", "benchmark", "--no-clearml"]
EVALS = ("eval_no_context", "eval_retriever_context__top_k-1", "eval_retriever_context__top_k-3")


def slm_run(out, *tokens: str) -> str:
    proc = subprocess.run([str(SLM), "run", "-m", f"experiment.output_dir={out}", *tokens, *COMMON], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    first = slm_run(root / "sharded", "retriever.top_k=1,3", "experiment.shards=2")
    unsharded = slm_run(root / "unsharded", "retriever.top_k=1,3")
    return root, first, unsharded


def test_merged_shards_equal_the_unsharded_evals(grid):
    root = grid[0]
    for name in EVALS:
        sharded, whole = root / "sharded" / name, root / "unsharded" / name
        assert (sharded / "predictions.jsonl").read_bytes() == (whole / "predictions.jsonl").read_bytes(), name
        a, b = read_json(sharded / "results.json"), read_json(whole / "results.json")
        for key in ("token_recall", "token_f1", "exact_match", "substring_match", "legacy_token_recall",
                    "token_recall_ci_low", "token_recall_ci_high", "num_examples", "share_hit_max_new_tokens"):
            assert a[key] == b[key], (name, key)
        base, _, axes = name.partition("__")  # eval_retriever_context__top_k-1 -> ..._shard-0of2__top_k-1
        shards = [read_json(root / "sharded" / (f"{base}__shard-{i}of2" + (f"__{axes}" if axes else ""))
                            / "results.json") for i in range(2)]
        assert [s["num_examples"] for s in shards] == [8, 4]  # batches 0 and 2, then batch 1


def test_the_run_ends_with_a_leaderboard_of_the_step_results(grid):
    root, stdout, _ = grid
    assert "# Leaderboard: token_recall" in stdout
    report = root / "sharded" / "report"
    rows = {r["system"]: r for r in csv.DictReader((report / "leaderboard.csv").open())}
    assert set(rows) == {"smollm2_135m_gguf @ demo (top_k=1)", "smollm2_135m_gguf @ demo (top_k=3)"}
    for k in (1, 3):
        row = rows[f"smollm2_135m_gguf @ demo (top_k={k})"]
        for mode, step in (("no_context", "eval_no_context"), ("retriever_context", f"eval_retriever_context__top_k-{k}")):
            results = read_json(root / "sharded" / step / "results.json")
            assert float(row[f"{mode}:token_recall"]) == results["token_recall"]
            assert float(row[f"{mode}:token_recall_ci_low"]) == results["token_recall_ci_low"]
            assert float(row[f"{mode}:token_recall_ci_high"]) == results["token_recall_ci_high"]
    board = json.loads((report / "leaderboard.json").read_text())
    assert all("retriever_context - no_context" in r["differences"] for r in board["rows"])
    assert (report / "leaderboard.md").read_text().count("**") >= 2 and (report / "report.html").is_file()


def test_a_second_run_runs_nothing_and_a_new_value_only_its_steps(grid):
    root = grid[0]
    again = slm_run(root / "sharded", "retriever.top_k=1,3", "experiment.shards=2")
    assert " running " not in again and again.count("unchanged since the last run") == 12
    more = slm_run(root / "sharded", "retriever.top_k=1,3,5", "experiment.shards=2")
    ran = sorted(line.split("]")[0][1:] for line in more.splitlines() if "] running " in line)
    assert ran == ["eval_retriever_context__shard-0of2__top_k-5", "eval_retriever_context__shard-1of2__top_k-5",
                   "eval_retriever_context__top_k-5", "report"]


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _render(page, tmp_path) -> tuple[str, str]:
    """The DOM after load, and the browser's log, from a real headless Chromium."""
    proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}", "--enable-logging=stderr",
                           "--v=0", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def test_the_html_report_renders_in_headless_chromium(grid, tmp_path):
    if not _chromium():
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium; apt-get install chromium)")
    page = grid[0] / "sharded" / "report" / "report.html"
    dom, log = _render(page, tmp_path)
    assert 'id="leaderboard"' in dom and "smollm2_135m_gguf @ demo (top_k=1)" in dom
    assert 'data-images-ok="3/3"' in dom  # every plot decoded
    assert "CONSOLE" not in log, [line for line in log.splitlines() if "CONSOLE" in line]
    broken = tmp_path / "broken.html"  # the check is real: a corrupt plot is seen
    broken.write_text(page.read_text().replace("base64,iVBOR", "base64,AAAA", 1))
    assert 'data-images-ok="2/3"' in _render(broken, tmp_path)[0]

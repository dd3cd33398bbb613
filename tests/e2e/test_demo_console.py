"""`make demo`'s console as a log file (or a ClearML agent) sees it: not a terminal.

The demo's command (`slm run experiment.name=demo`, the console code `make demo` runs) on 4 questions, 2
training steps and 2 benchmark questions, offline, in a fresh model cache so that the GGUF conversion's
progress shows too; stdout and stderr into one file, under umask 022. Then: no carriage-return bar line,
no Warning/ERROR line, Trainer logs as readable lines, one line per step naming its ClearML offline
session, a summary without a wall of `-`, and result files that others can read.
"""
from __future__ import annotations

import os
import re
import stat
import subprocess

import pytest

from helpers import SLM

SMALL = ["experiment.max_samples=4", "finetune.max_steps=2", "finetune.logging_steps=1", "benchmark.max_samples=2"]
TERMINAL_WIDTH = 120  # a progress line must fit a (wide) terminal line, as it would in one


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    out, log = tmp / "outputs", tmp / "demo.log"
    env = {**os.environ, "SLM_CACHE_DIR": str(tmp / "cache"), "CLEARML_CACHE_DIR": str(tmp / "clearml")}
    env.pop("COLUMNS", None)
    with open(log, "w") as f:
        proc = subprocess.run([str(SLM), "run", "experiment.name=demo", f"experiment.output_dir={out}", *SMALL,
                               "--offline"], cwd=tmp, env=env, stdout=f, stderr=subprocess.STDOUT,
                              preexec_fn=lambda: os.umask(0o022), timeout=900)
    text = log.read_text(encoding="utf-8")
    assert proc.returncode == 0, text[-3000:]
    return out, text


def test_progress_is_lines_not_carriage_returns(demo):
    _, text = demo
    assert "\r" not in text
    bars = [line for line in text.splitlines() if re.search(r"\| *\d+/\d+ \[", line)]
    assert any(line.startswith("Converting and de-quantizing GGUF tensors") for line in bars)  # transformers'
    for desc in ("eval no_context", "eval oracle_context", "eval retriever_context", "benchmark base",
                 "benchmark tuned", "finetune"):
        mine = [line for line in bars if line.startswith(desc + ":")]
        assert mine and " 100%|" in mine[-1], desc  # one bar per phase, ending on its final state
    assert [line for line in bars if len(line) > TERMINAL_WIDTH] == []


def test_no_warning_or_error_lines(demo):
    _, text = demo
    assert [line for line in text.splitlines() if re.search(r"Warning|ERROR|Traceback", line)] == []


def test_trainer_logs_are_readable_lines(demo):
    _, text = demo
    assert "{'loss'" not in text and "'grad_norm'" not in text  # the Trainer's raw dicts
    steps = [line for line in text.splitlines() if re.match(r"step \d+/", line)]
    train = [line for line in steps if "eval_loss" not in line]
    assert len(train) == 2, steps  # logging_steps=1
    assert re.fullmatch(r"step 2/2  epoch \S+  loss \d+\.\d{4}  lr \S+  grad_norm \S+  tokens/s [\d,]+  "
                        r"peak RAM MB [\d,]+", train[-1]), train[-1]
    (held_out,) = [line for line in steps if "eval_loss" in line]  # the Trainer evaluates at the last step
    assert re.fullmatch(r"step 2/2  eval_loss \d+\.\d{4}", held_out), held_out
    assert re.search(r"^trained 2 steps in \d+\.\d s, mean loss \d+\.\d{4}$", text, re.MULTILINE)


def test_one_line_per_step_says_where_its_clearml_session_went(demo):
    _, text = demo
    assert "ClearML Task: created new task" not in text and "ClearML running in offline mode" not in text
    assert "ClearML Task: Offline session stored" not in text
    done = re.findall(r"^\[(\S+)\] done in \d+\.\d s; ClearML offline session (\S+\.zip)$", text, re.MULTILINE)
    assert [step for step, _ in done] == ["ingest", "index", "eval_no_context", "eval_oracle_context",
                                          "eval_retriever_context", "finetune", "benchmark", "report"]
    assert all(os.path.isfile(zip_path) for _, zip_path in done)


def test_the_summary_reads_as_numbers(demo):
    _, text = demo
    start = re.search(r"^step +status +seconds +results$", text, re.MULTILINE).start()
    table = text[start:].split("\n\n")[0].splitlines()
    assert table[0].split() == ["step", "status", "seconds", "results"]
    assert len(table) == 9
    for line in table[1:]:
        assert re.fullmatch(r"\d+\.\d", line.split()[2]), line  # seconds to a tenth
        assert " - " not in line and not re.search(r"\d\.\d{4}\b", line), line


def test_result_files_are_readable_by_group_and_others(demo):
    out, _ = demo
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"results.json", "predictions.jsonl", "summary.txt", "report.html"} <= {p.name for p in files}
    unreadable = [str(p.relative_to(out)) for p in files if stat.S_IMODE(p.stat().st_mode) & 0o044 != 0o044]
    assert unreadable == []
    folders = [p for p in [out, *out.rglob("*")] if p.is_dir()]
    assert [str(p) for p in folders if stat.S_IMODE(p.stat().st_mode) & 0o055 != 0o055] == []

"""`slm report --compare A B` on two fake-generator runs that differ in one setting: the config difference,
each shared cell's paired difference, and the questions gained and lost checked against the predictions
files by hand; bad input is one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.core.fileio import read_jsonl
from components.core.overrides import build_config
from components.stages.eval import run_eval
from helpers import FakeGenerator, question_of
from pipelines import cli

NUM = 12


@pytest.fixture(scope="module")
def two_runs(demo_ingest_dir, demo_index_dir, tmp_path_factory) -> tuple[Path, Path]:
    """Run A knows the answers of even questions, run B of every third; B differs in max_new_tokens."""
    answers = {q["question"]: q["answers"][0] for q in read_jsonl(demo_ingest_dir / "questions.jsonl")}
    order = list(answers)

    def knows(keep):
        return lambda p: answers[question_of(p)] if keep(order.index(question_of(p))) else "no idea"

    root = tmp_path_factory.mktemp("runs")
    for name, keep, tokens in (("a", lambda i: i % 2 == 0, 32), ("b", lambda i: i % 3 == 0, 8)):
        cfg = build_config([f"experiment.max_samples={NUM}", f"generation.max_new_tokens={tokens}",
                            f"experiment.name=run_{name}"])
        for mode in ("no_context", "retriever_context"):
            run_eval(cfg, mode, demo_ingest_dir, demo_index_dir if mode == "retriever_context" else None,
                     root / name / f"eval_{mode}", generator=FakeGenerator(answer=knows(keep)))
    return root / "a", root / "b"


def by_hand(a_dir: Path, b_dir: Path) -> tuple[list[str], list[str]]:
    """Gained (wrong in A, right in B) and lost, from the two predictions files: right = recall >= 0.5."""
    a = {r["id"]: r for r in read_jsonl(a_dir / "predictions.jsonl")}
    b = {r["id"]: r for r in read_jsonl(b_dir / "predictions.jsonl")}
    gained = [q for q in a if a[q]["token_recall"] < 0.5 <= b[q]["token_recall"]]
    lost = [q for q in a if b[q]["token_recall"] < 0.5 <= a[q]["token_recall"]]
    return gained, lost


def test_compare_prints_and_writes_the_diff(two_runs, tmp_path, capsys):
    a, b = two_runs
    assert cli.main(["report", "--compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert "| generation.max_new_tokens | 32 | 8 |" in printed and f"A = {a}" in printed
    diff = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert set(diff["config_difference"]) == {"generation.max_new_tokens"}  # the run names are bookkeeping
    assert [c["mode"] for c in diff["cells"]] == ["no_context", "retriever_context"]
    for cell in diff["cells"]:
        gained, lost = by_hand(a / f"eval_{cell['mode']}", b / f"eval_{cell['mode']}")
        # the fakes: A right on even questions, B on every third (of 12: gained 3 and 9, lost 2, 4, 8, 10)
        assert [q["id"] for q in cell["gained"]] == gained and len(gained) == 2
        assert [q["id"] for q in cell["lost"]] == lost and len(lost) == 4
        assert cell["n"] == NUM and cell["difference"]["n"] == NUM
        assert cell["difference"]["mean"] == pytest.approx(cell["b_mean"] - cell["a_mean"], abs=1e-6)
        assert cell["difference"]["ci_low"] <= cell["difference"]["mean"] <= cell["difference"]["ci_high"]
        first = cell["gained"][0]
        assert first["a"] == "no idea" and first["b"] in first["answers"]  # both answers, side by side
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert 'id="config-diff"' in page and "http" not in page
    assert (tmp_path / "cmp" / "compare.md").read_text().count("- `demo-") == 2 * (2 + 4)


def test_compare_bad_input_is_one_line(two_runs, tmp_path, capsys):
    a, _ = two_runs
    assert cli.main(["report", "--compare", str(a), str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nothing" in err
    (tmp_path / "empty").mkdir()
    assert cli.main(["report", "--compare", str(a), str(tmp_path / "empty")]) == 2
    assert "no finished eval under" in capsys.readouterr().err
    assert cli.main(["report", str(a), "--compare", str(a), str(a)]) == 2
    assert "--compare takes its two runs itself" in capsys.readouterr().err

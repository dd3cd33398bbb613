"""Ingest: the written files, the deterministic split, and nothing left behind on failure."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from components.core.config import DatasetConfig
from components.core.errors import UserError
from components.stages.ingest import choose_test_ids, run_ingest
from components.data.schema import (INGEST_MANIFEST, PASSAGES_FILE, QUESTIONS_FILE, TEST_FILE, TRAIN_FILE,
                               Passage, Question)
from components.data.sources import BUILTIN_DATASETS

from helpers import FIXTURES, SHARED_DATA
OUTPUT_FILES = {QUESTIONS_FILE, PASSAGES_FILE, TRAIN_FILE, TEST_FILE, INGEST_MANIFEST}


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def ingest(tmp_path: Path, path: str, **fields) -> tuple[dict, Path]:
    out = tmp_path / "out"
    return run_ingest(DatasetConfig(path=path, **fields), out, cache_dir=tmp_path / "cache"), out


def test_demo_dataset_end_to_end(tmp_path):
    manifest, out = ingest(tmp_path, "builtin:demo")
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES
    assert manifest == json.loads((out / INGEST_MANIFEST).read_text())
    assert manifest == {"format": "normalized", "source": "builtin:demo", "num_questions": 42,
                        "num_passages": 66, "num_train": 34, "num_test": 8, "num_questions_with_gold": 42,
                        "test_fraction": 0.2, "split_seed": 0}
    questions = [Question.from_dict(d) for d in read_lines(out / QUESTIONS_FILE)]
    passages = [Passage.from_dict(d) for d in read_lines(out / PASSAGES_FILE)]
    assert [q.id for q in questions] == [f"demo-{i:02d}" for i in range(1, 43)]  # file order
    assert len({p.id for p in passages}) == len(passages) == 66
    passage_text = {p.id: p.text for p in passages}
    for q in questions:  # every gold passage is in the corpus and states an answer
        (gold,) = q.gold_passage_ids
        assert any(a.lower() in passage_text[gold].lower() for a in q.answers)


def test_split_is_disjoint_covering_and_in_file_order(tmp_path):
    _, out = ingest(tmp_path, "builtin:demo", test_fraction=0.3, split_seed=5)
    all_rows = read_lines(out / QUESTIONS_FILE)
    train, test = read_lines(out / TRAIN_FILE), read_lines(out / TEST_FILE)
    train_ids, test_ids = {q["id"] for q in train}, {q["id"] for q in test}
    assert not train_ids & test_ids
    assert train_ids | test_ids == {q["id"] for q in all_rows}
    assert len(test) == round(42 * 0.3)
    assert train == [q for q in all_rows if q["id"] in train_ids]  # same rows, same order
    assert test == [q for q in all_rows if q["id"] in test_ids]


def test_split_is_deterministic_and_independent_of_file_order(tmp_path):
    lines = BUILTIN_DATASETS["demo"].read_text(encoding="utf-8").splitlines(keepends=True)
    reversed_file = tmp_path / "reversed.jsonl"
    reversed_file.write_text("".join(reversed(lines)), encoding="utf-8")
    first, _ = ingest(tmp_path / "a", "builtin:demo")
    test_a = {q["id"] for q in read_lines(tmp_path / "a" / "out" / TEST_FILE)}
    ingest(tmp_path / "b", str(reversed_file))
    test_b = {q["id"] for q in read_lines(tmp_path / "b" / "out" / TEST_FILE)}
    ingest(tmp_path / "c", "builtin:demo", split_seed=1)
    test_c = {q["id"] for q in read_lines(tmp_path / "c" / "out" / TEST_FILE)}
    assert test_a == test_b
    assert test_c != test_a and len(test_c) == len(test_a)
    again, _ = ingest(tmp_path / "a", "builtin:demo")
    assert again == first
    assert test_a == {q["id"] for q in read_lines(tmp_path / "a" / "out" / TEST_FILE)}


@pytest.mark.parametrize("n, fraction, expected", [(10, 0.2, 2), (3, 0.2, 1), (5, 0.0, 0), (1000, 0.25, 250)])
def test_choose_test_ids_takes_an_exact_share(n, fraction, expected):
    ids = [f"q{i}" for i in range(n)]
    chosen = choose_test_ids(ids, fraction, split_seed=3)
    assert len(chosen) == expected and chosen <= set(ids)
    assert choose_test_ids(reversed(ids), fraction, split_seed=3) == chosen


def test_passages_shared_by_questions_are_written_once(tmp_path):
    manifest, out = ingest(tmp_path, str(FIXTURES / "lost_in_middle.jsonl.gz"))
    assert (manifest["format"], manifest["num_questions"], manifest["num_passages"],
            manifest["num_questions_with_gold"]) == ("lost_in_middle", 3, 2, 2)
    assert [p["title"] for p in read_lines(out / PASSAGES_FILE)] == ["Example tower", "Example square"]


def test_explicit_format_overrides_detection(tmp_path):
    manifest, out = ingest(tmp_path, str(FIXTURES / "nq_merged.jsonl"), format="nq_open")
    assert (manifest["format"], manifest["num_questions"], manifest["num_passages"]) == ("nq_open", 3, 0)
    assert [q["id"] for q in read_lines(out / QUESTIONS_FILE)] == ["q1", "q2", "q3"]


def test_relative_path_is_relative_to_the_current_directory(tmp_path, monkeypatch):
    shutil.copy(FIXTURES / "simple_qa.csv", tmp_path / "sqa.csv")
    monkeypatch.chdir(tmp_path)
    manifest, _ = ingest(tmp_path, "sqa.csv", passage_words=5)
    assert (manifest["format"], manifest["source"], manifest["num_questions"], manifest["num_passages"]) == (
        "simple_qa", "sqa.csv", 3, 7)


def assert_left_nothing(out: Path, before: dict[str, bytes] | None = None) -> None:
    if before is None:
        assert not out.exists()
    else:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # old outputs intact, no temp files


def test_failure_leaves_nothing_behind(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": ["a"]}\n{"question": "q2", "answer": 5}\n', encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(UserError, match=rf"{bad}:2: field 'answer'"):
        run_ingest(DatasetConfig(path=str(bad)), out)
    assert_left_nothing(out)

    run_ingest(DatasetConfig(path="builtin:demo"), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(UserError):
        run_ingest(DatasetConfig(path=str(bad)), out)
    assert_left_nothing(out, before)


def test_no_questions_is_an_error(tmp_path):
    header_only = tmp_path / "header.csv"
    header_only.write_text("problem,answer\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"{header_only}: no questions found"):
        ingest(tmp_path, str(header_only))
    assert_left_nothing(tmp_path / "out")


def test_real_oracle_ingest(tmp_path):
    path = SHARED_DATA / "nq_open" / "nq-open-oracle.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"shared data not available: {path}")
    manifest, _ = ingest(tmp_path, str(path))
    assert (manifest["num_questions"], manifest["num_passages"], manifest["num_questions_with_gold"],
            manifest["num_test"]) == (2655, 2600, 2655, 531)

"""What eval, finetune and benchmark read from their parents: questions (all or a split), passages, the
contexts of each prompt mode and the prompts rendered from them; a bad or missing input is one line."""
from __future__ import annotations

import json

import pytest

from components.core.errors import UserError
from components.core.fileio import read_json
from components.core.outputs import INDEX_RESULTS_FILE
from components.core.overrides import build_config
from components.data.schema import Question
from components.stages.stage_inputs import (Contexts, build_contexts, read_passages, read_questions, read_rows,
                                            render_prompts, select_questions, stage_prompts)
from helpers import CAPITALS, FakeTokenizer, write_ingest_dir


@pytest.fixture
def ingest_dir(tmp_path):
    return write_ingest_dir(tmp_path / "ingest")


def test_questions_in_file_order_or_from_a_split(ingest_dir):
    questions = read_questions(ingest_dir)
    assert [q.id for q in questions] == [f"q{i}" for i in range(len(CAPITALS))]
    assert questions[0] == Question("q0", "What is the capital of France?", ["Paris"], ["p0"])
    assert [q.id for q in read_questions(ingest_dir, "train")] == [f"q{i}" for i in range(16)]
    assert [q.id for q in read_questions(ingest_dir, "test")] == [f"q{i}" for i in range(16, 20)]
    assert [p.id for p in read_passages(ingest_dir)][:2] == ["p0", "p1"]


def test_select_questions_takes_the_first_max_samples_and_refuses_none(ingest_dir):
    assert [q.id for q in select_questions(ingest_dir, "test", 2)] == ["q16", "q17"]
    assert len(select_questions(ingest_dir, "all", 0)) == len(CAPITALS)  # 0: all of them
    (ingest_dir / "test.jsonl").write_text("")
    with pytest.raises(UserError, match=r"test\.jsonl: no questions to evaluate"):
        select_questions(ingest_dir, "test", 0)


def test_missing_file_and_bad_record_are_one_line_naming_file_and_line(tmp_path, ingest_dir):
    with pytest.raises(UserError, match=r"questions\.jsonl: file not found \(run the ingest stage first\)"):
        read_questions(tmp_path)
    path = ingest_dir / "questions.jsonl"
    path.write_text(json.dumps({"id": "a", "question": "q", "answers": ["x"]}) + "\n"
                    + json.dumps({"id": "b", "question": "q"}) + "\n")
    with pytest.raises(UserError) as err:
        read_questions(ingest_dir)
    assert str(err.value) == f"{path}:2: not a valid record (KeyError: 'answers')"
    assert read_rows(path, lambda obj: obj["id"]) == ["a", "b"]  # any parser


def test_no_context_has_no_passages(ingest_dir):
    cfg = build_config([])
    contexts = build_contexts(cfg, "no_context", read_questions(ingest_dir)[:3], ingest_dir, None)
    assert contexts == Contexts([[], [], []], [[], [], []], 0)


def test_oracle_context_is_each_questions_gold_passages(ingest_dir):
    questions = read_questions(ingest_dir)[:2]
    questions[1].gold_passage_ids = ["p1", "not-in-corpus", "p5"]
    contexts = build_contexts(build_config([]), "oracle_context", questions, ingest_dir, None)
    assert [[p.id for p in ctx] for ctx in contexts.passages] == [["p0"], ["p1", "p5"]]
    assert contexts.scores == [[1.0], [1.0, 1.0]]
    assert contexts.passages[0][0].text == "Paris is the capital of France."
    no_gold = [Question("x", "q?", ["a"])]
    with pytest.raises(UserError, match="oracle_context needs gold passages"):
        build_contexts(build_config([]), "oracle_context", no_gold, ingest_dir, None)


def test_retriever_context_is_the_index_top_k(demo_ingest_dir, demo_index_dir):
    cfg = build_config(["retriever.top_k=2"])
    questions = read_questions(demo_ingest_dir)[:4]
    with pytest.raises(UserError, match="retriever_context needs an index"):
        build_contexts(cfg, "retriever_context", questions, demo_ingest_dir, None)
    contexts = build_contexts(cfg, "retriever_context", questions, demo_ingest_dir, demo_index_dir)
    assert [len(ctx) for ctx in contexts.passages] == [2, 2, 2, 2]
    assert all(s[0] >= s[1] for s in contexts.scores)  # best first
    corpus = {p.id: p for p in read_passages(demo_ingest_dir)}
    assert all(corpus[p.id] == p for ctx in contexts.passages for p in ctx)
    size = read_json(demo_index_dir / INDEX_RESULTS_FILE)["retriever_index_size_bytes"]
    assert contexts.index_size_bytes == size > 0


def test_prompts_are_the_modes_message_rendered_for_the_model(ingest_dir):
    cfg = build_config([])
    questions = read_questions(ingest_dir)[:2]
    contexts = build_contexts(cfg, "oracle_context", questions, ingest_dir, None)
    prompts = render_prompts(cfg, FakeTokenizer(), questions, contexts)
    assert prompts[0] == ("Answer the question with a short answer, using the context.\nContext:\n"
                          "Paris: Paris is the capital of France.\nQuestion: What is the capital of France?\nAnswer:")
    assert stage_prompts(cfg, FakeTokenizer(), "oracle_context", questions, ingest_dir, "finetune.mode") == prompts
    closed = stage_prompts(cfg, FakeTokenizer(), "no_context", questions, ingest_dir, "finetune.mode")
    assert closed[1] == "Answer the question with a short answer.\nQuestion: What is the capital of Japan?\nAnswer:"


def test_a_stage_without_an_index_refuses_retriever_context_naming_its_setting(ingest_dir):
    with pytest.raises(UserError, match=r"^benchmark\.mode=retriever_context is not supported here"):
        stage_prompts(build_config([]), FakeTokenizer(), "retriever_context", read_questions(ingest_dir), ingest_dir,
                      "benchmark.mode")

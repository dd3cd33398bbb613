"""Readers: exact questions, passages and gold ids per format; detection; one-line errors at file:line."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from components.core.errors import UserError
from components.data.readers import detect_format, read_records, split_words
from components.data.schema import passage_id

from helpers import FIXTURES, SHARED_DATA


def records(name: str, fmt: str = "auto", passage_words: int = 100):
    return list(read_records(FIXTURES / name, fmt, passage_words))


@pytest.mark.parametrize("name, fmt", [
    ("nq_open.jsonl", "nq_open"),
    ("nq_merged.jsonl", "nq_merged"),
    ("lost_in_middle.jsonl.gz", "lost_in_middle"),
    ("normalized.jsonl", "normalized"),
    ("simple_qa.csv", "simple_qa"),
    ("simple_qa_plain.csv", "simple_qa"),
    ("../../components/data/demo_data/demo.jsonl", "normalized"),
])
def test_detects_each_format_from_content(name, fmt):
    assert detect_format(FIXTURES / name) == fmt


def test_detection_ignores_the_file_name(tmp_path):
    jsonl_named_csv = tmp_path / "questions.csv"
    shutil.copy(FIXTURES / "nq_open.jsonl", jsonl_named_csv)
    gzip_named_txt = tmp_path / "contexts.txt"
    shutil.copy(FIXTURES / "lost_in_middle.jsonl.gz", gzip_named_txt)
    assert detect_format(jsonl_named_csv) == "nq_open"
    assert detect_format(gzip_named_txt) == "lost_in_middle"
    assert len(list(read_records(gzip_named_txt, "auto"))) == 3


def test_nq_open_gives_questions_only_with_line_ids():
    got = records("nq_open.jsonl")
    assert [r.question.id for r in got] == ["q1", "q3", "q4"]  # line 2 is blank
    assert got[0].question.answers == ["Lena Brush", "Brush"]
    assert all(r.passages == [] and r.question.gold_passage_ids == [] for r in got)


def test_nq_merged_top_level_passages_and_gold():
    song, harbor, lake = records("nq_merged.jsonl")
    title = "Café Lumière (song)"  # from the URL's title= parameter, URL-decoded
    texts = ["Café Lumière is a song by The Lanterns .",
             "Writer Mara Quill Released 2004",  # the table; its nested rows are not passages
             "The song was written by Mara Quill for the band 's second album ."]
    assert song.question.id == "5001"
    assert [(p.title, p.text) for p in song.passages] == [(title, t) for t in texts]
    assert all(p.id == passage_id(p.title, p.text) for p in song.passages)
    # a nested row -> its table; -1 -> nothing; two annotators on the same paragraph -> one id
    assert song.question.gold_passage_ids == [passage_id(title, texts[1]), passage_id(title, texts[2])]

    assert [(p.title, p.text) for p in harbor.passages] == [
        ("Glass Harbor", "Glass Harbor is a fictional town on a lake ."),  # title from <H1>: URL has none
        ("Glass Harbor", "It has 300 residents .")]
    assert harbor.question.gold_passage_ids == []  # every annotation is -1
    assert harbor.question.answers == ["300", "three hundred"]

    # a nested long answer with no enclosing top-level candidate is a passage of its own
    assert [(p.title, p.text) for p in lake.passages] == [("Tin Lake", "Tin Lake is 12 metres deep .")]
    assert lake.question.gold_passage_ids == [lake.passages[0].id]


def test_lost_in_middle_gzip_all_ctxs_and_isgold():
    got = records("lost_in_middle.jsonl.gz")
    tower = passage_id("Example tower", "The example tower was built by Ivo Mason in 1890.")
    square = passage_id("Example square", "The example square lies next to the tower.")
    assert [r.question.id for r in got] == ["q1", "q2", "q3"]
    assert [[p.id for p in r.passages] for r in got] == [[tower, square], [tower], [square]]
    assert [r.question.gold_passage_ids for r in got] == [[tower], [tower], []]


def test_normalized_ids_passages_and_gold():
    got = records("normalized.jsonl")
    sky = passage_id("Example sky", "The example sky is blue on clear days.")
    sea = passage_id("Example sea", "The example sea is green and cold.")
    spider = passage_id("", "The example spider has eight legs.")
    assert [r.question.id for r in got] == ["n-1", "q2", "7"]
    assert [[p.id for p in r.passages] for r in got] == [[sky, sea], [sea, spider], []]
    assert [r.question.gold_passage_ids for r in got] == [[sky], [spider], []]


def test_simple_qa_splits_documents_and_uses_long_answer_as_gold():
    comet, painting, river = records("simple_qa.csv", passage_words=5)
    assert [p.text for p in comet.passages] == [
        "Comet Example was discovered by", "Ruth Vega in 1961 at", "a small observatory.",
        "The observatory stands on a", "hill.",
        "Comet Example was discovered by Ruth Vega in 1961."]  # the multi-line long_answer, respaced
    assert comet.question.gold_passage_ids == [comet.passages[-1].id]
    assert comet.question.answers == ["Ruth Vega"]
    assert painting.passages == [] and painting.question.gold_passage_ids == []
    assert [p.text for p in river.passages] == ["The Amber River feeds the example lake."]
    assert [r.question.id for r in (comet, painting, river)] == ["q1", "q2", "q3"]


def test_simple_qa_without_documents_columns():
    got = records("simple_qa_plain.csv")
    assert [(r.question.question, r.question.answers) for r in got] == [
        ("What is the capital of the example country?", ["Exampleton"]),
        ('Who wrote "The Example Book"?', ["Jo Writer"])]
    assert all(r.passages == [] for r in got)


def test_split_words():
    assert split_words(" a b  c\nd e ", 2) == ["a b", "c d", "e"]
    assert split_words("", 3) == []


MERGED_OK = ('{"question": "q", "answer": ["a"], "document_text": "<P> x y </P>", '
             '"long_answer_candidates": [{"start_token": 0, "end_token": 4, "top_level": true}], ')

BAD_INPUTS = [  # (file name, content, format, line in the message, phrase in the message)
    ("bad.jsonl", '{"question": "q", "answer": ["a"]}\n{"question": "q2", "answer": [\n', "auto", 2,
     "invalid JSON"),
    ("bad.jsonl", '{"question": "q", "answer": ["a"]}\n\n{"question": "q2", "answer": "a"}\n', "auto", 3,
     "'answer' must be a non-empty list of strings"),
    ("bad.jsonl", '{"question": "q", "answer": ["a", 3]}\n', "auto", 1, "list of strings"),
    ("bad.jsonl", '{"question": "q", "answer": ["a"]}\n{"answer": ["a"]}\n', "auto", 2,
     "missing field 'question'"),
    ("bad.jsonl", '{"question": "q", "answer": ["a"]}\n[1, 2]\n', "nq_open", 2, "expected a JSON object"),
    ("bad.jsonl", '[{"question": "q"}]\n', "auto", 1, "not a JSON array"),
    ("bad.jsonl", '\n{"query": "q", "label": "a"}\n', "auto", 2, "cannot detect the format"),
    ("bad.jsonl", '{"question": "q", "answers": ["a"], "ctxs": [{"title": "t"}]}\n', "auto", 1,
     "missing field 'text'"),
    ("bad.jsonl", '{"id": "x", "question": "q", "answers": ["a"]}\n{"id": "x", "question": "r", '
     '"answers": ["b"]}\n', "auto", 2, "duplicate question id 'x'"),
    ("bad.jsonl", '{"question": "q", "answers": ["a"], "passages": [{"title": "t", "text": ""}]}\n', "auto",
     1, "'text' must be a non-empty string"),
    ("bad.jsonl", MERGED_OK + '"annotations": [{"long_answer": {"candidate_index": 5}}]}\n', "auto", 1,
     "candidate_index"),
    ("bad.jsonl", MERGED_OK.replace('"end_token": 4', '"end_token": 9') + '"annotations": []}\n', "auto", 1,
     "end_token"),
    ("bad.csv", "problem,answer\nq1,a1\nq2,\n", "auto", 3, "'answer' must be a non-empty string"),
    ("bad.csv", 'problem,answer,documents\nq1,a1,"[\'ok\']"\n"q2\nstill q2",a2,"[\'unclosed"\n', "auto", 3,
     "column 'documents' is not a Python-literal list"),
    ("bad.csv", 'problem,answer,documents\nq1,a1,"{\'a\': 1}"\n', "auto", 2,
     "column 'documents' must be a list of strings"),
    ("bad.csv", "question,reply\nq1,a1\n", "auto", 1, "columns 'problem' and 'answer'"),
    ("bad.csv", "question,reply\nq1,a1\n", "simple_qa", 1, "missing problem, answer"),
    ("bad.jsonl.gz", '{"question": "q", "answer": ["a"]}\n', "auto", None, "not gzip"),
]


@pytest.mark.parametrize("name, content, fmt, line, phrase", BAD_INPUTS)
def test_bad_input_is_a_one_line_user_error_at_file_and_line(tmp_path, name, content, fmt, line, phrase):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as err:
        list(read_records(path, fmt))
    message = str(err.value)
    assert message.startswith(f"{path}:" if line is not None else str(path))
    if line is not None:
        assert message.startswith(f"{path}:{line}:")
    assert phrase in message
    assert "\n" not in message


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError, match="empty file") as err:
        detect_format(path)
    assert str(path) in str(err.value)


def shared_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"shared data not available: {path}")
    return path


def test_real_nq_open_dev():
    path = shared_file("nq_open/NQ-open.dev.jsonl")
    got = list(read_records(path, "auto"))
    assert detect_format(path) == "nq_open"
    assert len(got) == 3610
    assert got[0].question.question == "when was the last time anyone was on the moon"
    assert got[0].question.answers == ["14 December 1972 UTC", "December 1972"]


def test_real_lost_in_the_middle_oracle():
    path = shared_file("nq_open/nq-open-oracle.jsonl.gz")
    got = list(read_records(path, "auto"))
    assert detect_format(path) == "lost_in_middle"
    assert len(got) == 2655
    assert len({p.id for r in got for p in r.passages}) == 2600
    assert all(len(r.question.gold_passage_ids) == 1 for r in got)


def test_real_simple_qa_sample():
    path = shared_file("simple_qa/simple_qa_test_set_with_long_answer.sample.csv")
    got = list(read_records(path, "auto", passage_words=100))
    assert detect_format(path) == "simple_qa"
    assert len(got) == 10
    assert got[0].question.answers == ["Michio Sugeno"]
    for record in got:
        assert len(record.question.gold_passage_ids) == 1
        assert all(len(p.text.split()) <= 100 for p in record.passages[:-1])
        assert record.passages[-1].id == record.question.gold_passage_ids[0]  # the long_answer

"""The normalised QA records every stage reads and the passage id that joins duplicates."""
from __future__ import annotations

import json
import re

from components.data.schema import Passage, Question, passage_id


def test_question_round_trips_through_json_and_normalises_types():
    q = Question("q1", "What is the capital of France?", ["Paris"], gold_passage_ids=["p1", "p2"])
    assert Question.from_dict(json.loads(json.dumps(q.to_dict()))) == q
    loose = Question.from_dict({"id": 7, "question": "q?", "answers": ("a", "b"), "gold_passage_ids": [3]})
    assert loose == Question("7", "q?", ["a", "b"], ["3"])
    assert Question.from_dict({"id": "x", "question": "q?", "answers": ["a"]}).gold_passage_ids == []


def test_passage_round_trips_and_defaults_its_title():
    p = Passage("p1", "Paris", "Paris is the capital of France.")
    assert p.to_dict() == {"id": "p1", "title": "Paris", "text": "Paris is the capital of France."}
    assert Passage.from_dict(p.to_dict()) == p
    assert Passage.from_dict({"id": 5, "text": "t"}) == Passage("5", "", "t")


def test_passage_id_is_one_per_distinct_title_and_text():
    pid = passage_id("Paris", "Paris is the capital.")
    assert re.fullmatch(r"p[0-9a-f]{16}", pid)
    assert passage_id("Paris", "Paris is the capital.") == pid  # duplicates share it
    assert passage_id("Lyon", "Paris is the capital.") != pid
    assert passage_id("ab", "c") != passage_id("a", "bc")  # the title/text boundary counts
    assert passage_id("", "x") != passage_id("x", "")

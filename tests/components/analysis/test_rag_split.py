"""The retrieval-vs-reading split on hand-made evals whose groups are known."""
from __future__ import annotations

import pytest

from components.analysis.rag_split import ANSWER, GOLD, GROUPS, is_right, rag_split


def row(qid: str, score: float, gold_shown: bool, answer_shown: bool = False, has_gold: bool = True) -> dict:
    """A retriever_context prediction row: two passages shown, the first gold when `gold_shown`."""
    return {"id": qid, "token_recall": score, "exact_match": float(score == 1.0), "has_gold_passage": has_gold,
            "context_is_gold": [gold_shown, False], "context_holds_answer": [answer_shown, False]}


# 3 gold & right, 2 gold & wrong (reading), 1 not gold & right (parametric), 4 not gold & wrong (retrieval)
KNOWN = ([row(f"a{i}", 1.0, True) for i in range(3)] + [row(f"b{i}", 0.0, True) for i in range(2)]
         + [row("c0", 0.5, False)] + [row(f"d{i}", 1 / 3, False) for i in range(4)])


def test_the_four_groups_of_a_known_eval_and_their_shares_sum_to_one():
    split = rag_split(KNOWN, "token_recall", samples=500)
    assert split["definition"] == GOLD and split["n"] == split["n_total"] == 10
    assert {g: v["count"] for g, v in split["groups"].items()} == \
        {"gold_right": 3, "gold_wrong": 2, "nogold_right": 1, "nogold_wrong": 4}
    shares = {g: v["share"] for g, v in split["groups"].items()}
    assert shares == {"gold_right": 0.3, "gold_wrong": 0.2, "nogold_right": 0.1, "nogold_wrong": 0.4}
    assert sum(shares.values()) == pytest.approx(1.0)
    for g in GROUPS:
        v = split["groups"][g]
        assert 0.0 <= v["ci_low"] <= v["share"] <= v["ci_high"] <= 1.0 and v["ci_low"] < v["ci_high"]


def test_right_follows_the_metric():
    assert is_right(0.5) and not is_right(1 / 3) and not is_right(None)
    # by exact match, c0 (recall 0.5) is wrong: parametric 1 -> 0, retrieval failure 4 -> 5
    split = rag_split(KNOWN, "exact_match", samples=0)
    assert split["groups"]["nogold_right"]["count"] == 0 and split["groups"]["nogold_wrong"]["count"] == 5
    assert split["groups"]["gold_right"]["ci_low"] is None  # no resamples, no CI


def test_questions_without_a_gold_passage_are_left_out_under_the_gold_definition():
    rows = KNOWN + [row("e0", 1.0, False, answer_shown=True, has_gold=False)]
    split = rag_split(rows, "token_recall", samples=100)
    assert split["definition"] == GOLD and split["n"] == 10 and split["n_total"] == 11
    assert sum(v["share"] for v in split["groups"].values()) == pytest.approx(1.0)


def test_without_gold_passages_an_answer_string_in_a_passage_counts():
    rows = [row("x0", 1.0, False, answer_shown=True, has_gold=False),
            row("x1", 0.0, False, answer_shown=True, has_gold=False),
            row("x2", 0.0, False, answer_shown=False, has_gold=False),
            row("x3", 0.0, False, answer_shown=False, has_gold=False)]
    split = rag_split(rows, "token_recall", samples=100)
    assert split["definition"] == ANSWER and split["n"] == 4
    assert [split["groups"][g]["count"] for g in GROUPS] == [1, 1, 0, 2]


def test_context_helped_and_hurt_against_the_no_context_answers():
    closed = [{"id": r["id"], "token_recall": s} for r, s in zip(KNOWN, [0, 1, 1, 1, 0, 0, 1, 0, 0, 0])]
    split = rag_split(KNOWN, "token_recall", samples=0, baseline=closed)
    # right now, wrong closed-book: a0 and c0 (helped); wrong now, right closed-book: b0 and d0 (hurt)
    assert (split["context_helped"], split["context_hurt"], split["n_paired"]) == (2, 2, 10)


def test_rows_without_passage_flags_have_no_split():
    assert rag_split([{"id": "q", "token_recall": 1.0, "context_ids": ["p"]}], "token_recall", 10) is None

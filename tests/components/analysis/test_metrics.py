"""QA and benchmark metrics on hand-computed cases (definitions in components/metrics.py and the README)."""
from __future__ import annotations

import pytest

from components.analysis.metrics import (QA_METRICS, exact_match, key_info, legacy_token_recall, length_ratio, mean,
                                normalize_answer, score_prediction, substring_match, token_f1, token_recall)


@pytest.mark.parametrize("text,expected", [
    ("The Beatles", "beatles"),
    ("  A  man, a plan; a canal: Panama! ", "man plan canal panama"),
    ("An apple", "apple"),
    ("Theory of the Anthem", "theory of anthem"),  # whole-word articles only
    ("U.S.A.", "usa"),
])
def test_normalize_answer_is_squad(text, expected):
    assert normalize_answer(text) == expected


# --- token_recall (standard: SQuAD-normalised multiset overlap, max over golds) -----------------------

def test_token_recall_article_dropped():
    assert token_recall("Beatles", ["The Beatles"]) == 1.0


def test_token_recall_no_overlap():
    assert token_recall("I don't know", ["Don Knotts"]) == 0.0


def test_token_recall_is_multiset():
    assert token_recall("new york", ["new york new york"]) == 0.5
    assert token_recall("new york new york, new york", ["new york new york"]) == 1.0


def test_token_recall_partial_and_max_over_golds():
    assert token_recall("Neil went to the moon", ["Neil Armstrong"]) == 0.5
    assert token_recall("Neil went to the moon", ["Buzz Aldrin", "Neil Armstrong", "Neil"]) == 1.0
    assert token_recall("Neil went to the moon", ["Buzz Aldrin", "Neil Armstrong"]) == 0.5
    assert token_recall("anything", []) == 0.0
    assert token_recall("", ["Paris"]) == 0.0


def test_token_recall_no_unidecode():
    # the standard metric does not fold accents; the legacy one does
    assert token_recall("beyonce", ["Beyoncé"]) == 0.0


# --- token_f1 / exact_match / substring_match ----------------------------------------------------------

def test_token_f1():
    # pred tokens [capital, is, paris], gold [paris]: P = 1/3, R = 1, F1 = 0.5
    assert token_f1("The capital is Paris.", ["Paris"]) == pytest.approx(0.5)
    # pred [paris, france], gold [paris]: P = 1/2, R = 1 -> 2/3
    assert token_f1("Paris, France", ["Paris"]) == pytest.approx(2 / 3)
    assert token_f1("Paris, France", ["London", "Paris"]) == pytest.approx(2 / 3)
    assert token_f1("London", ["Paris"]) == 0.0
    # multiset: pred [new, york], gold [new, york, new, york]: common 2, P = 1, R = 0.5 -> 2/3
    assert token_f1("new york", ["new york new york"]) == pytest.approx(2 / 3)
    # SQuAD convention: both empty after normalisation -> 1, one empty -> 0
    assert token_f1("the", ["a"]) == 1.0
    assert token_f1("", ["Paris"]) == 0.0


def test_exact_match_squad_normalisation():
    assert exact_match("The Beatles!", ["beatles"]) == 1.0
    assert exact_match("  beatles ", ["The Beatles"]) == 1.0
    assert exact_match("The Beatles band", ["The Beatles"]) == 0.0
    assert exact_match("Ottawa", ["Toronto", "ottawa."]) == 1.0
    assert exact_match("Ottawa", []) == 0.0


def test_substring_match():
    assert substring_match("It is Paris, in France.", ["paris"]) == 1.0
    assert substring_match("It is Paris, in France.", ["London", "in France"]) == 1.0
    assert substring_match("Parisian cafes", ["Paris"]) == 0.0  # whole words only
    assert substring_match("anything", ["The"]) == 0.0  # a gold that normalises to nothing never matches
    assert substring_match("", ["Paris"]) == 0.0


# --- legacy_token_recall (the seed system's set overlap) -----------------------------------------------

def test_legacy_token_recall_unidecode():
    assert legacy_token_recall("beyonce", ["Beyoncé"]) == 1.0
    assert legacy_token_recall("Beyoncé", ["beyonce"]) == 1.0


def test_legacy_token_recall_is_a_set_overlap():
    assert legacy_token_recall("new york", ["new york new york"]) == 1.0
    assert token_recall("new york", ["new york new york"]) == 0.5


def test_legacy_token_recall_keeps_articles_and_splits_apostrophes():
    # set(the, beatles): "the" is not dropped by the old definition
    assert legacy_token_recall("Beatles", ["The Beatles"]) == 0.5
    # "don't" splits into don + t, which then matches "Don": the inflation the new metric removes
    assert legacy_token_recall("I don't know", ["Don Knotts"]) == 0.5
    assert token_recall("I don't know", ["Don Knotts"]) == 0.0
    assert legacy_token_recall("x", ["", "x"]) == 1.0
    assert legacy_token_recall("x", ["..."]) == 0.0


def test_score_prediction_has_every_metric():
    scores = score_prediction("The Beatles", ["Beatles"])
    assert set(scores) == set(QA_METRICS)
    assert scores["token_recall"] == 1.0 and scores["exact_match"] == 1.0
    assert scores["legacy_token_recall"] == 1.0


# --- key_info and length_ratio (benchmark metrics) -----------------------------------------------------

def test_key_info_numbers_and_terms():
    ref = "The tower was built in 1889 by Gustave Eiffel."
    # numbers {1889}; terms {tower, built, gustave, eiffel} (the, was, in, by are stopwords)
    got = key_info("Eiffel built it in 1889.", ref)
    assert got["key_info_numbers"] == 1.0
    assert got["key_info_terms"] == pytest.approx(2 / 4)
    assert got["key_info"] == pytest.approx((1.0 + 0.5) / 2)
    got = key_info("Some tower from 1890.", ref)
    assert got["key_info_numbers"] == 0.0
    assert got["key_info_terms"] == pytest.approx(1 / 4)


def test_key_info_numbers_are_digit_runs():
    got = key_info("12 and 7", "Between 12 and 1,500 people")  # numbers {12, 1, 500}
    assert got["key_info_numbers"] == pytest.approx(1 / 3)


def test_key_info_without_numbers_is_the_terms_part():
    got = key_info("Gustave built it", "Gustave Eiffel")
    assert got["key_info_numbers"] is None
    assert got["key_info_terms"] == 0.5
    assert got["key_info"] == got["key_info_terms"]


def test_key_info_without_terms_is_the_numbers_part():
    got = key_info("It was in 1990", "It was in the 1990")
    assert got["key_info_terms"] is None
    assert got["key_info_numbers"] == 1.0
    assert got["key_info"] == 1.0
    got = key_info("whatever", "it was the")  # only stopwords, no numbers
    assert got == {"key_info": None, "key_info_numbers": None, "key_info_terms": None}


@pytest.mark.parametrize("pred,ref,expected", [
    ("a b", "a b c d", 0.5),
    ("a b c d", "a b", 0.5),
    ("a b c", "x y z", 1.0),
    ("a", "", 0.0),
    ("", "a b", 0.0),
    ("one two three", "one   two\nthree four five six", 0.5),
])
def test_length_ratio(pred, ref, expected):
    assert length_ratio(pred, ref) == pytest.approx(expected)


def test_mean_skips_none():
    assert mean([1.0, None, 0.0]) == 0.5
    assert mean([None, None]) is None
    assert mean([]) is None

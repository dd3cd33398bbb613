"""QA metrics. Definitions (also in the README):

- normalize_answer: SQuAD normalisation - lowercase, drop punctuation, drop the articles a/an/the,
  collapse whitespace.
- token_recall: |Counter(gold) & Counter(pred)| / |gold| over normalised tokens, max over gold answers
  (BERGEN / FlashRAG definition).
- token_f1, exact_match: SQuAD, max over gold answers.
- substring_match: a normalised gold answer occurs inside the normalised prediction.
- legacy_token_recall: the seed system's set overlap (lowercase, unidecode, `\\b\\w+\\b` words,
  |set(gold) & set(pred)| / |set(gold)|), kept under its own name so old and new runs compare.
- key_info: recall of the reference's numbers (`\\d+` runs) and key terms (normalised tokens minus
  English stopwords); a part is left out (None) when the reference has none.
- length_ratio: min(p/r, r/p) over whitespace words, 0 for an empty reference.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Iterable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
_NUMBER = re.compile(r"\d+")

# A compact English stopword list (NLTK's core list) for Key Info key terms.
STOPWORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
herself it its itself they them their theirs themselves what which who whom this that these those am is
are was were be been being have has had having do does did doing a an the and but if or because as until
while of at by for with about against between into through during before after above below to from up
down in out on off over under again further then once here there when where why how all any both each
few more most other some such no nor not only own same so than too very s t can will just don should now
""".split())


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def _best(golds: Sequence[str], score) -> float:
    return max((score(g) for g in golds), default=0.0)


def token_recall(prediction: str, golds: Sequence[str]) -> float:
    pred = Counter(_tokens(prediction))

    def one(gold: str) -> float:
        gold_tokens = Counter(_tokens(gold))
        total = sum(gold_tokens.values())
        return sum((gold_tokens & pred).values()) / total if total else 0.0

    return _best(golds, one)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    pred_tokens = _tokens(prediction)

    def one(gold: str) -> float:
        gold_tokens = _tokens(gold)
        common = sum((Counter(gold_tokens) & Counter(pred_tokens)).values())
        if not gold_tokens or not pred_tokens:
            return float(gold_tokens == pred_tokens)
        if common == 0:
            return 0.0
        precision, recall = common / len(pred_tokens), common / len(gold_tokens)
        return 2 * precision * recall / (precision + recall)

    return _best(golds, one)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    pred = normalize_answer(prediction)
    return _best(golds, lambda g: float(normalize_answer(g) == pred))


def substring_match(prediction: str, golds: Sequence[str]) -> float:
    pred = f" {normalize_answer(prediction)} "
    return _best(golds, lambda g: float(bool(normalize_answer(g)) and f" {normalize_answer(g)} " in pred))


def legacy_token_recall(prediction: str, golds: Sequence[str]) -> float:
    from unidecode import unidecode

    def words(text: str) -> set[str]:
        return set(re.findall(r"\b\w+\b", unidecode(text).lower()))

    pred = words(prediction)

    def one(gold: str) -> float:
        gold_words = words(gold)
        return len(gold_words & pred) / len(gold_words) if gold_words else 0.0

    return _best(golds, one)


def key_info(prediction: str, reference: str) -> dict[str, float | None]:
    """Numbers and key terms of the reference found in the prediction; None where the reference has none."""
    numbers = set(_NUMBER.findall(reference))
    terms = {t for t in _tokens(reference) if t not in STOPWORDS and not t.isdigit()}
    pred_numbers = set(_NUMBER.findall(prediction))
    pred_terms = set(_tokens(prediction))
    number_recall = len(numbers & pred_numbers) / len(numbers) if numbers else None
    term_recall = len(terms & pred_terms) / len(terms) if terms else None
    parts = [p for p in (number_recall, term_recall) if p is not None]
    return {"key_info": sum(parts) / len(parts) if parts else None,
            "key_info_numbers": number_recall, "key_info_terms": term_recall}


def length_ratio(prediction: str, reference: str) -> float:
    p, r = len(prediction.split()), len(reference.split())
    if r == 0 or p == 0:
        return 0.0
    return min(p / r, r / p)


QA_METRICS = {
    "token_recall": token_recall,
    "legacy_token_recall": legacy_token_recall,
    "token_f1": token_f1,
    "exact_match": exact_match,
    "substring_match": substring_match,
}


# The benchmark's quality metrics per question (Key Info also per part), averaged per model.
BENCHMARK_QUALITY_METRICS = ("token_f1", "exact_match", "key_info", "key_info_numbers", "key_info_terms",
                             "length_ratio")


def score_prediction(prediction: str, golds: Sequence[str]) -> dict[str, float]:
    return {name: fn(prediction, golds) for name, fn in QA_METRICS.items()}


def mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None

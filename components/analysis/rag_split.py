"""Why a retrieval-augmented answer failed: the retriever did not bring the gold passage, or the model had
it and still answered wrong. Per retriever cell, each question falls in one of four groups:

  gold retrieved & right      retrieval and reading both worked
  gold retrieved & wrong      a reading failure: the model saw the passage and still missed
  gold not retrieved & right  parametric: the model knew it without the passage
  gold not retrieved & wrong  a retrieval failure

"Gold retrieved" means one of the question's gold passages is among the passages shown; over a dataset
without gold passages it means a passage shown holds a gold answer string (the definition is recorded).
Under the gold definition only the questions that have a gold passage are split (the rest cannot be
retrieved by that definition). "Right" means the chosen metric reaches CORRECT_AT (exact and substring
match are 0/1; token recall and F1 count from half the gold tokens). Beside the groups: how often the
context helped (right with it, wrong without: the same system's no_context answer) and hurt.

The CIs are the percentile bootstrap over questions (95%, the fixed seed of components.analysis.stats).
Resampling n questions with replacement draws the four group counts from a multinomial with the observed
shares, so the bootstrap is drawn as exactly that: the four shares of every resample sum to 1.
"""
from __future__ import annotations

from components.analysis.stats import BOOTSTRAP_SEED, CONFIDENCE

CORRECT_AT = 0.5
GROUPS = {"gold_right": "gold retrieved & right",
          "gold_wrong": "gold retrieved & wrong (reading failure)",
          "nogold_right": "gold not retrieved & right (parametric)",
          "nogold_wrong": "gold not retrieved & wrong (retrieval failure)"}
GOLD, ANSWER = "gold passage", "answer string"
DEFINITIONS = {GOLD: "a gold passage of the question is among the passages shown (questions without one "
                     "are left out)",
               ANSWER: "a passage shown holds a gold answer string (SQuAD-normalised), for datasets "
                       "without gold passages"}


def is_right(score: float | None, threshold: float = CORRECT_AT) -> bool:
    return score is not None and score >= threshold


def definition(rows: list[dict]) -> str | None:
    """GOLD when any question has a gold passage, else ANSWER; None when the rows carry no passage flags
    (an eval written before they existed)."""
    if not rows or "context_is_gold" not in rows[0]:
        return None
    return GOLD if any(r.get("has_gold_passage") for r in rows) else ANSWER


def retrieved(row: dict, how: str) -> bool:
    return any(row["context_is_gold"]) if how == GOLD else any(row["context_holds_answer"])


def group_of(row: dict, metric: str, how: str) -> str:
    return ("gold" if retrieved(row, how) else "nogold") + ("_right" if is_right(row[metric]) else "_wrong")


def rag_split(rows: list[dict], metric: str, samples: int, baseline: list[dict] | None = None) -> dict | None:
    """The four groups' counts and shares (95% bootstrap CI of each share) over the split questions, and
    context helped / hurt against `baseline` (the no_context answers to the same questions)."""
    how = definition(rows)
    if how is None:
        return None
    split = [r for r in rows if how == ANSWER or r.get("has_gold_passage")]
    counts = {name: 0 for name in GROUPS}
    for r in split:
        counts[group_of(r, metric, how)] += 1
    low, high = _share_cis(list(counts.values()), samples)
    out = {"definition": how, "n": len(split), "n_total": len(rows), "groups": {
        name: {"count": count, "share": round(count / len(split), 6) if split else None,
               "ci_low": low[i], "ci_high": high[i]} for i, (name, count) in enumerate(counts.items())}}
    if baseline is not None:
        before = {r["id"]: is_right(r[metric]) for r in baseline}
        paired = [(is_right(r[metric]), before[r["id"]]) for r in rows if r["id"] in before]
        out.update(context_helped=sum(1 for now, then in paired if now and not then),
                   context_hurt=sum(1 for now, then in paired if then and not now), n_paired=len(paired))
    return out


def _share_cis(counts: list[int], samples: int) -> tuple[list, list]:
    """Percentile bootstrap CIs of each group's share: resamples drawn as multinomial counts."""
    n = sum(counts)
    if not n or not samples:
        return [None] * len(counts), [None] * len(counts)
    import numpy as np

    draws = np.random.default_rng(BOOTSTRAP_SEED).multinomial(n, np.asarray(counts) / n, size=samples) / n
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail], axis=0)
    return [round(float(v), 6) for v in low], [round(float(v), 6) for v in high]

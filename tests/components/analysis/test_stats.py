"""Bootstrap CIs: they contain the mean, are reproducible, degenerate sensibly, and the paired CI of a
difference is narrower than the unpaired intervals suggest when the two systems move together."""
from __future__ import annotations

import pytest

from components.analysis.stats import mean_ci, paired_difference_ci, summary

VALUES = [0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 0.25, 0.75]


def test_mean_ci_contains_the_mean_and_is_reproducible():
    low, high = mean_ci(VALUES, samples=500)
    assert low <= sum(VALUES) / len(VALUES) <= high and low < high
    assert mean_ci(VALUES, samples=500) == (low, high)
    assert mean_ci(VALUES, samples=500, seed=7) != (low, high)
    assert mean_ci([0.4] * 5, samples=200) == pytest.approx((0.4, 0.4))
    assert mean_ci([0.3], samples=200) == (0.3, 0.3)
    assert mean_ci(VALUES, samples=0) is None and mean_ci([], samples=100) is None


def test_paired_difference_uses_the_same_questions_for_both():
    hard = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0] * 3
    better = [min(1.0, v + 0.2) for v in hard]  # the same questions, each a little better
    low, high = paired_difference_ci(better, hard, samples=1000)
    assert 0.0 < low <= high < 0.21  # every question gains 0 or 0.2: the paired CI stays positive
    unpaired_better, unpaired_hard = mean_ci(better, 1000), mean_ci(hard, 1000)
    assert unpaired_better[0] < unpaired_hard[1]  # unpaired intervals overlap: they could not tell
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference_ci([1.0], [1.0, 0.0], samples=10)


def test_summary_rounds_and_counts():
    s = summary([0.1, 0.2, 0.3], samples=200)
    assert s["mean"] == 0.2 and s["n"] == 3 and s["ci_low"] <= 0.2 <= s["ci_high"]
    assert summary([], samples=200) == {"mean": None, "ci_low": None, "ci_high": None, "n": 0}

"""95% bootstrap confidence intervals: of a mean over questions, and of the mean difference between two
systems answering the same questions (paired: each resample draws the same questions for both).
scipy.stats.bootstrap, percentile method, a fixed seed: the same answers always give the same CI."""
from __future__ import annotations

from typing import Sequence

BOOTSTRAP_SEED = 12345
CONFIDENCE = 0.95


def _interval(data: tuple, statistic, samples: int, paired: bool, seed: int) -> tuple[float, float] | None:
    import numpy as np
    from scipy.stats import bootstrap

    arrays = tuple(np.asarray(d, dtype=float) for d in data)
    if not samples or not len(arrays[0]):
        return None
    if len(arrays[0]) == 1:  # one question: no spread to resample
        value = float(statistic(*arrays, axis=-1))
        return value, value
    result = bootstrap(arrays, statistic, n_resamples=samples, confidence_level=CONFIDENCE, method="percentile",
                       paired=paired, vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _mean(x, axis=-1):
    return x.mean(axis=axis)


def _mean_difference(a, b, axis=-1):
    return a.mean(axis=axis) - b.mean(axis=axis)


def mean_ci(values: Sequence[float], samples: int, seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """CI of the mean; None without values or with samples=0."""
    return _interval((values,), _mean, samples, paired=False, seed=seed)


def paired_difference_ci(a: Sequence[float], b: Sequence[float], samples: int,
                         seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """CI of mean(a) - mean(b), a[i] and b[i] being the same question's scores."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    return _interval((a, b), _mean_difference, samples, paired=True, seed=seed)


def summary(values: Sequence[float], samples: int, seed: int = BOOTSTRAP_SEED) -> dict:
    """mean, ci_low, ci_high (rounded so a zero difference reads 0.0, not -2.8e-17) and n."""
    ci = mean_ci(values, samples, seed)
    return {"mean": round(sum(values) / len(values), 6) if len(values) else None,
            "ci_low": round(ci[0], 6) if ci else None, "ci_high": round(ci[1], 6) if ci else None,
            "n": len(values)}

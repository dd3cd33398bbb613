"""An eval's aggregate metrics from its prediction rows: what eval writes into results.json and what merge
(and any reader of predictions.jsonl) recomputes from the rows alone."""
from __future__ import annotations

from components.analysis.metrics import QA_METRICS, mean
from components.analysis.stats import mean_ci

CI_METRICS = ("token_recall", "token_f1", "exact_match", "substring_match")


def summarize(rows: list[dict], mode: str, bootstrap_samples: int = 0) -> dict:
    """Aggregate metrics over prediction rows (also what a reader recomputes from predictions.jsonl), with
    a 95% bootstrap CI (`<metric>_ci_low`, `_ci_high`) beside each of CI_METRICS."""
    summary = {name: mean(r[name] for r in rows) for name in QA_METRICS}
    for name in CI_METRICS:
        ci = mean_ci([r[name] for r in rows], bootstrap_samples)
        if ci:
            summary[f"{name}_ci_low"], summary[f"{name}_ci_high"] = round(ci[0], 6), round(ci[1], 6)
    summary.update(num_examples=len(rows), mode=mode,
                   share_hit_max_new_tokens=mean(float(r["hit_max_new_tokens"]) for r in rows))
    if mode != "no_context":
        summary["context_has_answer_rate"] = mean(float(r["context_has_answer"]) for r in rows)
        summary["num_without_context"] = sum(1 for r in rows if not r["context_ids"])
    return summary

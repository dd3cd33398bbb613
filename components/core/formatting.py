"""Metrics grouped the way the seed system's users read them: quality, sizes, peak memory, other."""
from __future__ import annotations

import re

QUALITY_PREFIXES = ("token_recall", "legacy_token_recall", "token_f1", "exact_match", "substring_match",
                    "key_info", "length_ratio", "gold_hit@", "answer_hit@", "context_has_answer_rate")
CATEGORIES = ("quality", "sizes", "peak memory", "other")


def category(name: str) -> str:
    if name.startswith(QUALITY_PREFIXES):
        return "quality"
    if re.search(r"(^|_)ram(_|$)", name):
        return "peak memory"
    if name.endswith(("_bytes", "_mb")):
        return "sizes"
    return "other"


def numeric_metrics(results: dict) -> dict[str, float]:
    """Top-level numbers of a results dict (bools and nested values are not metrics)."""
    return {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def grouped(results: dict) -> dict[str, dict[str, float]]:
    groups: dict[str, dict[str, float]] = {c: {} for c in CATEGORIES}
    for name, value in numeric_metrics(results).items():
        groups[category(name)][name] = value
    return {c: g for c, g in groups.items() if g}


def _fmt(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, float) and abs(value) < 1000 else f"{value:,}" if isinstance(
        value, int) else f"{value:,.1f}"


def format_results(results: dict, title: str = "Results") -> str:
    lines = [f"== {title} =="]
    for cat, metrics in grouped(results).items():
        lines.append(f"[{cat}]")
        lines += [f"  {name:<32} {_fmt(value)}" for name, value in metrics.items()]
    return "\n".join(lines)


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain aligned text table (the `slm run` summary)."""
    cells = [[str(c) for c in columns]] + [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    out = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


SUMMARY_HEAD = ("step", "status", "seconds")


def format_summary(rows: list[dict], metrics: list[str]) -> str:
    """The `slm run` summary: step, status, seconds, then the step's own values among `metrics` as `name
    value` pairs. Steps of different stages report different metrics: one column per metric would be
    mostly `-`. A metric's values share one width, so the steps of one stage line up."""
    shown = [[m for m in metrics if m not in SUMMARY_HEAD and _is_number(r.get(m))] for r in rows]
    width = {m: max(len(_number(m, r[m])) for r, names in zip(rows, shown) if m in names)
             for m in {m for names in shown for m in names}}
    cells = [[*SUMMARY_HEAD, "results"]] + [
        [str(r["step"]), str(r["status"]), _number("seconds", r["seconds"]),
         "  ".join(f"{m} {_number(m, r[m]):>{width[m]}}" for m in names)] for r, names in zip(rows, shown)]
    widths = [max(len(row[i]) for row in cells) for i in range(3)]
    return "\n".join(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}".rstrip()
                     for row in cells)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(name: str, value: float) -> str:
    """As a person reads it: seconds to a tenth, counts with thousands separators, scores to three places,
    large values without decimals, tiny ones (a learning rate) in scientific notation."""
    if isinstance(value, int):
        return f"{value:,}"
    if name == "seconds" or name.endswith("_seconds"):
        return f"{value:,.1f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.3f}"


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value and abs(value) < 1e-3:  # a learning rate of 4.7e-05 must not read 0.0000
            return f"{value:.2e}"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)

"""How results read in a browser (the ClearML UI): numbers to 4 significant digits, quality first, each
95% CI beside its metric instead of two metrics of its own, and a short preview of every uploaded file so
that it can be read without downloading it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from components.core.formatting import grouped

CI_BOUNDS = ("_ci_low", "_ci_high")
PREVIEW_CHARS = 2000  # what the artifact panel shows comfortably; the file itself holds the rest
PREVIEW_ROWS = 5


def sig4(value) -> str:
    """A number as people read it: 4 significant digits (0.7619, 0.29, 1235, 2e-05); ints stay whole."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def is_ci_bound(name: str) -> bool:
    return name.endswith(CI_BOUNDS)


def ordered_metrics(metrics: dict[str, float]) -> list[str]:
    """Quality first, then sizes, peak memory, the rest (components.core.formatting's groups); CI bounds out."""
    return [name for group in grouped(metrics).values() for name in group if not is_ci_bound(name)]


def summary_values(metrics: dict[str, float], preferred: Sequence[str] = ()) -> dict[str, float]:
    """The few numbers shown as single values, in order: the stage's registry metrics where it lists them
    (the ones sweeps optimise), else every metric but the CI bounds, quality first."""
    names = [m for m in preferred if m in metrics] if preferred else ordered_metrics(metrics)
    return {name: metrics[name] for name in names}


def metrics_table(metrics: dict[str, float]) -> list[list[str]]:
    """The Final Metrics table: one row per metric (quality first) with its 95% CI where it has one."""
    rows = [["metric", "value", "95% CI low", "95% CI high"]]
    for name in ordered_metrics(metrics):
        low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
        rows.append([name, sig4(metrics[name]), "" if low is None else sig4(low), "" if high is None else sig4(high)])
    return rows


def _json_preview(data) -> str:
    """A results file's numbers and labels, one per line, then each nested part on one line, cut short
    (`peak_usage: {"cpu_ram_used_mb": 1300, ...`), a list by its length."""
    if not isinstance(data, dict):
        return json.dumps(data, ensure_ascii=False)[:PREVIEW_CHARS]
    flat = [f"{k}: {sig4(v)}" for k, v in data.items() if not isinstance(v, (dict, list))]
    nested = [f"{k}: {len(v)} items" if isinstance(v, list) else f"{k}: {_cut(json.dumps(v, ensure_ascii=False))}"
              for k, v in data.items() if isinstance(v, (dict, list))]
    return "\n".join(flat + nested)


def _cut(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


def _head(path: Path, rows: int) -> tuple[list[str], int]:
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    return lines[:rows], len(lines)


def file_preview(path: str | Path) -> str:
    """What the artifact panel shows for an uploaded file or folder: a results file's top-level values,
    the first rows of a jsonl/csv/text file, a folder's listing; '' for anything else (images, binaries)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        listing = [f"{p.relative_to(path)}  ({p.stat().st_size:,} bytes)" for p in files[:30]]
        more = [f"... {len(files) - 30} more"] if len(files) > 30 else []
        return "\n".join([f"{len(files)} files"] + listing + more)[:PREVIEW_CHARS]
    if not path.is_file():
        return ""
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            return _json_preview(json.loads(path.read_text(encoding="utf-8")))[:PREVIEW_CHARS]
        except (json.JSONDecodeError, UnicodeDecodeError):
            return ""
    if suffix in (".jsonl", ".csv", ".md", ".txt"):
        rows, total = _head(path, PREVIEW_ROWS if suffix == ".jsonl" else 20)
        shown = [row if len(row) <= 400 else row[:400] + " ..." for row in rows]
        return "\n".join([f"first {len(rows)} of {total} lines:"] + shown)[:PREVIEW_CHARS]
    return ""

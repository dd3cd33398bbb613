"""The leaderboard as data: one row per system, one column group per mode, each cell every QA metric with
its 95% bootstrap CI (the evals' own); the paired differences oracle - no_context and retriever -
no_context per system and metric (paired bootstrap over the same questions); and one entry per eval (a
cell of the drill-down) with its own costs, its link and, for a retriever eval, the retrieval-vs-reading
split. Also its Markdown and CSV forms, for one chosen metric."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from components.analysis.evals import QUALITY, EvalEntry, cell_labels, eval_link, group_systems
from components.analysis.rag_split import CORRECT_AT, GROUPS, rag_split
from components.analysis.stats import paired_difference_ci
from components.core.config import MODES
from components.core.errors import UserError

DIFFERENCES = (("oracle_context", "no_context"), ("retriever_context", "no_context"))
# Each eval's own cost figures (memory: the eval's own peak, see components.core.memory).
EVAL_COSTS = ("seconds_per_question", "cpu_ram_used_mb", "gpu_ram_peak_mb", "duration_seconds", "gpu_energy_joules",
              "gpu_mean_power_watts")
# Measured only on a GPU (components.core.energy): absent elsewhere, shown as "-", never as 0.
GPU_ONLY_COSTS = ("gpu_energy_joules", "gpu_mean_power_watts")
COST_LABELS = {"model_size_mb": "model size (MB)", "seconds_per_question": "seconds per question",
               "cpu_ram_used_mb": "peak CPU RAM of this eval (MB)", "gpu_ram_peak_mb": "peak GPU memory (MB)",
               "duration_seconds": "eval duration (s)", "gpu_energy_joules": "GPU energy (J)",
               "gpu_mean_power_watts": "mean GPU power (W)"}


def cost_text(value) -> str:
    return "-" if value is None else str(value)


def _cell(e: EvalEntry, metric: str) -> dict:
    r = e.results
    return {"mean": r.get(metric), "ci_low": r.get(f"{metric}_ci_low"), "ci_high": r.get(f"{metric}_ci_high"),
            "n": r.get("num_examples"), "eval": e.name}


def difference(a: list[dict], b: list[dict], metric: str, samples: int) -> dict:
    """mean(a) - mean(b) over the questions both answered (rows matched by id), paired bootstrap CI."""
    first = {r["id"]: r[metric] for r in a}
    second = {r["id"]: r[metric] for r in b}
    common = [q for q in first if q in second]
    x, y = [first[q] for q in common], [second[q] for q in common]
    ci = paired_difference_ci(x, y, samples) if common else None
    mean = round(sum(x) / len(x) - sum(y) / len(y), 6) if common else None
    return {"mean": mean, "ci_low": round(ci[0], 6) if ci else None, "ci_high": round(ci[1], 6) if ci else None,
            "n": len(common)}


def _eval_info(e: EvalEntry, label: str, baseline: EvalEntry | None, samples: int, report_dir: Path | None) -> dict:
    r = e.results
    info = {"name": e.name, "label": label, "mode": e.mode, "model": r.get("model", "?"),
            "dataset": r.get("dataset", "?"), "n": r.get("num_examples"), "link": eval_link(e, report_dir),
            "costs": {c: r.get(c, None if c in GPU_ONLY_COSTS else 0) for c in ("model_size_mb", *EVAL_COSTS)},
            "cpu_ram_scope": r.get("cpu_ram_scope", "process")}
    if e.mode == "retriever_context":
        info["rag_split"] = {q: rag_split(e.rows, q, samples, baseline.rows if baseline else None) for q in QUALITY}
    return info


def build_leaderboard(entries: list[EvalEntry], metric: str = "token_recall", samples: int = 1000,
                      report_dir: Path | None = None) -> dict:
    """The leaderboard as data (what leaderboard.json holds); `metric` is the one md/csv rank by, the
    others are all there too. `report_dir`: where the report goes (folder links are relative to it)."""
    if not entries:
        raise UserError("no finished evals to report on")
    if metric not in QUALITY:
        raise UserError(f"unknown metric {metric!r}; choose one of {', '.join(QUALITY)}")
    systems = group_systems(entries)
    modes = [m for m in MODES if any(m in s.cells for s in systems)]
    labels = cell_labels(entries)
    baseline_of: dict[str, EvalEntry] = {}
    rows = []
    for s in systems:
        for e in s.cells.values():
            if "no_context" in s.cells:
                baseline_of.setdefault(e.name, s.cells["no_context"])
        rows.append({
            "system": s.label, "model": s.model, "dataset": s.dataset, "variant": s.variant,
            "cells": {m: {q: _cell(s.cells[m], q) for q in QUALITY} for m in modes if m in s.cells},
            "costs": {"model_size_mb": max(e.results.get("model_size_mb", 0) for e in s.cells.values())},
            "differences": {q: {f"{a} - {b}": difference(s.cells[a].rows, s.cells[b].rows, q, samples)
                                for a, b in DIFFERENCES if a in s.cells and b in s.cells} for q in QUALITY}})
    best = {}
    for m in modes:
        for q in QUALITY:
            values = [r["cells"][m][q]["mean"] for r in rows
                      if m in r["cells"] and r["cells"][m][q]["mean"] is not None]
            # one value is no contest: nothing to mark
            best[f"{m}/{q}"] = max(values) if len(values) > 1 else None
    evals = [_eval_info(e, labels[e.name], baseline_of.get(e.name), samples, report_dir)
             for e in {s.cells[m].name: s.cells[m] for s in systems for m in modes if m in s.cells}.values()]
    return {"metric": metric, "metrics": list(QUALITY), "correct_at": CORRECT_AT, "modes": modes, "rows": rows,
            "evals": evals, "best": best, "bootstrap_samples": samples}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def cell_text(cell: dict) -> str:
    return f"{_fmt(cell['mean'])} [{_fmt(cell['ci_low'])}, {_fmt(cell['ci_high'])}]"


def share_text(group: dict) -> str:
    return cell_text({"mean": group["share"], "ci_low": group["ci_low"], "ci_high": group["ci_high"]})


def is_best(board: dict, mode: str, metric: str, cell: dict) -> bool:
    return cell["mean"] is not None and cell["mean"] == board["best"][f"{mode}/{metric}"]


def to_markdown(board: dict) -> str:
    metric, modes = board["metric"], board["modes"]
    header = ["system", *modes, COST_LABELS["model_size_mb"]]
    lines = [f"# Leaderboard: {metric} (95% bootstrap CI; best per column in bold)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in board["rows"]:
        cells = []
        for m in modes:
            cell = r["cells"].get(m, {}).get(metric)
            text = cell_text(cell) if cell else "-"
            cells.append(f"**{text}**" if cell and is_best(board, m, metric, cell) else text)
        lines.append("| " + " | ".join([r["system"], *cells, str(r["costs"]["model_size_mb"])]) + " |")
    lines += ["", "## Each eval's own costs", "", "| eval | questions | " + " | ".join(
        COST_LABELS[c] for c in EVAL_COSTS) + " |", "|---|---|" + "---|" * len(EVAL_COSTS)]
    lines += [f"| {e['label']} | {e['n']} | " + " | ".join(cost_text(e["costs"][c]) for c in EVAL_COSTS) + " |"
              for e in board["evals"]]
    diffs = [(r["system"], name, d) for r in board["rows"] for name, d in r["differences"][metric].items()]
    if diffs:
        lines += ["", f"## Paired differences in {metric} (same questions, paired bootstrap CI)", "",
                  "| system | difference | mean [low, high] | questions |", "|---|---|---|---|"]
        lines += [f"| {s} | {name} | {cell_text(d)} | {d['n']} |" for s, name, d in diffs]
    splits = [(e["label"], e["rag_split"][metric]) for e in board["evals"] if e.get("rag_split", {}).get(metric)]
    if splits:
        lines += ["", f"## Retrieval vs reading ({metric} >= {board['correct_at']} counts as right; share "
                      "[95% CI])", "", "| eval | gold retrieved by | questions | " + " | ".join(GROUPS.values())
                  + " | context helped | context hurt |", "|---|---|---|" + "---|" * (len(GROUPS) + 2)]
        for label, s in splits:
            n = s["n"] if s["n"] == s["n_total"] else f"{s['n']} of {s['n_total']}"
            lines.append(f"| {label} | {s['definition']} | {n} | "
                         + " | ".join(share_text(s["groups"][g]) for g in GROUPS)
                         + f" | {s.get('context_helped', '-')} | {s.get('context_hurt', '-')} |")
    return "\n".join(lines) + "\n"


def to_csv(board: dict) -> str:
    """One line per system; per mode every QA metric with its CI, that mode's eval costs and, for
    retriever_context, the split by the board's metric."""
    metric, out = board["metric"], io.StringIO()
    evals = {e["name"]: e for e in board["evals"]}
    split_columns = ["split_definition", "split_n", *(f"{g}{part}" for g in GROUPS for part in ("", "_ci_low",
                                                                                                "_ci_high")),
                     "context_helped", "context_hurt"]
    columns = ["system", "model", "dataset", "variant", "model_size_mb"]
    for m in board["modes"]:
        columns += [f"{m}:{q}{part}" for q in QUALITY for part in ("", "_ci_low", "_ci_high")]
        columns += [f"{m}:{c}" for c in EVAL_COSTS]
        columns += [f"{m}:{c}" for c in split_columns] if m == "retriever_context" else []
    writer = csv.writer(out)
    writer.writerow(columns)
    for r in board["rows"]:
        values = [r["system"], r["model"], r["dataset"], ";".join(f"{k}={v}" for k, v in r["variant"].items()),
                  r["costs"]["model_size_mb"]]
        for m in board["modes"]:
            cells = r["cells"].get(m, {})
            for q in QUALITY:
                values += [cells.get(q, {}).get(k) for k in ("mean", "ci_low", "ci_high")]
            info = evals.get(cells[QUALITY[0]]["eval"]) if cells else None
            values += [info["costs"][c] if info else None for c in EVAL_COSTS]
            if m == "retriever_context":
                s = (info or {}).get("rag_split", {}).get(metric) or {}
                groups = s.get("groups", {})
                values += [s.get("definition"), s.get("n")]
                values += [groups.get(g, {}).get(k) for g in GROUPS for k in ("share", "ci_low", "ci_high")]
                values += [s.get("context_helped"), s.get("context_hurt")]
        writer.writerow(values)
    return out.getvalue()

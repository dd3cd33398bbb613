"""The leaderboard over a run's or a grid's evals: one row per system (model x dataset, plus whatever else
the evals differ in, e.g. retriever.top_k), one column group per mode, each cell `metric [low, high]`
(95% bootstrap CI, the evals' own), the best per column marked; the seed-000 cost columns; and the paired
differences oracle - no_context and retriever - no_context per system (paired bootstrap over the same
questions). Written as leaderboard.csv/.json/.md, plots and a self-contained report.html.

Which config an eval's result depends on (so which settings tell systems apart) is given by the caller
(the stage registry knows: a closed-book eval does not read the retriever).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from components.analysis import plots
from components.core.config import MODES
from components.core.errors import UserError
from components.core.fileio import read_json, read_jsonl, write_json, write_text
from components.core.outputs import RESULTS_FILE
from components.analysis.report_html import COSTS, cell_text, is_best, render_html
from components.analysis.stats import paired_difference_ci

PREDICTIONS = "predictions.jsonl"
QUALITY = ("token_recall", "token_f1", "exact_match", "substring_match")
DIFFERENCES = (("oracle_context", "no_context"), ("retriever_context", "no_context"))
FILES = {"csv": "leaderboard.csv", "json": "leaderboard.json", "md": "leaderboard.md", "html": "report.html"}
PLOT_FILES = {"bars": "leaderboard_bars.png", "speed": "quality_vs_seconds_per_question.png",
              "memory": "quality_vs_peak_memory.png"}
# Settings that never tell systems apart: the mode is the column, the rest is bookkeeping.
NOT_A_SYSTEM = ("experiment.mode", "experiment.modes", "experiment.name", "experiment.output_dir",
                "experiment.shard", "experiment.shards", "experiment.bootstrap_samples")


@dataclass
class EvalEntry:
    name: str  # the step (or folder) it came from
    results: dict
    rows: list[dict]  # predictions.jsonl
    config: dict[str, object] = field(default_factory=dict)  # flat section.field the result depends on

    @property
    def mode(self) -> str:
        return self.results["mode"]


def find_evals(folders: list[Path]) -> list[tuple[str, Path]]:
    """(name, folder) of every finished eval under the folders (shards are left to their merge)."""
    found = []
    for root in folders:
        if not Path(root).exists():
            raise UserError(f"{root}: no such folder")
        for results in sorted(Path(root).rglob(RESULTS_FILE)):
            data = read_json(results)
            if data.get("mode") in MODES and "token_recall" in data and "shard" not in data \
                    and (results.parent / PREDICTIONS).is_file():
                found.append((results.parent.name, results.parent))
    return found


def load_entry(name: str, folder: Path, relevant: Callable[[dict], dict[str, object]]) -> EvalEntry:
    results = read_json(Path(folder) / RESULTS_FILE)
    return EvalEntry(name, results, read_jsonl(Path(folder) / PREDICTIONS), relevant(results["meta"]["config"]))


def _short(value) -> str:
    """A setting as a label: long values (an adapter's folder or model id) by their tail."""
    text = str(value) if value != "" else "none"
    return text if len(text) <= 24 else "…" + text[-20:]


@dataclass
class System:
    model: str
    dataset: str
    variant: dict[str, object]
    cells: dict[str, EvalEntry]  # mode -> eval

    @property
    def label(self) -> str:
        extra = ", ".join(f"{k.rpartition('.')[2]}={_short(v)}" for k, v in self.variant.items())
        return f"{self.model} @ {self.dataset}" + (f" ({extra})" if extra else "")


def _systems(entries: list[EvalEntry]) -> list[System]:
    """Group evals into systems: the settings that differ between evals of one model and dataset (and
    that the evals read) make variants; an eval that does not read a setting serves every variant."""
    groups: dict[tuple, list[EvalEntry]] = {}
    for e in entries:
        groups.setdefault((e.results.get("model", "?"), e.results.get("dataset", "?")), []).append(e)
    systems = []
    for (model, dataset), group in groups.items():
        keys = sorted({k for e in group for k in e.config if k not in NOT_A_SYSTEM})
        varying = [k for k in keys if len({repr(e.config[k]) for e in group if k in e.config}) > 1]
        variants: list[dict] = []
        for e in group:
            v = {k: e.config[k] for k in varying if k in e.config}
            if len(v) == len(varying) and v not in variants:
                variants.append(v)
        for variant in variants or [{}]:
            cells = {}
            for e in group:
                if all(e.config.get(k, variant[k]) == variant[k] for k in variant):
                    if e.mode in cells:
                        raise UserError(f"two {e.mode} evals of {model} @ {dataset} {variant or ''}: "
                                        f"{cells[e.mode].name} and {e.name}; report on one run or grid at a time")
                    cells[e.mode] = e
            systems.append(System(model, dataset, variant, cells))
    return systems


def _cell(e: EvalEntry, metric: str) -> dict:
    r = e.results
    return {"mean": r.get(metric), "ci_low": r.get(f"{metric}_ci_low"), "ci_high": r.get(f"{metric}_ci_high"),
            "n": r.get("num_examples"), "eval": e.name}


def _difference(a: EvalEntry, b: EvalEntry, metric: str, samples: int) -> dict:
    """mean(a) - mean(b) over the questions both answered, with a paired bootstrap CI."""
    first = {r["id"]: r[metric] for r in a.rows}
    second = {r["id"]: r[metric] for r in b.rows}
    common = [q for q in first if q in second]
    x, y = [first[q] for q in common], [second[q] for q in common]
    ci = paired_difference_ci(x, y, samples) if common else None
    mean = round(sum(x) / len(x) - sum(y) / len(y), 6) if common else None
    return {"mean": mean, "ci_low": round(ci[0], 6) if ci else None, "ci_high": round(ci[1], 6) if ci else None,
            "n": len(common)}


def build_leaderboard(entries: list[EvalEntry], metric: str = "token_recall", samples: int = 1000) -> dict:
    """The leaderboard as data (what leaderboard.json holds)."""
    if not entries:
        raise UserError("no finished evals to report on")
    systems = _systems(entries)
    modes = [m for m in MODES if any(m in s.cells for s in systems)]
    rows = []
    for s in systems:
        entries_of = list(s.cells.values())
        rows.append({
            "system": s.label, "model": s.model, "dataset": s.dataset, "variant": s.variant,
            "cells": {m: {q: _cell(s.cells[m], q) for q in QUALITY} for m in modes if m in s.cells},
            "eval_costs": {m: {c: s.cells[m].results.get(c, 0) for c in COSTS} for m in modes if m in s.cells},
            "costs": {"model_size_mb": max(e.results.get("model_size_mb", 0) for e in entries_of),
                      "cpu_ram_used_mb": max(e.results.get("cpu_ram_used_mb", 0) for e in entries_of),
                      "gpu_ram_peak_mb": max(e.results.get("gpu_ram_peak_mb", 0) for e in entries_of),
                      "seconds_per_question": round(sum(e.results.get("seconds_per_question", 0)
                                                        for e in entries_of) / len(entries_of), 4)},
            "differences": {f"{a} - {b}": _difference(s.cells[a], s.cells[b], metric, samples)
                            for a, b in DIFFERENCES if a in s.cells and b in s.cells}})
    best = {}
    for m in modes:
        for q in QUALITY:
            values = [r["cells"][m][q]["mean"] for r in rows
                      if m in r["cells"] and r["cells"][m][q]["mean"] is not None]
            best[f"{m}/{q}"] = max(values) if values else None
    return {"metric": metric, "modes": modes, "rows": rows, "best": best, "bootstrap_samples": samples}


def to_markdown(board: dict) -> str:
    metric, modes = board["metric"], board["modes"]
    header = ["system", *modes, *COSTS]
    lines = [f"# Leaderboard: {metric} (95% bootstrap CI; best per column in bold)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in board["rows"]:
        cells = []
        for m in modes:
            cell = r["cells"].get(m, {}).get(metric)
            text = cell_text(cell) if cell else "-"
            cells.append(f"**{text}**" if cell and is_best(board, m, metric, cell) else text)
        lines.append("| " + " | ".join([r["system"], *cells, *(str(r["costs"][c]) for c in COSTS)]) + " |")
    diffs = [(r["system"], name, d) for r in board["rows"] for name, d in r["differences"].items()]
    if diffs:
        lines += ["", f"## Paired differences in {metric} (same questions, paired bootstrap CI)", "",
                  "| system | difference | mean [low, high] | questions |", "|---|---|---|---|"]
        lines += [f"| {s} | {name} | {cell_text(d)} | {d['n']} |" for s, name, d in diffs]
    return "\n".join(lines) + "\n"


def to_csv(board: dict) -> str:
    out = io.StringIO()
    columns = ["system", "model", "dataset", "variant"] + [f"{m}:{q}{part}" for m in board["modes"] for q in QUALITY
                                                          for part in ("", "_ci_low", "_ci_high")] + list(COSTS)
    writer = csv.writer(out)
    writer.writerow(columns)
    for r in board["rows"]:
        values = [r["system"], r["model"], r["dataset"], ";".join(f"{k}={v}" for k, v in r["variant"].items())]
        for m in board["modes"]:
            for q in QUALITY:
                cell = r["cells"].get(m, {}).get(q, {})
                values += [cell.get("mean"), cell.get("ci_low"), cell.get("ci_high")]
        writer.writerow(values + [r["costs"][c] for c in COSTS])
    return out.getvalue()


def write_plots(board: dict, output_dir: Path) -> dict[str, Path]:
    metric = board["metric"]
    summaries = {m: {r["system"]: r["cells"][m][metric] for r in board["rows"] if m in r["cells"]}
                 for m in board["modes"]}
    systems = [r["system"] for r in board["rows"]]
    points, seen = [], set()
    for r in board["rows"]:  # one marker per eval (a closed-book eval can serve several systems)
        for m, cells in r["cells"].items():
            if cells[metric]["eval"] not in seen:
                seen.add(cells[metric]["eval"])
                points.append((f"{r['system']} / {m}", r["eval_costs"][m], cells[metric]))
    return {
        "bars": plots.metric_bars(summaries, systems, output_dir / PLOT_FILES["bars"], title=f"{metric} per mode"),
        "speed": plots.quality_vs_cost(points, "seconds_per_question", metric,
                                       output_dir / PLOT_FILES["speed"], "seconds per question"),
        "memory": plots.quality_vs_cost(points, "cpu_ram_used_mb", metric,
                                        output_dir / PLOT_FILES["memory"], "peak CPU RAM (MB)")}


def write_leaderboard(board: dict, output_dir: Path) -> dict[str, Path]:
    """leaderboard.csv/.json/.md, the plots and report.html into `output_dir`; name -> path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plot_paths = write_plots(board, output_dir)
    paths = {"csv": write_text(output_dir / FILES["csv"], to_csv(board)),
             "json": write_json(output_dir / FILES["json"], board),
             "md": write_text(output_dir / FILES["md"], to_markdown(board))}
    paths["html"] = write_text(output_dir / FILES["html"], render_html(board, plot_paths))
    return {**paths, **{f"plot_{k}": v for k, v in plot_paths.items()}}

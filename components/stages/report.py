"""The report stage's work: over a run's or a grid's evals, the leaderboard (every QA metric with its CI,
each eval's own costs, paired differences, the retrieval-vs-reading split) as leaderboard.csv/.json/.md,
its plots, and one self-contained report.html with the run's metadata, the fine-tune and
benchmark results of the run, a per-question drill-down and the definitions.

What the run holds besides its evals (its step folders, fine-tune and benchmark results) comes from the
caller on a server (the pipeline's other steps) and is found beside the evals locally (`slm run` puts
every step's folder, with its `.step.json`, under one root).
"""
from __future__ import annotations

import os
from pathlib import Path

from components.analysis import plots
from components.analysis.drilldown import drilldown_data
from components.analysis.evals import EvalEntry
from components.analysis.leaderboard import build_leaderboard, to_csv, to_markdown
from components.analysis.report_html import render_html
from components.analysis.run_info import run_info
from components.core.fileio import read_json, write_json, write_text
from components.core.outputs import RESULTS_FILE, STEP_MANIFEST, TASK_FILE

FILES = {"csv": "leaderboard.csv", "json": "leaderboard.json", "md": "leaderboard.md", "html": "report.html"}
PLOT_FILES = {"bars": "leaderboard_bars.png", "speed": "quality_vs_seconds_per_question.png",
              "memory": "quality_vs_peak_memory.png"}
PLOT_SIZE = (12.5, 4.4)  # inches at 100 dpi: the page shows them at their own size, 1250 px wide
MODE_MARKERS = {"no_context": "o", "oracle_context": "s", "retriever_context": "^"}
EXTRA_STAGES = ("finetune", "benchmark")  # whose results the page shows beside the leaderboard


def write_plots(board: dict, output_dir: Path) -> dict[str, Path]:
    """By the board's metric: bars per system and mode with CI whiskers, and quality against each eval's
    own seconds per question and own peak CPU memory (one marker shape per mode)."""
    metric, evals = board["metric"], {e["name"]: e for e in board["evals"]}
    summaries = {m: {r["system"]: r["cells"][m][metric] for r in board["rows"] if m in r["cells"]}
                 for m in board["modes"]}
    points, markers, seen = [], {}, set()
    for r in board["rows"]:  # one marker per eval (a closed-book eval can serve several systems)
        for m, cells in r["cells"].items():
            name = cells[metric]["eval"]
            if name not in seen:
                seen.add(name)
                points.append((evals[name]["label"], evals[name]["costs"], cells[metric]))
                markers[evals[name]["label"]] = MODE_MARKERS.get(m, "o")
    return {"bars": plots.metric_bars(summaries, [r["system"] for r in board["rows"]],
                                      output_dir / PLOT_FILES["bars"], title=f"{metric} per system and mode",
                                      ylabel=metric, size=PLOT_SIZE),
            "speed": plots.quality_vs_cost(points, "seconds_per_question", metric, output_dir / PLOT_FILES["speed"],
                                           "seconds per question (each eval's own)", markers, PLOT_SIZE),
            "memory": plots.quality_vs_cost(points, "cpu_ram_used_mb", metric, output_dir / PLOT_FILES["memory"],
                                            "peak CPU RAM of each eval (MB)", markers, PLOT_SIZE)}


def _relative(path: Path, start: Path) -> str:
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix() + "/"
    except ValueError:
        return Path(path).resolve().as_uri() + "/"


def local_extras(entries: list[EvalEntry], output_dir: Path) -> dict:
    """The run the evals belong to, found on disk: its step folders (links relative to the report) and
    the results of its finetune and benchmark steps."""
    folders = [e.folder for e in entries if e.folder is not None]
    if not folders:
        return {}
    root = Path(os.path.commonpath([str(Path(f).resolve().parent) for f in folders]))
    extras: dict = {"steps": [], "finetune": [], "benchmark": []}
    for manifest in sorted(root.glob(f"*/{STEP_MANIFEST}")):
        step = manifest.parent
        if step.resolve() == Path(output_dir).resolve():
            continue
        stage = read_json(manifest).get("stage", "")
        task = read_json(step / TASK_FILE) if (step / TASK_FILE).is_file() else {}
        link = {"name": step.name, "stage": stage, "url": task.get("url") or _relative(step, output_dir),
                "kind": "task" if task.get("url") else "folder"}
        extras["steps"].append(link)
        if stage in EXTRA_STAGES and (step / RESULTS_FILE).is_file():
            extras[stage].append({**link, "results": read_json(step / RESULTS_FILE)})
    return extras


def write_report(entries: list[EvalEntry], output_dir: Path, metric: str = "token_recall", samples: int = 1000,
                 extras: dict | None = None) -> tuple[dict, dict[str, Path]]:
    """leaderboard.csv/.json/.md, the plots and report.html into `output_dir`; (board, name -> path).
    `extras`: the run's steps and finetune/benchmark results; None = look beside the evals."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    board = build_leaderboard(entries, metric, samples, output_dir)
    extras = local_extras(entries, output_dir) if extras is None else extras
    plot_paths = write_plots(board, output_dir)
    paths = {"csv": write_text(output_dir / FILES["csv"], to_csv(board)),
             "json": write_json(output_dir / FILES["json"], board),
             "md": write_text(output_dir / FILES["md"], to_markdown(board))}
    page = render_html(board, plot_paths, drilldown_data(board["evals"], entries), run_info(entries), extras)
    paths["html"] = write_text(output_dir / FILES["html"], page)
    return board, {**paths, **{f"plot_{kind}": p for kind, p in plot_paths.items()}}


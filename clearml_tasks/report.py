"""Report template: the leaderboard over the evals of a run or grid (the `eval` input: every eval task
id, comma-separated): leaderboard.csv/.json/.md, plots and report.html as artifacts, the table and plots
in the task's PLOTS tab.

Run: python clearml_tasks/report.py   (on an agent; locally `slm run` ends with it, `slm report` runs it
over output folders or ClearML tasks)
"""
from __future__ import annotations

import sys
from pathlib import Path

from clearml_tasks._task import main
from clearml_tasks._tracker import NullTracker
from clearml_tasks.stages import STAGES
from components.analysis import figures
from components.core.config import AppConfig
from components.stages.report import build_leaderboard, load_entry, write_leaderboard

STAGE = "report"


def eval_depends_on(config: dict) -> dict[str, object]:
    """The settings an eval's result depends on (the registry's cache config), flat `section.field`."""
    depends = STAGES["eval"].cache_config(AppConfig.from_dict(config))
    return {f"{s}.{k}": v for s, fields in depends.items() for k, v in fields.items()}


def report(eval_dirs: list[Path], output_dir: Path, tracker: NullTracker, metric: str = "token_recall") -> dict:
    entries = [load_entry(Path(d).name, Path(d), eval_depends_on) for d in eval_dirs]
    samples = max(e.results["meta"]["config"]["experiment"]["bootstrap_samples"] for e in entries)
    board = build_leaderboard(entries, metric, samples)
    paths = write_leaderboard(board, output_dir)
    table = [["system", *board["modes"]]] + [
        [r["system"], *(r["cells"].get(m, {}).get(metric, {}).get("mean") for m in board["modes"])]
        for r in board["rows"]]
    tracker.report_table("Leaderboard", metric, table)
    tracker.report_plot("Leaderboard", f"{metric} per mode", leaderboard_figure(board))
    tracker.report_html("report", paths["html"])  # DEBUG SAMPLES renders it: the report, read in the browser
    for name, path in paths.items():
        tracker.upload_artifact(Path(path).name, path)  # leaderboard.csv, .json, .md: one stem
    return {"num_systems": len(board["rows"]), "num_evals": len(entries), "leaderboard": str(paths["md"])}


def leaderboard_figure(board: dict) -> dict:
    """The leaderboard's bars (each system per mode, CI whiskers) as an interactive figure for PLOTS."""
    metric = board["metric"]
    summaries = {m: {r["system"]: r["cells"][m][metric] for r in board["rows"] if m in r["cells"]}
                 for m in board["modes"]}
    return figures.metric_bars(summaries, [r["system"] for r in board["rows"]], f"{metric} per mode")


def body(cfg: AppConfig, inputs: dict, output_dir: Path, tracker: NullTracker) -> dict:
    return report(inputs["eval"], output_dir, tracker)


if __name__ == "__main__":
    sys.exit(main(STAGE, body))

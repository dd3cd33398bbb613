"""Report template: the report over the evals of a run or grid (the `eval` input: every eval task id,
comma-separated): leaderboard.csv/.json/.md, plots and report.html as artifacts, the leaderboard as a
table and report.html as a debug sample (it opens in the web UI), on this task and, when it runs as a
pipeline step, on the pipeline controller task too.

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
from components.analysis.evals import load_entry
from components.analysis.leaderboard import cell_text
from components.core.config import AppConfig
from components.core.fileio import read_json
from components.core.outputs import RESULTS_FILE
from components.stages.report import EXTRA_STAGES, FILES, write_report

STAGE = "report"


def eval_depends_on(config: dict) -> dict[str, object]:
    """The settings an eval's result depends on (the registry's cache config), flat `section.field`."""
    depends = STAGES["eval"].cache_config(AppConfig.from_dict(config))
    return {f"{s}.{k}": v for s, fields in depends.items() for k, v in fields.items()}


def leaderboard_table(board: dict) -> list[list]:
    """The table plot: one row per system, `mean [low, high]` per mode, by the board's metric."""
    metric = board["metric"]
    return [["system", *board["modes"]]] + [
        [r["system"], *(cell_text(r["cells"][m][metric]) if m in r["cells"] else "-" for m in board["modes"])]
        for r in board["rows"]]


def pipeline_extras(pipeline: NullTracker, own_id: str) -> dict:
    """The pipeline's other steps (links to their tasks) and its finished finetune/benchmark results."""
    extras: dict = {"steps": [], "finetune": [], "benchmark": []}
    for step in sorted((s for s in pipeline.steps() if s["id"] != own_id), key=lambda s: s["name"]):
        stage = next((s for s in STAGES if step["name"].startswith(s)), "")
        link = {"name": step["name"], "stage": stage, "url": step["url"], "kind": "task"}
        extras["steps"].append(link)
        if stage in EXTRA_STAGES and step["status"] in ("completed", "published"):
            folder = pipeline.step_output(step["id"])
            if folder is not None and (folder / RESULTS_FILE).is_file():
                extras[stage].append({**link, "results": read_json(folder / RESULTS_FILE)})
    return extras


def leaderboard_figure(board: dict) -> dict:
    """The leaderboard's bars (each system per mode, CI whiskers) as an interactive figure
    (components.stages.report.write_plots draws the same as a PNG)."""
    metric = board["metric"]
    summaries = {m: {r["system"]: r["cells"][m][metric] for r in board["rows"] if m in r["cells"]}
                 for m in board["modes"]}
    return figures.metric_bars(summaries, [r["system"] for r in board["rows"]], f"{metric} per system and mode")


def report(eval_dirs: list[Path], output_dir: Path, tracker: NullTracker, metric: str = "token_recall") -> dict:
    entries = [load_entry(Path(d).name, Path(d), eval_depends_on) for d in eval_dirs]
    samples = max(e.results["meta"]["config"]["experiment"]["bootstrap_samples"] for e in entries)
    pipeline = tracker.pipeline()
    board, paths = write_report(entries, output_dir, metric, samples,
                                pipeline_extras(pipeline, tracker.task_id) if pipeline is not None else None)
    for target in (tracker, pipeline) if pipeline is not None else (tracker,):
        target.report_table("Leaderboard", metric, leaderboard_table(board))
        target.report_media("report", FILES["html"], paths["html"])
        if target is pipeline:
            target.upload_artifact(FILES["html"], paths["html"])
    # The bars as an interactive plot in PLOTS; the PNGs, like every file, are artifacts (and in `output`).
    tracker.report_plot("Leaderboard", f"{metric} per system and mode", leaderboard_figure(board))
    for path in paths.values():
        tracker.upload_artifact(Path(path).name, path)  # leaderboard.csv, .json, .md: one stem
    return {"num_systems": len(board["rows"]), "num_evals": len(entries), "leaderboard": str(paths["md"]),
            "report": str(paths["html"])}


def body(cfg: AppConfig, inputs: dict, output_dir: Path, tracker: NullTracker) -> dict:
    return report(inputs["eval"], output_dir, tracker)


if __name__ == "__main__":
    sys.exit(main(STAGE, body))

"""Eval template: the model answers every selected question in one mode (no_context, oracle_context,
retriever_context); metrics, predictions and memory are reported and uploaded.

Run: python clearml_tasks/eval.py experiment_mode=oracle_context   (or `slm eval`)
"""
from __future__ import annotations

import sys
from pathlib import Path

from components.core.config import AppConfig
from components.core.console import progress_bar
from components.core.outputs import MEMORY_FILE, PREDICTIONS_FILE
from components.stages.eval import run_eval
from components.core.outputs import RESULTS_FILE
from clearml_tasks._task import main
from clearml_tasks._tracker import NullTracker

STAGE = "eval"


def body(cfg: AppConfig, inputs: dict, output_dir: Path, tracker: NullTracker) -> dict:
    results = run_eval(cfg, cfg.experiment.mode, inputs["ingest"], inputs.get("index"), output_dir,
                       progress=progress_bar)
    return report_eval(results, output_dir, tracker)


def report_eval(results: dict, output_dir: Path, tracker: NullTracker) -> dict:
    """An eval's (or a merge's) metrics in the Final Metrics table and single values, its files as artifacts."""
    tracker.report_results({k: v for k, v in results.items() if k not in ("meta", "question_ids")},
                           title="Final Metrics")
    for name in (RESULTS_FILE, PREDICTIONS_FILE, MEMORY_FILE):
        tracker.upload_artifact(Path(name).stem, output_dir / name)
    return results


if __name__ == "__main__":
    sys.exit(main(STAGE, body))

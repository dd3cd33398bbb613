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
from components.stages.resume_log import PARTIAL_FILE
from components.core.outputs import RESULTS_FILE
from clearml_tasks._task import main
from clearml_tasks._tracker import NullTracker

STAGE = "eval"


PARTIAL_ARTIFACT = Path(PARTIAL_FILE).stem  # "predictions.partial"


def body(cfg: AppConfig, inputs: dict, output_dir: Path, tracker: NullTracker) -> dict:
    # An earlier attempt of this task whose agent died left its finished batches as an artifact; the
    # eval skips them when the plan's fingerprint matches (components.stages.resume_log).
    if tracker.restore_progress(PARTIAL_ARTIFACT, output_dir / PARTIAL_FILE):
        print(f"found {PARTIAL_FILE} of an earlier attempt of this task", flush=True)

    reported = [0]

    def report_progress(done: int) -> None:
        # one point per finished batch, also a sign of life; a resumed run reports the batches it reused
        # (the attempt that did them may have died before its reports left)
        for n in range(reported[0] + 1, done + 1):
            tracker.report_scalar("progress", "batches_done", n, iteration=n)
        reported[0] = max(reported[0], done)

    def keep(path: Path, done: int, total: int) -> None:
        report_progress(done)
        tracker.keep_progress(PARTIAL_ARTIFACT, path, {"batches_done": done, "batches": total})

    results = run_eval(cfg, cfg.experiment.mode, inputs["ingest"], inputs.get("index"), output_dir,
                       progress=progress_bar, keep_progress=keep)
    report_progress(results["num_batches"] if cfg.experiment.shard < 0 else reported[0])
    if results["resumed_batches"]:
        print(f"resumed: reused {results['resumed_batches']} of {results['num_batches']} batches from "
              f"{PARTIAL_FILE}, generated the rest", flush=True)
    results = report_eval(results, output_dir, tracker)
    tracker.drop_progress(PARTIAL_ARTIFACT)
    return results


def report_eval(results: dict, output_dir: Path, tracker: NullTracker) -> dict:
    """An eval's (or a merge's) metrics in the Final Metrics table and single values, its files as artifacts."""
    tracker.report_results({k: v for k, v in results.items() if k not in ("meta", "question_ids")},
                           title="Final Metrics")
    for name in (RESULTS_FILE, PREDICTIONS_FILE, MEMORY_FILE):
        tracker.upload_artifact(Path(name).stem, output_dir / name)
    return results


if __name__ == "__main__":
    sys.exit(main(STAGE, body))

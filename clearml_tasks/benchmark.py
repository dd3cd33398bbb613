"""Benchmark template: the base model against base + the finetune stage's adapter on held-out questions;
means with bootstrap CIs and tuned-minus-base deltas are reported, predictions, plots and the Markdown
report uploaded.

Run: python clearml_tasks/benchmark.py benchmark.max_samples=100   (or `slm benchmark`)
"""
from __future__ import annotations

import sys
from pathlib import Path

from components.stages.benchmark import BENCHMARK_FILE, PREDICTION_FILES, REPORT_FILE, run_benchmark
from components.core.config import AppConfig
from components.core.console import progress_bar
from clearml_tasks._task import main
from clearml_tasks._tracker import NullTracker

STAGE = "benchmark"


def body(cfg: AppConfig, inputs: dict, output_dir: Path, tracker: NullTracker) -> dict:
    results = run_benchmark(cfg, inputs["ingest"], inputs["finetune"], output_dir, progress=progress_bar)
    # The nested summary (CIs per model) is in the uploaded results file; the table shows the means.
    tracker.report_results({k: v for k, v in results.items() if k not in ("meta", "summary")},
                           title="Final Metrics")
    for plot in map(Path, results["plots"]):
        tracker.report_image("benchmark", plot)
        tracker.upload_artifact(plot.stem, plot)
    for name in (BENCHMARK_FILE, REPORT_FILE, *PREDICTION_FILES.values()):
        tracker.upload_artifact(Path(name).stem, output_dir / name)
    return results


if __name__ == "__main__":
    sys.exit(main(STAGE, body))

"""Benchmark template: the base model against base + the finetune stage's adapter on held-out questions;
means with bootstrap CIs and tuned-minus-base deltas are reported, predictions, plots and the Markdown
report uploaded.

Run: python clearml_tasks/benchmark.py benchmark.max_samples=100   (or `slm benchmark`)
"""
from __future__ import annotations

import sys
from pathlib import Path

from components.core.fileio import read_jsonl
from components.stages.benchmark import BENCHMARK_FILE, MODELS, PREDICTION_FILES, REPORT_FILE, figures, run_benchmark
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
    rows = {m: read_jsonl(output_dir / PREDICTION_FILES[m]) for m in MODELS}
    for name, figure in figures(results["summary"], rows).items():  # interactive in PLOTS
        tracker.report_plot("benchmark", name, figure)
    for plot in map(Path, results["plots"]):  # the same charts as PNG files
        tracker.upload_artifact(plot.stem, plot)
    for name in (BENCHMARK_FILE, REPORT_FILE, *PREDICTION_FILES.values()):
        tracker.upload_artifact(Path(name).stem, output_dir / name)
    return results


if __name__ == "__main__":
    sys.exit(main(STAGE, body))

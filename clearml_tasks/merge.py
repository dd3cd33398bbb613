"""Merge template: the shards of one eval (experiment.shards > 1) joined into that eval's outputs, exactly
the unsharded run's predictions and metrics.

Run: python clearml_tasks/merge.py   (on an agent, with inputs/eval = the shard task ids, comma-separated;
locally `slm run experiment.shards=N` adds these steps)
"""
from __future__ import annotations

import sys
from pathlib import Path

from clearml_tasks._task import main
from clearml_tasks._tracker import NullTracker
from components.config import AppConfig
from components.eval import MEMORY_FILE, PREDICTIONS_FILE
from components.merge import merge_shards
from components.outputs import RESULTS_FILE

STAGE = "merge"


def body(cfg: AppConfig, inputs: dict, output_dir: Path, tracker: NullTracker) -> dict:
    results = merge_shards(inputs["eval"], output_dir)
    tracker.report_results({k: v for k, v in results.items() if k != "meta"}, title="Final Metrics")
    for name in (RESULTS_FILE, PREDICTIONS_FILE, MEMORY_FILE):
        tracker.upload_artifact(Path(name).stem, output_dir / name)
    return results


if __name__ == "__main__":
    sys.exit(main(STAGE, body))

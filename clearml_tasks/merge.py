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
from components.core.config import AppConfig
from clearml_tasks.eval import report_eval
from components.stages.merge import merge_shards

STAGE = "merge"


def body(cfg: AppConfig, inputs: dict, output_dir: Path, tracker: NullTracker) -> dict:
    return report_eval(merge_shards(inputs["eval"], output_dir), output_dir, tracker)


if __name__ == "__main__":
    sys.exit(main(STAGE, body))

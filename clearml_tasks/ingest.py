"""Ingest template: load a QA dataset, normalise it, split train/test, store it as artifacts.

Run: python clearml_tasks/ingest.py dataset=local_nq   (or `slm ingest`)
"""
from __future__ import annotations

import sys
from pathlib import Path

from components.config import AppConfig
from components.ingest import run_ingest
from clearml_tasks._task import main
from clearml_tasks._tracker import NullTracker

STAGE = "ingest"


def body(cfg: AppConfig, inputs: dict, output_dir: Path, tracker: NullTracker) -> dict:
    manifest = run_ingest(cfg.dataset, output_dir)
    for name in ("questions", "passages", "train", "test"):
        tracker.upload_artifact(name, output_dir / f"{name}.jsonl")
    tracker.report_results(manifest, title="Ingest")
    return manifest


if __name__ == "__main__":
    sys.exit(main(STAGE, body))

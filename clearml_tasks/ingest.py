"""Ingest template: load a QA dataset, normalise it, split train/test, store it as artifacts; a
`clearml://` dataset is read from ClearML Datasets (its id recorded), and on a server the output is
published as a Dataset version of its own.

Run: python clearml_tasks/ingest.py dataset=local_nq   (or `slm ingest`)
"""
from __future__ import annotations

import sys
from pathlib import Path

from clearml_tasks._datasets import publish_ingested, resolve_dataset
from clearml_tasks._task import main
from clearml_tasks._tracker import NullTracker
from components.core.config import AppConfig
from components.core.fileio import write_json
from components.stages.ingest import run_ingest
from components.data.schema import INGEST_MANIFEST
from components.data.sources import display_source

STAGE = "ingest"


def body(cfg: AppConfig, inputs: dict, output_dir: Path, tracker: NullTracker) -> dict:
    given = cfg.dataset.path
    cfg, source = resolve_dataset(cfg)  # clearml://... -> its local copy, and the exact dataset id read
    manifest = {**run_ingest(cfg.dataset, output_dir), **source, "source": display_source(given)}
    if source:
        tracker.set_properties(source)
    if tracker.online and cfg.dataset.publish:
        manifest["ingested_dataset_id"] = publish_ingested(output_dir, cfg, source)
    write_json(output_dir / INGEST_MANIFEST, manifest)
    for name in ("questions", "passages", "train", "test"):
        tracker.upload_artifact(name, output_dir / f"{name}.jsonl")
    tracker.report_results(manifest, title="Ingest")
    return manifest


if __name__ == "__main__":
    sys.exit(main(STAGE, body))

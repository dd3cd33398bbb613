"""Index template: a BM25 / dense / hybrid retrieval index over the ingested passages, with its size and
retrieval quality (gold-passage and answer-in-passage hit@k).

Run: python clearml_tasks/index.py retriever.kind=dense   (or `slm index`)
"""
from __future__ import annotations

import sys
from pathlib import Path

from components.core.config import AppConfig
from components.stages.index import run_index
from clearml_tasks._task import main
from clearml_tasks._tracker import NullTracker

STAGE = "index"


def body(cfg: AppConfig, inputs: dict, output_dir: Path, tracker: NullTracker) -> dict:
    results = run_index(cfg.retriever, inputs["ingest"], output_dir)
    tracker.report_results(results, title="Final Metrics")
    tracker.upload_artifact("index_results", output_dir / "index_results.json")
    return results


if __name__ == "__main__":
    sys.exit(main(STAGE, body))

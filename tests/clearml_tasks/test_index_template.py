"""The index template (clearml_tasks/index.py; its name is unique across tests/, so not test_index.py, which
tests the stage itself): the body builds the index over its ingest input, reports the results and uploads
index_results.json; run through the template glue it records its parent's dataset."""
from __future__ import annotations

from pathlib import Path

from clearml_tasks import index as index_template
from clearml_tasks._task import run_stage
from clearml_tasks._tracker import NullTracker
from components.core.fileio import read_json, write_json
from components.core.outputs import INDEX_RESULTS_FILE, INDEX_SUBDIR
from components.core.overrides import build_config
from helpers import CAPITALS, write_ingest_dir


class Recorder(NullTracker):
    def __init__(self):
        self.reported: list[tuple[dict, str]] = []
        self.uploaded: dict[str, Path] = {}

    def report_results(self, results, title="Final Metrics"):
        self.reported.append((results, title))

    def upload_artifact(self, name, obj):
        self.uploaded[name] = Path(obj)


def test_body_indexes_its_ingest_input_reports_and_uploads_the_results(tmp_path):
    ingest = write_ingest_dir(tmp_path / "ingest")
    tracker = Recorder()
    cfg = build_config(["retriever.hit_ks=[1,2]"])
    results = index_template.body(cfg, {"ingest": ingest}, tmp_path / "out", tracker)
    assert results == read_json(tmp_path / "out" / INDEX_RESULTS_FILE)
    assert results["num_passages"] == results["num_questions"] == len(CAPITALS)
    assert results["gold_hit@1"] == 1.0  # "capital of X" finds the one passage naming X
    assert tracker.reported == [(results, "Final Metrics")]
    assert tracker.uploaded == {"index_results": tmp_path / "out" / INDEX_RESULTS_FILE}


def test_the_template_run_records_its_config_with_the_ingest_dataset(tmp_path):
    ingest = write_ingest_dir(tmp_path / "ingest")
    write_json(ingest / "config.json", build_config(["dataset=local_nq"]).to_dict())
    out = tmp_path / "index"
    results = run_stage("index", index_template.body, build_config(["retriever.hit_ks=[1]"]),
                        {"ingest": str(ingest)}, out, "none")
    assert results["task_id"] == "" and results["session_dir"] == ""
    assert (out / INDEX_SUBDIR).is_dir() and (out / INDEX_RESULTS_FILE).is_file()
    recorded = read_json(out / "config.json")
    assert recorded["dataset"]["name"] == "local_nq"  # the parent's, not the default demo
    assert recorded["retriever"]["hit_ks"] == [1]

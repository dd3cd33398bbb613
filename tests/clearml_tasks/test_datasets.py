"""ClearML Datasets without a server: `clearml://` references, the one-line errors where a server is
needed, and ingesting an earlier ingest's output folder (what a published dataset version holds)."""
from __future__ import annotations

import pytest

from clearml_tasks._datasets import parse_ref, register_dataset, resolve_dataset
from clearml_tasks._tracking import resolve_tracking
from components.core.config import DatasetConfig
from components.core.errors import UserError
from components.stages.ingest import run_ingest
from components.core.overrides import build_config
from components.data.sources import resolve_source


@pytest.mark.parametrize("path, expected", [
    ("clearml://0123456789abcdef0123456789abcdef", {"dataset_id": "0123456789abcdef0123456789abcdef"}),
    ("clearml://slm/datasets/nq-open", {"dataset_project": "slm/datasets", "dataset_name": "nq-open"}),
    ("clearml://slm/nq-open@1.2", {"dataset_project": "slm", "dataset_name": "nq-open", "dataset_version": "1.2"}),
    ("clearml://nq-open", {"dataset_name": "nq-open"})])
def test_clearml_references(path, expected):
    assert parse_ref(path) == expected


def test_a_bad_reference_and_no_server_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="expected clearml://<dataset id>"):
        parse_ref("clearml://")
    resolve_tracking("offline")
    with pytest.raises(UserError, match="needs a ClearML server"):
        resolve_dataset(build_config(["dataset.path=clearml://slm/nq-open"]))
    with pytest.raises(UserError, match="needs a ClearML server"):
        register_dataset(str(tmp_path / "x.jsonl"), "x", "p")
    with pytest.raises(UserError, match="read by the ingest stage"):
        resolve_source(DatasetConfig(path="clearml://slm/nq-open"))
    cfg = build_config([])
    assert resolve_dataset(cfg) == (cfg, {})


def test_an_ingest_output_folder_is_ingested_as_it_is_and_split_again(demo_ingest_dir, tmp_path):
    manifest = run_ingest(DatasetConfig(path=str(demo_ingest_dir), test_fraction=0.5), tmp_path / "again")
    assert manifest["format"] == "ingested" and manifest["num_questions"] == 42 and manifest["num_passages"] == 66
    assert manifest["num_test"] == 21
    for name in ("questions.jsonl", "passages.jsonl"):
        assert (tmp_path / "again" / name).read_bytes() == (demo_ingest_dir / name).read_bytes()
    with pytest.raises(UserError, match="is a directory"):
        run_ingest(DatasetConfig(path=str(tmp_path)), tmp_path / "nope")  # a folder that is no ingest output

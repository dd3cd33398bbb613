"""`dataset.path` resolved to a local file: builtin, local paths and ingest folders, S3 (downloaded into
the cache), hf: (converted rows) and one-line errors for what cannot be resolved."""
from __future__ import annotations

import json
import re
import shutil
import sys
import types
from pathlib import Path

import pytest

from components.core.config import DatasetConfig
from components.core.errors import UserError
from components.data import sources
from components.data.schema import PASSAGES_FILE, QUESTIONS_FILE
from components.data.sources import BUILTIN_DATASETS, display_source, resolve_source
from components.stages.ingest import run_ingest

from helpers import FIXTURES


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def ingest(tmp_path: Path, path: str, **fields) -> tuple[dict, Path]:
    out = tmp_path / "out"
    return run_ingest(DatasetConfig(path=path, **fields), out, cache_dir=tmp_path / "cache"), out


@pytest.mark.parametrize("path, phrase", [
    ("no/such/file.jsonl", "no/such/file.jsonl: file not found"),
    (".", ".: is a directory"),
    ("builtin:nope", "unknown builtin dataset 'nope'"),
    ("s3://bucket-only", "s3://bucket-only: expected s3://bucket/key"),
    ("hf:", "hf:: expected hf:<dataset name>"),
])
def test_unresolvable_sources(tmp_path, path, phrase):
    with pytest.raises(UserError, match="^" + re.escape(phrase)):
        resolve_source(DatasetConfig(path=path), tmp_path)


def test_s3_source_downloads_into_the_cache(tmp_path, monkeypatch):
    calls = []

    def fake_download_s3(uri: str, dest_dir: Path) -> Path:
        calls.append((uri, dest_dir))
        target = dest_dir / "nq_open.jsonl"
        shutil.copy(FIXTURES / "nq_open.jsonl", target)
        return target

    monkeypatch.setitem(sys.modules, "components.data.storage",
                        types.SimpleNamespace(download_s3=fake_download_s3))
    manifest, _ = ingest(tmp_path, "s3://datasets/nq/nq_open.jsonl")
    ((uri, dest_dir),) = calls
    assert uri == "s3://datasets/nq/nq_open.jsonl"
    assert dest_dir.is_dir() and (tmp_path / "cache") in dest_dir.parents
    assert (manifest["format"], manifest["source"], manifest["num_questions"]) == (
        "nq_open", "s3://datasets/nq/nq_open.jsonl", 3)


def test_display_source_drops_credentials():
    assert display_source("s3://key:secret@minio:9000/bucket/a.jsonl") == "s3://minio:9000/bucket/a.jsonl"
    assert display_source("s3://bucket/a.jsonl") == "s3://bucket/a.jsonl"
    assert display_source("data/a.jsonl") == "data/a.jsonl"


def fake_datasets(monkeypatch, rows: list[dict]) -> list[tuple]:
    calls = []

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        return rows

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_hf_source_converts_rows_to_normalized(tmp_path, monkeypatch):
    calls = fake_datasets(monkeypatch, [
        {"question": "who wrote it", "answer": ["Ann"]},
        {"id": "s1", "question": "what is red", "title": "Colours", "context": "Red is a colour.",
         "answers": {"text": ["a colour", "a colour"], "answer_start": [7, 7]}},
        {"question": "unanswerable?", "answers": {"text": [], "answer_start": []}},
        {"question": "trivia", "answer": {"value": "Paris", "aliases": ["City of Light"]}},
    ])
    manifest, out = ingest(tmp_path, "hf:org/qa", hf_split="test")
    assert calls == [("org/qa", None, "test")]
    assert (manifest["format"], manifest["source"], manifest["num_questions"], manifest["num_passages"],
            manifest["num_questions_with_gold"]) == ("normalized", "hf:org/qa", 3, 1, 1)
    questions = read_lines(out / QUESTIONS_FILE)
    assert [(q["id"], q["answers"]) for q in questions] == [
        ("q1", ["Ann"]), ("s1", ["a colour"]), ("q3", ["Paris", "City of Light"])]
    assert read_lines(out / PASSAGES_FILE)[0]["text"] == "Red is a colour."


def test_hf_rows_without_question_or_answer_are_an_error(tmp_path, monkeypatch):
    fake_datasets(monkeypatch, [{"question": "q", "answer": "a"}, {"query": "q", "label": "a"}])
    with pytest.raises(UserError, match=r"^hf:org/qa \(validation\) row 2: expected a 'question'"):
        resolve_source(DatasetConfig(path="hf:org/qa"), tmp_path)


def test_builtin_demo_is_the_packaged_file():
    path = resolve_source(DatasetConfig(path="builtin:demo"))
    assert path == BUILTIN_DATASETS["demo"] and path.is_file()
    assert path.parent.name == "demo_data"


def test_local_paths_files_ingest_folders_and_home(tmp_path, monkeypatch):
    data = tmp_path / "qa.jsonl"
    data.write_text("{}\n")
    assert resolve_source(DatasetConfig(path=f"  {data}  ")) == data  # surrounding blanks are dropped
    folder = tmp_path / "ingested"
    folder.mkdir()
    (folder / QUESTIONS_FILE).write_text("")
    with pytest.raises(UserError, match="is a directory"):  # questions without passages: not an ingest output
        resolve_source(DatasetConfig(path=str(folder)))
    (folder / PASSAGES_FILE).write_text("")
    assert resolve_source(DatasetConfig(path=str(folder))) == folder
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_source(DatasetConfig(path="~/qa.jsonl")) == data


def test_a_clearml_dataset_is_left_to_the_ingest_stage(tmp_path):
    with pytest.raises(UserError, match=r"^dataset.path=clearml://abc: a ClearML dataset is read by the ingest"):
        resolve_source(DatasetConfig(path="clearml://abc"), tmp_path)


def test_s3_cache_has_one_folder_per_uri(tmp_path, monkeypatch):
    def fake_download_s3(uri: str, dest_dir: Path) -> Path:
        target = dest_dir / uri.rsplit("/", 1)[1]
        target.write_text(uri)
        return target

    monkeypatch.setitem(sys.modules, "components.data.storage", types.SimpleNamespace(download_s3=fake_download_s3))
    first = resolve_source(DatasetConfig(path="s3://b/x/qa.jsonl"), tmp_path)
    other = resolve_source(DatasetConfig(path="s3://b/y/qa.jsonl"), tmp_path)
    assert first.name == other.name == "qa.jsonl" and first.parent != other.parent  # never overwrite each other
    assert first.read_text() == "s3://b/x/qa.jsonl" and first.parent.parent == tmp_path / "s3"
    assert resolve_source(DatasetConfig(path="s3://b/x/qa.jsonl"), tmp_path) == first
    monkeypatch.setenv("SLM_CACHE_DIR", str(tmp_path / "env-cache"))  # no cache_dir: the cache root
    assert (tmp_path / "env-cache" / "s3") in resolve_source(DatasetConfig(path="s3://b/z.jsonl")).parents
    with pytest.raises(UserError, match=r"^s3://b/folder/: expected s3://bucket/key naming one file"):
        resolve_source(DatasetConfig(path="s3://b/folder/"), tmp_path)
    with pytest.raises(UserError, match=r"^s3://minio:9000/b/: expected") as err:
        resolve_source(DatasetConfig(path="s3://key:secret@minio:9000/b/"), tmp_path)
    assert "secret" not in str(err.value)


def test_hf_rows_land_in_a_cache_file_named_by_dataset_config_and_split(tmp_path, monkeypatch):
    calls = fake_datasets(monkeypatch, [{"question": "q?", "answers": ["a"], "context": "  ", "id": 3.5}])
    path = resolve_source(DatasetConfig(path="hf:org/q a", hf_config="rc.nocontext", hf_split="train[:10]"), tmp_path)
    assert calls == [("org/q a", "rc.nocontext", "train[:10]")]
    assert path == tmp_path / "hf" / "org_q_a--rc.nocontext--train_10_.jsonl"
    assert read_lines(path) == [{"question": "q?", "answers": ["a"]}]  # a blank context and a float id are dropped


def test_a_dataset_the_hub_cannot_load_is_one_line(tmp_path, monkeypatch):
    def load_dataset(name, config, split):
        raise FileNotFoundError("Dataset 'org/none' doesn't exist on the Hub\nmore detail")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(UserError) as err:
        resolve_source(DatasetConfig(path="hf:org/none", hf_split="test"), tmp_path)
    assert str(err.value) == ("hf:org/none: cannot load config 'default' split 'test' "
                              "(FileNotFoundError: Dataset 'org/none' doesn't exist on the Hub)")


@pytest.mark.parametrize("value, expected", [
    ("Paris", ["Paris"]),
    (["a", "b", "a", "", "  ", 3], ["a", "b"]),  # unique, non-blank strings
    ({"text": ["x", "y"], "answer_start": [0, 4]}, ["x", "y"]),  # SQuAD
    ({"value": "Paris", "aliases": ["Paris", "City of Light"]}, ["Paris", "City of Light"]),  # TriviaQA
    ({"text": []}, []),  # SQuAD v2 unanswerable
    (42, []),
])
def test_answer_shapes_of_hub_datasets(value, expected):
    assert sources._answer_list(value) == expected

"""The shared output names, the cache folder, and clearing a rerun's final outputs."""
from __future__ import annotations

from pathlib import Path

from components.core import outputs
from components.core.outputs import RESULTS_FILE, cache_root, clear_outputs


def test_cache_root_is_the_environment_variable_else_the_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SLM_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_root() == tmp_path / "cache"
    monkeypatch.setenv("SLM_CACHE_DIR", "")  # set but empty: the default
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "slm-experiments"
    monkeypatch.delenv("SLM_CACHE_DIR")
    assert cache_root() == tmp_path / "home" / ".cache" / "slm-experiments"


def test_clear_outputs_removes_the_named_files_and_folders_only(tmp_path):
    (tmp_path / RESULTS_FILE).write_text("{}")
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "bm25.bin").write_bytes(b"x")
    (tmp_path / "keep.txt").write_text("mine")
    clear_outputs(tmp_path, [RESULTS_FILE, "index", "never-written.json"])  # a missing name is fine
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    clear_outputs(str(tmp_path), ["keep.txt"])  # a str folder works too
    assert list(tmp_path.iterdir()) == []


def test_stage_folder_and_file_names_are_distinct():
    names = [outputs.RESULTS_FILE, outputs.PREDICTIONS_FILE, outputs.MEMORY_FILE, outputs.INDEX_SUBDIR,
             outputs.INDEX_RESULTS_FILE, outputs.ADAPTER_DIR, outputs.CHECKPOINT_DIR, outputs.STEP_MANIFEST]
    assert len(set(names)) == len(names)
    assert all(Path(n).name == n for n in names)  # plain names inside a step folder, never paths
    assert outputs.MB == 2 ** 20

"""Atomic writes give results the mode a plain write would (0o666 / 0o777 less the umask), so others on a
shared server can read them, and leave no temporary file behind."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from components.core.fileio import atomic_path, temp_dir_beside, write_json, write_jsonl, write_text


@pytest.fixture
def umask():
    """Run the test under a given umask, restoring the process's own afterwards."""
    saved = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(saved)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_result_files_are_readable_by_group_and_others_under_umask_022(tmp_path, umask):
    umask(0o022)
    written = [write_text(tmp_path / "report.html", "<html></html>"), write_json(tmp_path / "results.json", {"a": 1}),
               write_jsonl(tmp_path / "predictions.jsonl", [{"id": "q1"}])]
    with atomic_path(tmp_path / "trainer_state.json") as tmp:
        with open(tmp, "w") as f:  # how a library writes into the path it is given
            f.write("{}")
    written.append(tmp_path / "trainer_state.json")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    for path in written:
        assert _mode(path) == _mode(plain) == 0o644, path.name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [*written, plain])


def test_the_mode_follows_the_umask(tmp_path, umask):
    umask(0o077)  # a user who keeps results private gets private results
    assert _mode(write_text(tmp_path / "a.txt", "x")) == 0o600
    umask(0o002)  # a group-writable setup (shared project folders)
    assert _mode(write_text(tmp_path / "b.txt", "x")) == 0o664


def test_an_overwrite_takes_the_ordinary_mode_too(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "results.json"
    path.write_text("old")
    path.chmod(0o600)  # as the previous version of this helper left it
    write_json(path, {"new": True})
    assert _mode(path) == 0o644


def test_folders_renamed_into_place_keep_mkdirs_mode(tmp_path, umask):
    umask(0o022)
    staging = temp_dir_beside(tmp_path / "index")
    assert staging.parent == tmp_path and staging.name.startswith(".index.")
    os.replace(staging, tmp_path / "index")
    assert _mode(tmp_path / "index") == 0o755


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "results.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []

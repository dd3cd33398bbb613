"""The code version the step cache keys on: the stage packages' file bytes (not their times, not bytecode) and the numeric
libraries' versions; one digest per process."""
from __future__ import annotations

import os

from components.core.code_version import LIBRARIES, code_version, library_versions, source_digest

LIBS = {"torch": "2.13.0", "transformers": "5.23.0"}


def _tree(root, body: str = "x = 1\n"):
    (root / "pkg" / "sub").mkdir(parents=True, exist_ok=True)
    (root / "pkg" / "a.py").write_text(body)
    (root / "pkg" / "sub" / "b.py").write_text("y = 2\n")
    (root / "pkg" / "notes.txt").write_text("not code")
    return root


def test_an_edit_changes_the_digest_a_touch_does_not(tmp_path):
    before = source_digest(_tree(tmp_path), ("pkg",), LIBS)
    os.utime(tmp_path / "pkg" / "a.py", (0, 0))  # a checkout's new mtimes are not a change
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")  # nor is bytecode
    assert source_digest(tmp_path, ("pkg",), LIBS) == before
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    edited = source_digest(tmp_path, ("pkg",), LIBS)
    (tmp_path / "pkg" / "notes.txt").write_text("edited")  # a shipped file (report assets, demo data) counts
    assert len({before, edited, source_digest(tmp_path, ("pkg",), LIBS)}) == 3


def test_a_moved_file_or_a_new_one_changes_it(tmp_path):
    before = source_digest(_tree(tmp_path), ("pkg",), LIBS)
    (tmp_path / "pkg" / "sub" / "b.py").rename(tmp_path / "pkg" / "b.py")
    moved = source_digest(tmp_path, ("pkg",), LIBS)
    (tmp_path / "pkg" / "c.py").write_text("")
    assert len({before, moved, source_digest(tmp_path, ("pkg",), LIBS)}) == 3


def test_a_library_upgrade_changes_it(tmp_path):
    _tree(tmp_path)
    assert source_digest(tmp_path, ("pkg",), LIBS) != source_digest(tmp_path, ("pkg",), {**LIBS, "torch": "2.14.0"})


def test_this_checkout_has_one_version_naming_the_installed_libraries():
    versions = library_versions()
    assert set(versions) == set(LIBRARIES) and versions["torch"] != "absent"
    assert code_version() == code_version() and len(code_version()) == 16
    assert set(code_version()) <= set("0123456789abcdef")

"""The code version the step cache keys each stage on: the modules its entry can run (imports anywhere in a
module, module-naming strings of lazy registries, the packages above them, the data folders they name) and
the numeric libraries' versions; their bytes, not their times; an unrelated module is not in it."""
from __future__ import annotations

import os

from components.core.code_version import LIBRARIES, ROOT, code_files, code_version, library_versions, source_digest

LIBS = {"torch": "2.13.0", "transformers": "5.23.0"}
TREE = {
    "clearml_tasks/__init__.py": "",
    "clearml_tasks/entry.py": "from components.core import runs\n",
    "components/__init__.py": "",
    "components/core/__init__.py": "",
    "components/core/runs.py": ('ASSETS = "assets"\n\ndef go():\n    from .helper import help_me  # lazily\n'
                                '    from components.core import (\n        registry,  # by name\n    )\n'),
    "components/core/helper.py": "def help_me(): ...\n",
    "components/core/registry.py": 'BACKENDS = {"fast": "components.core.backend:Fast"}\n',
    "components/core/backend.py": "class Fast: ...\n",
    "components/core/unrelated.py": "x = 1\n",
    "components/core/assets/page.css": "body {}\n",
    "components/core/other_data/x.txt": "not named by any module\n",
}


def _tree(root):
    for name, text in TREE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _names(root) -> set[str]:
    return {p.relative_to(root).as_posix() for p in code_files("clearml_tasks.entry", root)}


def test_an_entry_runs_its_imports_lazy_ones_registered_ones_and_named_data(tmp_path):
    assert _names(_tree(tmp_path)) == {
        "clearml_tasks/__init__.py", "clearml_tasks/entry.py", "components/__init__.py",
        "components/core/__init__.py", "components/core/runs.py", "components/core/helper.py",
        "components/core/registry.py", "components/core/backend.py", "components/core/assets/page.css"}


def _digest(root) -> str:
    return source_digest(code_files("clearml_tasks.entry", root), root, LIBS)


def test_an_edit_to_its_code_changes_the_version_an_edit_elsewhere_or_a_touch_does_not(tmp_path):
    before = _digest(_tree(tmp_path))
    os.utime(tmp_path / "components/core/runs.py", (0, 0))  # a fresh checkout's times are not a change
    (tmp_path / "components/core/unrelated.py").write_text("x = 2\n")  # another stage's code
    (tmp_path / "components/core/__pycache__").mkdir()
    (tmp_path / "components/core/__pycache__/runs.cpython-311.pyc").write_bytes(b"\0")
    assert _digest(tmp_path) == before
    (tmp_path / "components/core/backend.py").write_text("class Fast:\n    speed = 2\n")
    edited = _digest(tmp_path)
    (tmp_path / "components/core/assets/page.css").write_text("body { margin: 0 }\n")
    assert len({before, edited, _digest(tmp_path)}) == 3


def test_a_library_upgrade_changes_it(tmp_path):
    files = code_files("clearml_tasks.entry", _tree(tmp_path))
    assert source_digest(files, tmp_path, LIBS) != source_digest(files, tmp_path, {**LIBS, "torch": "2.14.0"})


def test_this_checkouts_stages_each_have_their_own_code():
    def names(entry):
        return {p.relative_to(ROOT).as_posix() for p in code_files(entry)}

    evals, finetune = names("clearml_tasks.eval"), names("clearml_tasks.finetune")
    report = names("clearml_tasks.report")
    # the backends an eval loads by name from the registry are its code
    assert {"components/backends/hf.py", "components/backends/decoding.py",
            "components/backends/prefill_plan.py"} <= evals
    # an edit to eval's or the report's code leaves a fine-tune cached
    assert "components/stages/eval.py" in evals and "components/stages/eval.py" not in finetune
    assert "components/stages/report.py" in report and not {"components/stages/report.py",
                                                             "components/analysis/report_assets/report.css"} & finetune
    assert "components/data/demo_data/demo.jsonl" in names("clearml_tasks.ingest")
    versions = library_versions()
    assert set(versions) == set(LIBRARIES) and versions["torch"] != "absent"
    assert code_version("clearml_tasks.eval") != code_version("clearml_tasks.finetune")
    assert len(code_version("clearml_tasks.eval")) == 16

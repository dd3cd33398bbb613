"""The provenance stamp: git commit, package versions, python, host, where it ran (container, image), UTC date."""
from __future__ import annotations

import datetime as dt
import platform
import re
import subprocess

from components.core import provenance
from components.core.code_version import code_version
from helpers import ROOT


def test_git_commit_is_the_checkouts_head():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}", head)
    assert provenance.git_commit() == head  # default: the folder of the package, i.e. this checkout
    assert provenance.git_commit(ROOT) == head


def test_git_commit_is_empty_outside_a_repository_or_without_git(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert provenance.git_commit(tmp_path) == ""
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable
    assert provenance.git_commit(ROOT) == ""

    def slow(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], 5)

    monkeypatch.setattr(provenance.subprocess, "run", slow)
    assert provenance.git_commit(ROOT) == ""


def test_versions_lists_installed_packages_and_skips_missing_ones(monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(provenance, "_PACKAGES", ("torch", "no-such-package-slm", "pyyaml"))
    found = provenance.versions()
    assert found == {"torch": importlib.metadata.version("torch"), "pyyaml": importlib.metadata.version("pyyaml")}


def test_stamp_holds_every_field():
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    stamp = provenance.stamp("components.stages.eval")
    assert set(stamp) == {"git_commit", "code_version", "versions", "python", "host", "runtime", "date"}
    assert stamp["code_version"] == code_version("components.stages.eval")
    assert stamp["python"] == platform.python_version() and stamp["host"] == platform.node()
    assert "transformers" in stamp["versions"]
    date = dt.datetime.fromisoformat(stamp["date"])
    assert date.utcoffset() == dt.timedelta(0) and date.microsecond == 0
    assert before <= date <= dt.datetime.now(dt.timezone.utc)


def test_runtime_names_the_container_and_the_image_the_agent_ran(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEARML_DOCKER_IMAGE", "slm-experiments-task:0.1.0-cpu")
    monkeypatch.setenv("CLEARML_WORKER_ID", "host:agent-cpu")
    outside = provenance.runtime(tmp_path)  # no marker file: not in a container
    assert outside == {"hostname": platform.node(), "container": "", "image": "", "worker": "host:agent-cpu"}
    (tmp_path / ".dockerenv").touch()
    inside = provenance.runtime(tmp_path)
    assert (inside["container"], inside["image"]) == ("docker", "slm-experiments-task:0.1.0-cpu")
    (tmp_path / ".dockerenv").unlink()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".containerenv").touch()
    assert provenance.container_kind(tmp_path) == "podman"
    monkeypatch.delenv("CLEARML_DOCKER_IMAGE")
    assert provenance.runtime(tmp_path)["image"] == ""  # a container no agent started: its image is unknown

"""Stamp results with what produced them: git commit, the code's version (which also tells uncommitted edits
apart), package versions, date, host and runtime (lm-eval style)."""
from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

from components.core.code_version import code_version, installed_versions

_PACKAGES = ("torch", "transformers", "peft", "sentence-transformers", "bm25s", "faiss-cpu", "clearml")


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).parent, text=True,
                             capture_output=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def versions() -> dict[str, str]:
    return installed_versions(_PACKAGES)


def container_kind(root: Path = Path("/")) -> str:
    """`docker` or `podman` when this process runs in such a container (each engine leaves its marker file
    at the root), else ''."""
    for marker, kind in ((".dockerenv", "docker"), ("run/.containerenv", "podman")):
        if (root / marker).exists():
            return kind
    return ""


def runtime(root: Path = Path("/")) -> dict[str, str]:
    """Where this process runs: the host name, the container engine it runs in ('' outside one; a process on
    a host that is itself a container counts as in one) and the image a docker agent started it from ('' for
    any other). clearml-agent in docker mode hands every task container that image as CLEARML_DOCKER_IMAGE,
    and every agent its worker id as CLEARML_WORKER_ID."""
    container = container_kind(root)
    return {"hostname": platform.node(), "container": container,
            "image": os.environ.get("CLEARML_DOCKER_IMAGE", "") if container else "",
            "worker": os.environ.get("CLEARML_WORKER_ID", "")}


def stamp(entry: str) -> dict:
    """What produced a stage's results; `entry`: the module that ran them (its code_version)."""
    return {"git_commit": git_commit(), "code_version": code_version(entry), "versions": versions(),
            "python": platform.python_version(), "host": platform.node(), "runtime": runtime(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}

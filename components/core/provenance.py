"""Stamp results with what produced them: git commit, package versions, date, host (lm-eval style)."""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import subprocess
from pathlib import Path

_PACKAGES = ("torch", "transformers", "peft", "sentence-transformers", "bm25s", "faiss-cpu", "clearml")


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).parent, text=True,
                             capture_output=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def stamp() -> dict:
    return {"git_commit": git_commit(), "versions": versions(), "python": platform.python_version(),
            "host": platform.node(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}

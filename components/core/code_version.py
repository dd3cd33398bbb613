"""What code makes a step's results: a digest of the project's stage code (`components/`, `clearml_tasks/`:
its Python and the files it ships, such as the report's assets and the demo data) and the versions of the libraries whose numerics shape its outputs.

The local step cache keys on it, as ClearML's step cache keys on a template's commit and uncommitted diff:
a step cached before a code change or a library upgrade is run again rather than served with answers the
code would no longer give. `pipelines/` (CLI, DAG, controller) is left out: it decides which config a step
gets, and that config is in the key already.
"""
from __future__ import annotations

import functools
import hashlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

STAGE_PACKAGES = ("components", "clearml_tasks")
# distributions whose version changes numbers (kernels, decoding, quantisation, retrieval scores)
LIBRARIES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "llama-cpp-python", "vllm",
             "bm25s", "faiss-cpu", "sentence-transformers", "datasets")


def library_versions() -> dict[str, str]:
    versions = {}
    for distribution in LIBRARIES:
        try:
            versions[distribution] = version(distribution)
        except PackageNotFoundError:
            versions[distribution] = "absent"
    return versions


def _bytecode(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


def source_digest(root: Path, packages: tuple[str, ...], libraries: dict[str, str]) -> str:
    """16 hex digits over every file under `root/<package>` but bytecode (path and bytes, not mtimes) and
    `libraries`."""
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted(p for p in (root / package).rglob("*") if p.is_file() and not _bytecode(p)):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for distribution, installed in sorted(libraries.items()):
        digest.update(f"{distribution}=={installed}\n".encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """This checkout's digest, fixed for the process (read once: tens of files, ~20 ms)."""
    return source_digest(Path(__file__).resolve().parents[2], STAGE_PACKAGES, library_versions())

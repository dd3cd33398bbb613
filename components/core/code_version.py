"""What code makes a stage's results: a digest of the project modules its entry can run and the versions of
the libraries whose numerics shape its outputs.

The local step cache keys each step on its stage's version, as ClearML's step cache keys on a template's
commit and uncommitted diff: a step cached before a change to the code it runs, or a library upgrade, is run
again rather than served with answers the code would no longer give. The version is per stage, so an edit to
the report or to eval leaves a fine-tune that took hours cached.

The modules a stage can run are found without importing anything: its entry module's `import` statements
(anywhere in the file: imports inside functions count), and every string naming a project module (the lazy
registries' `components.backends.hf:HFGenerator`), followed through the project's packages. Files a module
ships beside it (a data folder it names, such as `demo_data` or `report_assets`) count too. It errs on the
side of running again: a module named only in a docstring counts, and as the config names every backend
(for `generation.backend`'s choices), an edit to a backend's code counts for every stage.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("components", "clearml_tasks")
# distributions whose version changes numbers (kernels, decoding, quantisation, retrieval scores)
LIBRARIES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "llama-cpp-python", "vllm",
             "bm25s", "faiss-cpu", "sentence-transformers", "datasets")
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([\w. \t,]+)", re.M)
_FROM = re.compile(r"^[ \t]*from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|(?:[^\n\\]|\\\n)+)", re.M)
_COMMENT = re.compile(r"#[^\n]*")
_MODULE_STRING = re.compile(rf"""["']((?:{"|".join(PROJECT_PACKAGES)})(?:\.\w+)+)(?::\w+)?["']""")


def installed_versions(distributions: tuple[str, ...]) -> dict[str, str]:
    """Each installed distribution's version; those not installed are left out."""
    found = {}
    for distribution in distributions:
        try:
            found[distribution] = version(distribution)
        except PackageNotFoundError:
            continue
    return found


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    installed = installed_versions(LIBRARIES)
    return {distribution: installed.get(distribution, "absent") for distribution in LIBRARIES}


def _module_file(name: str, root: Path) -> Path | None:
    if name.split(".")[0] in PROJECT_PACKAGES:
        base = root.joinpath(*name.split("."))
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                return candidate
        return None  # a name from `from package import Class`: not a module
    if "." not in name:  # an entry outside the packages (a test's stub stage): found on sys.path, not imported
        spec = importlib.util.find_spec(name)
        return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None
    return None


def _named_modules(source: str, package: str) -> set[str]:
    """Project modules a module's source names: its imports and its "package.module[:attr]" strings. Read
    by pattern rather than by parsing (five times faster); a match in a docstring only adds a module."""
    names: set[str] = set()
    for match in _IMPORT.finditer(source):
        names.update(_bare(n) for n in match.group(1).split(","))
    for match in _FROM.finditer(source):
        base = match.group(1)
        level = len(base) - len(base.lstrip("."))
        if level:  # relative: resolved against the importing package
            parts = package.split(".")[: len(package.split(".")) - level + 1]
            base = ".".join(parts + ([base.lstrip(".")] if base.lstrip(".") else []))
        names.add(base)
        imported = _COMMENT.sub("", match.group(2)).replace("\\\n", " ").strip("()")
        names.update(f"{base}.{_bare(n)}" for n in imported.split(",") if n.strip())  # `from pkg import module`
    names.update(match.group(1) for match in _MODULE_STRING.finditer(source))
    return {n for n in names if n and n.split(".")[0] in PROJECT_PACKAGES}


def _bare(name: str) -> str:
    return name.split(" as ")[0].strip()


def _shipped_files(module: Path, source: str) -> list[Path]:
    """Files in the non-package folders beside `module` that its source names (its data, its assets)."""
    found = []
    for folder in module.parent.iterdir():
        if folder.is_dir() and folder.name != "__pycache__" and not (folder / "__init__.py").exists() \
                and folder.name in source:
            found.extend(p for p in folder.rglob("*") if p.is_file())
    return found


def code_files(entry: str, root: Path = ROOT) -> list[Path]:
    """Every file the module `entry` can run (or read as shipped data), sorted; the packages above each module
    count, as Python runs their `__init__` first."""
    files: set[Path] = set()
    seen: set[str] = set()
    pending = [entry]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name, root)
        if path is None:
            continue
        named, shipped = _read_module(path, name if path.name == "__init__.py" else name.rpartition(".")[0])
        files.add(path)
        files.update(shipped)
        parts = name.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        pending.extend(named)
    return sorted(files)


@functools.lru_cache(maxsize=None)
def _read_module(path: Path, package: str) -> tuple[frozenset[str], tuple[Path, ...]]:
    """What one module names and ships; read once a process, as every stage shares most modules."""
    source = path.read_text(encoding="utf-8")
    return frozenset(_named_modules(source, package)), tuple(_shipped_files(path, source))


def source_digest(files: list[Path], root: Path, libraries: dict[str, str]) -> str:
    """16 hex digits over `files` (path and bytes, not mtimes) and `libraries`."""
    digest = hashlib.sha256()
    for path in files:
        shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        digest.update(shown.encode() + b"\0" + path.read_bytes() + b"\0")
    for distribution, installed in sorted(libraries.items()):
        digest.update(f"{distribution}=={installed}\n".encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def code_version(entry: str) -> str:
    """The version of the code the module `entry` runs, fixed for the process (read once per entry)."""
    return source_digest(code_files(entry), ROOT, library_versions())

"""Step folders named by what made them, and the inputs a stage builds itself.

A finished step folder holds `.step.json` (written last) with its key: a hash of the stage, the config its
output depends on (the registry's cache config), its parents' keys, the version of the code it runs
(`components.core.code_version`: the modules its entry can run and the numeric libraries' versions) and, for
ingest, the dataset file's identity. The local runner (`slm run`) serves a step whose key matches from its
folder; a half-done step has no `.step.json` and runs again.

A template's task builds its empty inputs the same way: a clone of the eval template enqueued with
`inputs/ingest` empty ingests its own `dataset/*` first (and in retriever_context builds its index from
`retriever/*`), so a template runs as it is and one edit of `dataset/path` changes its data. Built inputs
live in the machine's cache (`<cache>/steps/<stage>-<key>`), so the next run on that agent reuses them.
"""
from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Callable

from clearml_tasks._inputs import CONFIG_FILE, resolve_input
from clearml_tasks.stages import STAGES
from components.core.code_version import code_version
from components.core.config import AppConfig
from components.core.errors import UserError
from components.core.fileio import read_json, write_json
from components.core.outputs import STEP_MANIFEST, cache_root


def step_key(stage: str, cfg: AppConfig, parents: dict[str, str]) -> str:
    """`parents`: input name -> the parent step's key (or, for a given input, its task id or folder)."""
    spec = STAGES[stage]
    payload = {"stage": stage, "sections": spec.cache_config(cfg), "parents": parents,
               "code": code_version(spec.entry_module)}
    if spec.identity:  # what besides the config names its output (a dataset file's size and mtime)
        payload["input"] = spec.identity(cfg)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _manifest(step_dir: Path) -> dict:
    """The finished step's `.step.json` in `step_dir`; empty when none was finished or it is unreadable."""
    try:
        data = read_json(step_dir / STEP_MANIFEST)
    except UserError:
        return {}
    return data if isinstance(data, dict) else {}


def cached_results(step_dir: Path, key: str) -> dict | None:
    """The results of the finished step in `step_dir` made under `key`, else None."""
    manifest = _manifest(step_dir)
    return manifest.get("results") if manifest.get("key") == key else None


def made_by_other_code(step_dir: Path, stage: str) -> bool:
    """Whether `step_dir` holds a `stage` step finished by other code than this (why its cache entry is not
    used)."""
    made_by = _manifest(step_dir).get("code")
    return made_by is not None and made_by != code_version(STAGES[stage].entry_module)


def finish_step(step_dir: Path, key: str, stage: str, results: dict) -> dict:
    """Mark `step_dir` finished (last, so a half-done step never looks done); the results it keeps."""
    results = {k: v for k, v in results.items() if k != "meta"}
    code = code_version(STAGES[stage].entry_module)
    write_json(step_dir / STEP_MANIFEST, {"key": key, "stage": stage, "code": code, "results": results})
    return results


def build_inputs(stage: str, cfg: AppConfig, inputs: dict[str, str],
                 log: Callable[[str], None] = print) -> dict[str, str]:
    """`inputs` with each empty one that the stage needs and builds itself (Stage.builds) filled in with a
    step folder made from `cfg`; inputs it cannot build stay empty (the caller names them)."""
    spec = STAGES[stage]
    filled, keys = dict(inputs), {}
    for parent in spec.needed_inputs(cfg):
        if not filled.get(parent) and parent in spec.builds:
            filled[parent] = str(_build(parent, cfg, filled, keys, log))
    return filled


def _build(stage: str, cfg: AppConfig, filled: dict[str, str], keys: dict[str, str], log) -> Path:
    """Run `stage` here (no task of its own) into its cache folder, or reuse the folder a run made before."""
    spec = STAGES[stage]
    parents = {}
    for parent in spec.needed_inputs(cfg):  # an index built here reads the ingest given or built before it
        if not filled.get(parent):
            filled[parent] = str(_build(parent, cfg, filled, keys, log))
        parents[parent] = keys.get(parent, filled[parent])
    key = keys[stage] = step_key(stage, cfg, parents)
    folder = cache_root() / "steps" / f"{stage}-{key[:16]}"
    if cached_results(folder, key) is not None:
        log(f"inputs/{stage} is empty: using the {stage} step built before from this task's sections ({folder})")
        return folder
    log(f"inputs/{stage} is empty: running the {stage} stage here from this task's sections -> {folder}")
    from clearml_tasks._tracker import NullTracker

    (folder / STEP_MANIFEST).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / CONFIG_FILE, cfg.to_dict())  # what a child records as its data's provenance
    input_dirs = {p: resolve_input(p, filled[p]) for p in spec.needed_inputs(cfg)}
    results = importlib.import_module(spec.entry_module).body(cfg, input_dirs, folder, NullTracker())
    finish_step(folder, key, stage, results)
    return folder

"""Finished evals as the report and the run comparison read them: found under folders, loaded with
their predictions, grouped into systems (model x dataset, plus whatever else the evals differ in, e.g.
retriever.top_k) and labelled as cells (system x mode).

Which config an eval's result depends on (so which settings tell systems apart) is given by the caller
(the stage registry knows: a closed-book eval does not read the retriever).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from components.core.config import MODES
from components.core.errors import UserError
from components.core.fileio import read_json, read_jsonl
from components.core.outputs import PREDICTIONS_FILE, RESULTS_FILE, TASK_FILE

QUALITY = ("token_recall", "token_f1", "exact_match", "substring_match")
# Settings that never tell systems apart: the mode is the column, the rest is bookkeeping.
NOT_A_SYSTEM = ("experiment.mode", "experiment.modes", "experiment.name", "experiment.output_dir",
                "experiment.shard", "experiment.shards", "experiment.bootstrap_samples")


@dataclass
class EvalEntry:
    name: str  # the step (or folder) it came from
    results: dict
    rows: list[dict]  # predictions.jsonl
    config: dict[str, object] = field(default_factory=dict)  # flat section.field the result depends on
    folder: Path | None = None
    task: dict = field(default_factory=dict)  # the ClearML task that ran it (id, url), when it ran on a server

    @property
    def mode(self) -> str:
        return self.results["mode"]


def find_evals(folders: list[Path]) -> list[tuple[str, Path]]:
    """(name, folder) of every finished eval under the folders (shards are left to their merge)."""
    found = []
    for root in folders:
        if not Path(root).exists():
            raise UserError(f"{root}: no such folder")
        for results in sorted(Path(root).rglob(RESULTS_FILE)):
            data = read_json(results)
            if data.get("mode") in MODES and "token_recall" in data and "shard" not in data \
                    and (results.parent / PREDICTIONS_FILE).is_file():
                found.append((results.parent.name, results.parent))
    return found


def load_entry(name: str, folder: Path, relevant: Callable[[dict], dict[str, object]]) -> EvalEntry:
    folder = Path(folder)
    results = read_json(folder / RESULTS_FILE)
    task = read_json(folder / TASK_FILE) if (folder / TASK_FILE).is_file() else {}
    config = relevant(results["meta"]["config"])
    if results.get("precision"):  # model.dtype=auto resolves per machine: evals of another precision are
        config["model.precision"] = results["precision"]  # another system, never mixed silently
    return EvalEntry(name, results, read_jsonl(folder / PREDICTIONS_FILE), config, folder, task)


def short(value) -> str:
    """A setting as a label: long values (an adapter's folder or model id) by their tail."""
    text = str(value) if value != "" else "none"
    return text if len(text) <= 24 else "…" + text[-20:]


def _suffix(variant: dict[str, object]) -> str:
    extra = ", ".join(f"{k.rpartition('.')[2]}={short(v)}" for k, v in variant.items())
    return f" ({extra})" if extra else ""


@dataclass
class System:
    model: str
    dataset: str
    variant: dict[str, object]
    cells: dict[str, EvalEntry]  # mode -> eval

    @property
    def label(self) -> str:
        return f"{self.model} @ {self.dataset}" + _suffix(self.variant)


def _groups(entries: list[EvalEntry]) -> dict[tuple[str, str], tuple[list[EvalEntry], list[str]]]:
    """(model, dataset) -> its evals and the settings that differ between them (that the evals read)."""
    groups: dict[tuple, list[EvalEntry]] = {}
    for e in entries:
        groups.setdefault((e.results.get("model", "?"), e.results.get("dataset", "?")), []).append(e)
    out = {}
    for key, group in groups.items():
        keys = sorted({k for e in group for k in e.config if k not in NOT_A_SYSTEM})
        out[key] = group, [k for k in keys if len({repr(e.config[k]) for e in group if k in e.config}) > 1]
    return out


def group_systems(entries: list[EvalEntry]) -> list[System]:
    """Group evals into systems: the settings that differ between evals of one model and dataset make
    variants; an eval that does not read a setting serves every variant."""
    systems = []
    for (model, dataset), (group, varying) in _groups(entries).items():
        variants: list[dict] = []
        for e in group:
            v = {k: e.config[k] for k in varying if k in e.config}
            if len(v) == len(varying) and v not in variants:
                variants.append(v)
        for variant in variants or [{}]:
            cells = {}
            for e in group:
                if all(e.config.get(k, variant[k]) == variant[k] for k in variant):
                    if e.mode in cells:
                        raise UserError(f"two {e.mode} evals of {model} @ {dataset} {variant or ''}: "
                                        f"{cells[e.mode].name} and {e.name}; report on one run or grid at a time")
                    cells[e.mode] = e
            systems.append(System(model, dataset, variant, cells))
    return systems


def cell_labels(entries: list[EvalEntry]) -> dict[str, str]:
    """eval name -> "model @ dataset (the varying settings it reads) / mode": one label per eval, so a
    closed-book eval that serves several retriever variants is one cell, not one per variant."""
    labels = {}
    for (model, dataset), (group, varying) in _groups(entries).items():
        for e in group:
            labels[e.name] = (f"{model} @ {dataset}" + _suffix({k: e.config[k] for k in varying if k in e.config})
                              + f" / {e.mode}")
    seen: dict[str, int] = {}
    for name, label in labels.items():
        seen[label] = seen.get(label, 0) + 1
    return {name: label if seen[label] == 1 else f"{label} [{name}]" for name, label in labels.items()}


def eval_link(e: EvalEntry, relative_to: Path | None = None) -> dict:
    """Where a cell came from: its ClearML task in the web UI when it ran on a server, else its folder
    (relative to the report's folder when it can be, so the report's links survive a move of the run)."""
    if e.task.get("url"):
        return {"kind": "task", "url": e.task["url"], "id": e.task.get("id", "")}
    if e.folder is None:
        return {"kind": "none", "url": ""}
    folder = Path(e.folder).resolve()
    if relative_to is not None:
        try:
            return {"kind": "folder", "url": Path(os.path.relpath(folder, Path(relative_to).resolve())).as_posix()
                    + "/"}
        except ValueError:  # another drive
            pass
    return {"kind": "folder", "url": folder.as_uri() + "/"}

"""The local runner behind `slm run` / `slm eval`: executes the DAG's steps in-process, in order, through
the same template entry code an agent runs, with a step cache.

Each step writes into `<output_dir>/<step>/` and, last, `.step.json` with its cache key and results. A
step whose key (stage, its config sections, its parents' keys, the code's version, the input file's
identity) matches a finished `.step.json` is skipped; a half-done step has no `.step.json` and runs again.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clearml_tasks._step_cache import cached_results, finish_step, made_by_other_code, step_key
from clearml_tasks._task import run_stage
from clearml_tasks.stages import STAGES
from components.core.config import AppConfig
from components.core.errors import UserError
from components.core.fileio import write_json
from components.core.outputs import STEP_MANIFEST
from components.core.overrides import apply_flat
from pipelines.dag import MODEL_REF, StepSpec, referenced_steps, step_config, validate_dag


@dataclass
class StepOutcome:
    name: str
    stage: str
    status: str  # ran | cached
    seconds: float
    output_dir: Path
    results: dict


def cache_key(step: StepSpec, cfg: AppConfig, parent_keys: dict[str, str]) -> str:
    return step_key(step.stage, cfg, {p: parent_keys[p] for p in step.parents})


def resolve_model_refs(cfg: AppConfig, step: StepSpec, outcomes: dict[str, StepOutcome]) -> AppConfig:
    """`${finetune.models.output.-1.id}` in a step's overrides (ClearML resolves it on a server) as the folder
    that step registered as its model (its results' `model_dir`)."""
    def folder(match) -> str:
        results = outcomes[match.group(1)].results
        if not results.get("model_dir"):
            raise UserError(f"step {step.name}: step {match.group(1)} registered no model")
        return results["model_dir"]

    refs = {k: MODEL_REF.sub(folder, v) for k, v in step.overrides.items()
            if isinstance(v, str) and MODEL_REF.search(v)}
    return apply_flat(cfg, refs) if refs else cfg


def stage_entry(stage: str):
    return importlib.import_module(STAGES[stage].entry_module)


def run_local(steps: list[StepSpec], cfg: AppConfig, tracking: str, use_cache: bool = True,
              log: Callable[[str], None] = print) -> list[StepOutcome]:
    """Run every step (or serve it from the cache); a failing step stops the run and names itself.
    `tracking` is none, offline or online (clearml_tasks._tracking)."""
    validate_dag(steps)
    root = Path(cfg.experiment.resolved_output_dir())
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "config.json", cfg.to_dict())
    keys: dict[str, str] = {}
    dirs: dict[str, Path] = {}
    outcomes: list[StepOutcome] = []
    for number, step in enumerate(steps, start=1):
        progress = f"(step {number} of {len(steps)})"
        scfg = step_config(cfg, step)
        key = keys[step.name] = cache_key(step, scfg, keys)
        step_dir = dirs[step.name] = root / step.subdir
        started = time.perf_counter()
        results = cached_results(step_dir, key) if use_cache else None
        if results is not None:
            log(f"[{step.name}] unchanged since the last run: cached ({step_dir}) {progress}")
            outcomes.append(StepOutcome(step.name, step.stage, "cached", 0.0, step_dir, results))
            continue
        if use_cache and made_by_other_code(step_dir, step.stage):
            log(f"[{step.name}] its cached run was made by other code (a source change or library upgrade)")
        (step_dir / STEP_MANIFEST).unlink(missing_ok=True)
        inputs = {name: ",".join(str(dirs[s]) for s in referenced_steps(value)) for name, value in step.inputs.items()}
        log(f"[{step.name}] running {step.stage} -> {step_dir} {progress}")
        try:
            results = run_stage(step.stage, stage_entry(step.stage).body,
                                resolve_model_refs(scfg, step, {o.name: o for o in outcomes}), inputs, step_dir,
                                tracking, task_name=step.name)
        except UserError as e:
            raise UserError(f"step {step.name} failed: {e}") from None
        except Exception as e:
            raise RuntimeError(f"step {step.name} failed: {type(e).__name__}: {e}") from e
        results = finish_step(step_dir, key, step.stage, results)
        seconds = time.perf_counter() - started
        session = f"; ClearML offline session {results['session_dir']}.zip" if results.get("session_dir") else ""
        log(f"[{step.name}] done in {seconds:.1f} s{session}")
        outcomes.append(StepOutcome(step.name, step.stage, "ran", seconds, step_dir, results))
    return outcomes

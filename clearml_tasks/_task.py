"""Shared glue of the stage templates: Task.init -> connect sections -> resolve inputs -> call -> report.

A stage body is `body(cfg, inputs, output_dir, tracker) -> results dict`. `run_stage` is what both the
local runner (in-process, inputs are parent output folders) and an agent (`python clearml_tasks/<x>.py`,
inputs are parent task ids) execute. What a stage reads and uploads comes from the stage registry.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from clearml_tasks._estimate import record_memory_estimate
from clearml_tasks._inputs import (CONFIG_FILE, OUTPUT_ARTIFACT, resolve_adapter, resolve_input, show_parent_sections,
                                   with_labels, with_parent_sections)
from clearml_tasks._step_cache import build_inputs
from clearml_tasks._tracker import NullTracker, make_tracker
from clearml_tasks._tracking import resolve_tracking
from clearml_tasks.stages import STAGES
from components.core.config import AppConfig
from components.core.console import configure_console
from components.core.errors import UserError, run_guarded
from components.core.fileio import write_json
from components.core.outputs import STEP_MANIFEST, TASK_FILE
from components.core.provenance import runtime
from components.core.overrides import apply_flat, build_config

StageBody = Callable[[AppConfig, dict, Path, NullTracker], dict]


def connect_config(tracker: NullTracker, cfg: AppConfig, stage: str) -> AppConfig:
    """Each template section becomes an editable parameter section holding the fields the stage's template
    shows (Stage.template_fields), plus the fields a step of it sets beyond them (an eval shard's
    experiment/shard: not the default here, or already on the task an agent runs); edited values (on an
    agent) are applied."""
    spec, data, default = STAGES[stage], cfg.to_dict(), AppConfig().to_dict()
    present = tracker.parameter_keys()
    edited: dict[str, object] = {}
    for section in spec.template_sections:
        shown = spec.template_fields(section)
        values = {k: v for k, v in data[section].items() if k in shown or (f"{section}.{k}" in spec.step_fields and (
            v != default[section][k] or f"{section}/{k}" in present))}
        returned = tracker.connect_section(values, name=section)
        edited.update({f"{section}.{k}": v for k, v in returned.items() if v != data[section].get(k)})
    return apply_flat(cfg, edited) if edited else cfg


@contextmanager
def own_outputs(output_dir: Path, exclude: tuple[str, ...] = ()) -> Iterator[Path]:
    """A folder with only the stage's own outputs, less `exclude`: `slm eval` writes its files beside its
    parents' step folders, which must not be uploaded again under the eval task."""
    nested = {p for p in output_dir.iterdir()
              if p.name in exclude or (p.is_dir() and (p / STEP_MANIFEST).is_file())}
    if not nested:
        yield output_dir
        return
    with tempfile.TemporaryDirectory(prefix="slm-artifact-") as tmp:
        folder = Path(tmp) / (output_dir.resolve().name or OUTPUT_ARTIFACT)  # the name the artifact keeps
        folder.mkdir()
        for item in set(output_dir.iterdir()) - nested:
            target = folder / item.name
            shutil.copytree(item, target) if item.is_dir() else shutil.copy2(item, target)
        yield folder


def run_stage(stage: str, body: StageBody, cfg: AppConfig, inputs: dict[str, str], output_dir: Path,
              tracking: str, task_name: str = "", detect_repository: bool = False) -> dict:
    spec = STAGES[stage]
    tracker = make_tracker(tracking, cfg.clearml.project, task_name or stage, spec.task_type,
                           cfg.clearml.output_uri, cfg.clearml.tags, local_run=not detect_repository,
                           single_values=spec.metrics)
    try:
        cfg = with_labels(connect_config(tracker, cfg, stage))
        inputs = build_inputs(stage, cfg, tracker.connect_section(dict(inputs), name="inputs"))
        missing = [name for name in spec.needed_inputs(cfg) if not inputs.get(name)]
        if missing:  # else the body fails on a KeyError: a traceback instead of one line
            raise UserError(f"inputs/{missing[0]} is not set: the {stage} stage reads the {missing[0]} stage's output "
                            f"(give a finished {missing[0]} task's id or a local output folder; `slm run` wires every "
                            "input)")
        input_dirs = {k: [resolve_input(k, part) for part in v.split(",")] if k in spec.many else resolve_input(k, v)
                      for k, v in inputs.items() if v}
        cfg = show_parent_sections(tracker, stage, cfg, with_parent_sections(cfg, stage, input_dirs))
        tracker.leave_templates(spec.run_name(cfg))
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json(output_dir / CONFIG_FILE, cfg.to_dict())  # as given: an adapter by its model id
        if tracker.task_url:  # on a server: the report links each step's folder to its task
            write_json(output_dir / TASK_FILE, {"id": tracker.task_id, "url": tracker.task_url, "name": task_name
                                                or stage, "project": cfg.clearml.project})
        if "model" in spec.sections:
            cfg = resolve_adapter(cfg)
        # Where the step ran (host, container, image), on the task beside its results: which agent and image
        # produced them is read there, not guessed from the queue.
        tracker.set_properties({f"runtime_{k}": v for k, v in runtime().items()})
        results = body(cfg, input_dirs, output_dir, tracker)
        results.update(record_memory_estimate(spec, cfg, tracker))
        with own_outputs(output_dir, spec.upload_exclude) as folder:
            tracker.upload_artifact(OUTPUT_ARTIFACT, folder)
        tracker.confirm_delivery()  # a report lost to an unreachable server is sent again, or the stage fails
    except BaseException as e:
        tracker.close(error=failure_reason(e))
        raise
    tracker.close()
    return {**results, "task_id": tracker.task_id,
            "session_dir": str(tracker.session_dir) if tracker.session_dir else ""}


def failure_reason(e: BaseException) -> str:
    """One line for a task's status: a UserError's own message, else the exception type and message."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted"
    text = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
    return text.splitlines()[0] if text else type(e).__name__


def main(stage: str, body: StageBody, argv: list[str] | None = None) -> int:
    """Entry of `python clearml_tasks/<stage>.py [overrides]`, as an agent runs a template."""
    configure_console()  # an agent's log is not a terminal: progress bars as lines

    def go() -> int:
        cfg = build_config(sys.argv[1:] if argv is None else argv)
        output_dir = Path(cfg.experiment.resolved_output_dir()) / stage
        inputs = {name: "" for name in STAGES[stage].inputs}
        run_stage(stage, body, cfg, inputs, output_dir, resolve_tracking("auto"), detect_repository=True)
        return 0

    return run_guarded(go)

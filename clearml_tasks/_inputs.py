"""A stage's inputs: its parents' output folders, found locally or fetched from the parent task's
`output` artifact on an agent, and the parts of their config it records as its own provenance."""
from __future__ import annotations

from pathlib import Path

from clearml_tasks.stages import STAGES
from components.core.config import AppConfig
from components.core.errors import UserError
from components.core.fileio import read_json

CONFIG_FILE = "config.json"  # the resolved config each stage writes into its output folder
OUTPUT_ARTIFACT = "output"  # every stage uploads its output folder under this name; children fetch it


FINISHED = ("completed", "published", "closed")


def resolve_input(name: str, value: str) -> Path:
    """A parent's output: a local folder (local runner) or the `output` artifact of a finished task
    (agent). A wrong id, or a parent that did not finish or has no output, is one line naming the input."""
    if Path(value).is_dir():
        return Path(value)
    from clearml import Task

    try:
        task = Task.get_task(task_id=value)
    except ValueError:
        raise UserError(f"inputs/{name}={value!r}: no task with that id (nor a local folder); set it to the id "
                        f"of a finished {name} task") from None
    status = str(task.get_status())
    if status not in FINISHED:
        raise UserError(f"inputs/{name}={value}: the {name} task {task.name!r} is {status}, not completed; "
                        "point it at a finished one")
    artifact = task.artifacts.get(OUTPUT_ARTIFACT)
    if artifact is None:
        raise UserError(f"inputs/{name}={value}: task {task.name!r} ({status}) has no {OUTPUT_ARTIFACT!r} "
                        f"artifact; is it a {name} step of this project?")
    local = artifact.get_local_copy()
    if not local:
        raise UserError(f"inputs/{name}={value}: cannot download its {OUTPUT_ARTIFACT!r} artifact "
                        f"({artifact.url}); check the storage credentials in clearml.conf")
    return Path(local)


def resolve_adapter(cfg: AppConfig) -> AppConfig:
    """`model.adapter` as a local folder: a ClearML model id (a finetune task's registered adapter) is
    downloaded and unpacked; a local folder stays as it is."""
    adapter = cfg.model.adapter
    if not adapter or Path(adapter).is_dir():
        return cfg
    from clearml import InputModel
    from clearml_tasks._tracking import resolve_tracking

    if resolve_tracking("auto") != "online":
        raise UserError(f"model.adapter={adapter!r}: not a local folder, and a ClearML model id needs a server "
                        "(configure one, or give the adapter folder, e.g. outputs/x/finetune/adapter)")
    try:
        local = InputModel(model_id=adapter).get_local_copy(extract_archive=True)
    except ValueError:
        raise UserError(f"model.adapter={adapter!r}: no ClearML model with that id") from None
    if not local:
        raise UserError(f"model.adapter={adapter!r}: cannot download the model's weights")
    folder = Path(local)
    found = [p.parent for p in folder.rglob("adapter_config.json")]  # the archive may hold one folder level
    if not found:
        raise UserError(f"model.adapter={adapter!r}: the model holds no peft adapter (no adapter_config.json)")
    return AppConfig.from_dict({**cfg.to_dict(), "model": {**cfg.to_dict()["model"], "adapter": str(found[0])}})


def with_parent_sections(cfg: AppConfig, stage: str, input_dirs: dict[str, Path]) -> AppConfig:
    """The config a stage records: its own sections, and every section it does not read taken from the
    parent that did (an eval's `dataset` is its ingest's, not the default), so results name their data."""
    data = cfg.to_dict()
    for parent, folder in input_dirs.items():
        if isinstance(folder, list):  # several parents (a merge's shards, a report's evals): no one config
            continue
        recorded = Path(folder) / CONFIG_FILE
        if parent not in STAGES or not recorded.is_file():
            continue
        parent_data = read_json(recorded)
        for section in STAGES[parent].sections:
            if section not in STAGES[stage].sections and section in parent_data:
                data[section] = parent_data[section]
    return AppConfig.from_dict(data)


def with_labels(cfg: AppConfig) -> AppConfig:
    """`model.name` and `dataset.name` filled in where they are empty: they follow model.path and dataset.path
    (components.core.presets), so a clone whose only edit is model/path or dataset/path reports the new
    model's or dataset's name."""
    if cfg.model.name and cfg.dataset.name:
        return cfg
    from components.core.presets import dataset_label, model_label

    data = cfg.to_dict()
    data["model"]["name"] = cfg.model.name or model_label(cfg.model)
    data["dataset"]["name"] = cfg.dataset.name or dataset_label(cfg.dataset)
    return AppConfig.from_dict(data)


def show_parent_sections(tracker, stage: str, shown: AppConfig, cfg: AppConfig) -> AppConfig:
    """A section the template carries for an input it can build (eval's `dataset/*`), where that input was
    given instead: the task's parameters are set to what the input's stage read (`cfg`, from
    with_parent_sections), so the task shows the data it ran on, not the template's default. Returns `cfg`."""
    spec = STAGES[stage]
    for section in spec.template_sections:
        if section not in spec.sections and getattr(shown, section) != getattr(cfg, section):
            values = cfg.to_dict()[section]
            tracker.record_section(section, {k: values[k] for k in spec.template_fields(section)})
    return cfg

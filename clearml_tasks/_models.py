"""Models of a task in ClearML's model registry: a folder (a peft adapter) zipped and uploaded as an
OutputModel, which a pipeline passes on as `${step.models.output.-1.id}` and eval loads by its id."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def model_destination(task, offline: bool) -> str | None:
    """The task's output storage, else the files server. On an agent Task.init does not set it (the task
    comes from its template), and without one ClearML registers the local file path: useless to any other
    machine. Offline the session folder keeps the weights."""
    if offline:
        return None
    from clearml.backend_api import Session

    return task.output_uri or Session.get_files_server_host()


def register_output_model(task, offline: bool, name: str, folder: Path, config: dict, tags: list[str],
                          comment: str) -> str:
    """An OutputModel of `task` holding `folder` as a zip, `config` as its design; its id."""
    from clearml import OutputModel

    model = OutputModel(task=task, name=name, framework="PyTorch", tags=tags, comment=comment, config_dict=config)
    if offline:  # clearml 2.1.12 offline: the stand-in model object lacks `locked`, which every update checks
        base = model._get_base_model()
        if not hasattr(base, "locked"):
            base.locked = False
    with tempfile.TemporaryDirectory(prefix="slm-model-") as tmp:
        archive = shutil.make_archive(str(Path(tmp) / Path(folder).name), "zip", root_dir=folder)
        # update_weights_package would tag the model a package, which the offline stand-in cannot hold
        model.update_weights(weights_filename=archive, target_filename=f"{Path(folder).name}.zip",
                             upload_uri=model_destination(task, offline), auto_delete_file=False,
                             async_enable=False)  # done before the zip goes
    return model.id

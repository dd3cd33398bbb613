"""A stage's inputs: a parent's output folder, local or the `output` artifact of a finished parent task,
with one line naming the input when it cannot be had; an adapter given as a ClearML model id; the parents'
data sections recorded as the stage's own provenance."""
from __future__ import annotations

import pytest

from clearml_tasks._inputs import resolve_adapter, resolve_input, with_parent_sections
from components.core.errors import UserError
from components.core.fileio import write_json
from components.core.overrides import build_config


class FakeArtifact:
    url = "s3://minio:9000/clearml/x/output.zip"

    def __init__(self, local):
        self.local = local

    def get_local_copy(self):
        return self.local


def fake_get_task(tasks: dict):
    def get_task(task_id=None, **_):
        if task_id not in tasks:
            raise ValueError(f"Task ID {task_id} could not be found")
        return tasks[task_id]
    return get_task


class ParentTask:
    def __init__(self, name, status, artifacts):
        self.name, self.status, self.artifacts = name, status, artifacts

    def get_status(self):
        return self.status


def test_bad_inputs_are_one_line_naming_the_input_the_id_and_the_status(monkeypatch, tmp_path):
    import clearml

    tasks = {"failed1": ParentTask("ingest", "failed", {}),
             "noout": ParentTask("ingest", "completed", {}),
             "good": ParentTask("ingest", "completed", {"output": FakeArtifact(str(tmp_path))})}
    monkeypatch.setattr(clearml.Task, "get_task", staticmethod(fake_get_task(tasks)))
    with pytest.raises(UserError, match=r"inputs/ingest='nope': no task with that id"):
        resolve_input("ingest", "nope")
    with pytest.raises(UserError, match=r"inputs/ingest=failed1: the ingest task 'ingest' is failed"):
        resolve_input("ingest", "failed1")
    with pytest.raises(UserError, match=r"inputs/ingest=noout: .*\(completed\) has no 'output' artifact"):
        resolve_input("ingest", "noout")
    assert resolve_input("ingest", "good") == tmp_path
    assert resolve_input("ingest", str(tmp_path)) == tmp_path  # a local folder is taken as it is


def test_a_stage_records_the_data_sections_of_its_parents(tmp_path):
    ingest = tmp_path / "ingest"
    write_json(ingest / "config.json", build_config(["dataset=local_nq", "retriever.top_k=9"]).to_dict())
    own = build_config(["retriever.top_k=2"])
    recorded = with_parent_sections(own, "eval", {"ingest": ingest})
    assert recorded.dataset.name == "local_nq" and recorded.dataset.path.endswith("NQ-open.dev.merged.jsonl")
    assert recorded.retriever.top_k == 2  # eval reads the retriever itself; ingest does not
    assert with_parent_sections(own, "eval", {"ingest": tmp_path / "missing"}) == own


def test_a_published_parent_is_finished_and_a_failed_download_names_the_artifact(monkeypatch, tmp_path):
    import clearml

    tasks = {"pub": ParentTask("ingest", "published", {"output": FakeArtifact(str(tmp_path))}),
             "gone": ParentTask("ingest", "completed", {"output": FakeArtifact(None)}),
             "running": ParentTask("index", "in_progress", {})}
    monkeypatch.setattr(clearml.Task, "get_task", staticmethod(fake_get_task(tasks)))
    assert resolve_input("ingest", "pub") == tmp_path
    with pytest.raises(UserError) as err:
        resolve_input("ingest", "gone")
    assert str(err.value) == ("inputs/ingest=gone: cannot download its 'output' artifact "
                              "(s3://minio:9000/clearml/x/output.zip); check the storage credentials in clearml.conf")
    with pytest.raises(UserError, match=r"^inputs/index=running: the index task 'index' is in_progress, not completed"):
        resolve_input("index", "running")


def test_several_parents_and_unknown_ones_lend_no_sections(tmp_path):
    ingest = tmp_path / "ingest"
    write_json(ingest / "config.json", build_config(["dataset=local_nq"]).to_dict())
    own = build_config([])
    assert with_parent_sections(own, "report", {"eval": [ingest, ingest]}) == own  # a list: no one config
    assert with_parent_sections(own, "eval", {"not-a-stage": ingest}) == own


class FakeInputModel:
    """Stands in for clearml.InputModel: `local` is what get_local_copy returns, or the error it raises."""
    local: object = None
    asked: list = []

    def __init__(self, model_id):
        self.model_id = model_id

    def get_local_copy(self, extract_archive=False):
        FakeInputModel.asked.append((self.model_id, extract_archive))
        if isinstance(self.local, Exception):
            raise self.local
        return self.local


@pytest.fixture
def online(monkeypatch):
    import clearml

    from clearml_tasks import _tracking

    monkeypatch.setattr(_tracking, "resolve_tracking", lambda requested="auto": "online")
    monkeypatch.setattr(clearml, "InputModel", FakeInputModel)
    FakeInputModel.asked = []
    return FakeInputModel


def test_an_adapter_folder_or_none_is_kept_as_it_is(tmp_path):
    cfg = build_config([])
    assert resolve_adapter(cfg) is cfg
    local = build_config([f"model.adapter={tmp_path}"])
    assert resolve_adapter(local) is local


def test_an_adapter_model_id_needs_a_server(monkeypatch):
    from clearml_tasks import _tracking

    monkeypatch.setattr(_tracking, "resolve_tracking", lambda requested="auto": "offline")
    with pytest.raises(UserError, match=r"^model.adapter='abc123': not a local folder, and a ClearML model id needs"):
        resolve_adapter(build_config(["model.adapter=abc123"]))


def test_an_adapter_model_id_is_downloaded_and_its_adapter_folder_found(online, tmp_path):
    unpacked = tmp_path / "model-archive"
    (unpacked / "adapter").mkdir(parents=True)
    (unpacked / "adapter" / "adapter_config.json").write_text("{}")
    online.local = str(unpacked)
    cfg = build_config(["model.adapter=abc123", "experiment.max_samples=3"])
    resolved = resolve_adapter(cfg)
    assert resolved.model.adapter == str(unpacked / "adapter")  # one folder level inside the archive
    assert resolved.experiment.max_samples == 3 and cfg.model.adapter == "abc123"
    assert online.asked == [("abc123", True)]


@pytest.mark.parametrize("local, message", [
    (ValueError("no such model"), "model.adapter='abc123': no ClearML model with that id"),
    (None, "model.adapter='abc123': cannot download the model's weights"),
    ("EMPTY", "model.adapter='abc123': the model holds no peft adapter (no adapter_config.json)"),
])
def test_an_adapter_model_id_that_cannot_be_had_is_one_line(online, tmp_path, local, message):
    online.local = str(tmp_path) if local == "EMPTY" else local
    with pytest.raises(UserError) as err:
        resolve_adapter(build_config(["model.adapter=abc123"]))
    assert str(err.value) == message


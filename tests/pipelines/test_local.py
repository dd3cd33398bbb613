"""The local runner through the stage registry, with stub stages (tests/pipelines/stub_stage.py): edges
come from the registry's inputs, parents' folders are passed as inputs, the step cache keys on exactly
the sections a stage reads (less its cache-ignored fields), its parents and the code's version, and a
failing step names itself and is never marked done."""
from __future__ import annotations

import pytest

import stub_stage
from clearml_tasks import stages
from clearml_tasks.stages import Stage
from components.core.code_version import code_version
from components.core.errors import UserError
from components.core.fileio import read_json
from components.core.overrides import build_config
from components.core.outputs import STEP_MANIFEST
from pipelines.dag import build_dag
from pipelines.local import run_local

STUBS = ("stub_a", "stub_b")


@pytest.fixture
def stub_registry(monkeypatch):
    monkeypatch.setitem(stages.STAGES, "stub_a", Stage("stub_a", "data_processing", ("dataset",),
                                                       entry="stub_stage"))
    monkeypatch.setitem(stages.STAGES, "stub_b", Stage("stub_b", "testing", ("retriever",), inputs=("stub_a",),
                                                       cache_ignored={"retriever": ("top_k",)},
                                                       entry="stub_stage"))
    stub_stage.CALLS.clear()
    stub_stage.FAIL.clear()


def _run(tmp_path, *overrides):
    cfg = build_config([f"experiment.output_dir={tmp_path}", *overrides])
    return {o.name: o for o in run_local(build_dag(cfg, STUBS), cfg, "none", log=lambda _: None)}


def test_edges_come_from_the_registry_inputs(stub_registry):
    steps = build_dag(build_config([]), STUBS)
    assert [(s.name, s.parents, s.inputs) for s in steps] == [
        ("stub_a", (), {}), ("stub_b", ("stub_a",), {"stub_a": "${stub_a.id}"})]


def test_steps_run_in_order_with_their_parents_folders(stub_registry, tmp_path):
    outcomes = _run(tmp_path)
    assert [o.status for o in outcomes.values()] == ["ran", "ran"]
    assert stub_stage.CALLS == [("stub_a", {}), ("stub_b", {"stub_a": str(tmp_path / "stub_a")})]
    assert read_json(tmp_path / "stub_b" / "out.json") == {"parents": ["stub_a"], "top_k": 3}
    assert read_json(tmp_path / "stub_b" / STEP_MANIFEST)["results"] == outcomes["stub_b"].results
    assert read_json(tmp_path / "stub_b" / "config.json")["retriever"]["top_k"] == 3


def test_cache_keys_on_what_each_stage_reads(stub_registry, tmp_path):
    _run(tmp_path)
    assert {n: o.status for n, o in _run(tmp_path).items()} == {"stub_a": "cached", "stub_b": "cached"}
    # stub_b reads retriever, stub_a does not; top_k is cache-ignored by stub_b
    assert {n: o.status for n, o in _run(tmp_path, "retriever.top_k=9").items()} == {
        "stub_a": "cached", "stub_b": "cached"}
    assert {n: o.status for n, o in _run(tmp_path, "retriever.kind=dense").items()} == {
        "stub_a": "cached", "stub_b": "ran"}
    # a parent that reruns with another key reruns its children
    assert {n: o.status for n, o in _run(tmp_path, "retriever.kind=dense", "dataset.split_seed=3").items()} == {
        "stub_a": "ran", "stub_b": "ran"}
    # a section no stub reads changes nothing
    assert {n: o.status for n, o in _run(tmp_path, "retriever.kind=dense", "dataset.split_seed=3",
                                         "finetune.r=4").items()} == {"stub_a": "cached", "stub_b": "cached"}


def test_a_step_cached_by_other_code_runs_again_and_says_why(stub_registry, tmp_path, monkeypatch):
    _run(tmp_path)
    assert read_json(tmp_path / "stub_a" / STEP_MANIFEST)["code"] == code_version("stub_stage")
    monkeypatch.setattr("clearml_tasks._step_cache.code_version", lambda entry: "a-later-checkout")  # an edit
    logged: list[str] = []
    cfg = build_config([f"experiment.output_dir={tmp_path}"])
    outcomes = run_local(build_dag(cfg, STUBS), cfg, "none", log=logged.append)
    assert [o.status for o in outcomes] == ["ran", "ran"]
    assert sum("made by other code" in line for line in logged) == 2
    assert read_json(tmp_path / "stub_a" / STEP_MANIFEST)["code"] == "a-later-checkout"
    assert [o.status for o in run_local(build_dag(cfg, STUBS), cfg, "none", log=logged.append)] == ["cached"] * 2


def test_a_failing_step_names_itself_and_is_not_marked_done(stub_registry, tmp_path):
    stub_stage.FAIL.add("stub_b")
    with pytest.raises(RuntimeError, match="step stub_b failed: ValueError: stub failure"):
        _run(tmp_path)
    assert (tmp_path / "stub_a" / STEP_MANIFEST).is_file()
    assert not (tmp_path / "stub_b" / STEP_MANIFEST).exists()
    stub_stage.FAIL.clear()
    assert {n: o.status for n, o in _run(tmp_path).items()} == {"stub_a": "cached", "stub_b": "ran"}


def test_a_user_error_in_a_step_stays_a_user_error(stub_registry, tmp_path, monkeypatch):
    def refuse(*args):
        raise UserError("dataset.path: nothing there")

    monkeypatch.setattr(stub_stage, "body", refuse)
    with pytest.raises(UserError, match="step stub_a failed: dataset.path: nothing there"):
        _run(tmp_path)

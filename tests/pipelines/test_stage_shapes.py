"""A stage's place in the DAG is declared in the registry, never coded into the wiring: stages registered
here, from the tests (not in clearml_tasks/stages.py), with a fan-out, a gatherer and shards, are placed by
the same generic builder and run through `slm run`'s and `slm <stage>`'s code paths (the stub entry
tests/pipelines/stub_stage.py writes the top_k it saw and records its inputs)."""
from __future__ import annotations

import pytest

import stub_stage
from clearml_tasks import stages
from clearml_tasks.stages import FanOut, Shards, Stage, register_stage, skippable
from components.core.fileio import read_json
from components.core.overrides import build_config
from pipelines import cli
from pipelines.dag import build_dag

REAL = ("index", "eval", "finetune", "benchmark", "report")  # left out with --skip: only ingest runs for real


@pytest.fixture
def plugin_stages():
    added = [
        # one step per k in retriever.hit_ks, each with retriever.top_k = k
        Stage("stub_fan", "testing", ("retriever",), inputs=("ingest",), entry="stub_stage",
              fan_out=FanOut("retriever.top_k", "retriever.hit_ks")),
        # one step over every stub_fan step, only in a multi-step run
        Stage("stub_gather", "custom", (), inputs=("stub_fan",), many=("stub_fan",), gathers="stub_fan",
              only_in_run=True, cli=False, entry="stub_stage"),
        # experiment.shards > 1: shard steps joined by stub_join
        Stage("stub_sharded", "testing", ("experiment",), inputs=("ingest",), entry="stub_stage",
              shards=Shards("experiment.shards", "experiment.shard", joiner="stub_join")),
        Stage("stub_join", "data_processing", (), inputs=("stub_sharded",), many=("stub_sharded",), cli=False,
              entry="stub_stage"),
    ]
    for spec in added:
        register_stage(spec)
    stub_stage.CALLS.clear()
    yield
    for spec in added:
        stages.STAGES.pop(spec.name)


def test_a_registered_fan_out_and_gatherer_are_placed_by_their_shape(plugin_stages):
    steps = build_dag(build_config(["retriever.hit_ks=[1,2,2]"]), ("ingest", "stub_fan", "stub_gather"))
    assert [(s.name, s.parents, s.overrides) for s in steps] == [
        ("ingest", (), {}),
        ("stub_fan_1", ("ingest",), {"retriever.top_k": 1}),
        ("stub_fan_2", ("ingest",), {"retriever.top_k": 2}),
        ("stub_gather", ("stub_fan_1", "stub_fan_2"), {})]
    assert steps[-1].inputs == {"stub_fan": "${stub_fan_1.id},${stub_fan_2.id}"}
    assert "stub_fan" in skippable() and "stub_join" not in skippable(), "a joiner comes with its stage"


def test_registered_shards_are_joined_by_their_joiner(plugin_stages):
    steps = build_dag(build_config(["experiment.shards=2"]), ("ingest", "stub_sharded", "stub_join"))
    assert [(s.name, s.stage, s.overrides) for s in steps] == [
        ("ingest", "ingest", {}),
        ("stub_sharded__shard-0of2", "stub_sharded", {"experiment.shard": 0}),
        ("stub_sharded__shard-1of2", "stub_sharded", {"experiment.shard": 1}),
        ("stub_sharded", "stub_join", {})]


def test_slm_run_runs_a_registered_fan_out_stage_and_its_gatherer(plugin_stages, tmp_path):
    code = cli.main(["run", "--no-clearml", f"experiment.output_dir={tmp_path}", "retriever.hit_ks=[1,3]",
                     "--skip", *REAL, "stub_sharded"])
    assert code == 0
    assert read_json(tmp_path / "stub_fan_1" / "out.json") == {"parents": ["ingest"], "top_k": 1}
    assert read_json(tmp_path / "stub_fan_3" / "out.json") == {"parents": ["ingest"], "top_k": 3}
    gathered = dict(stub_stage.CALLS)["stub_gather"]
    assert gathered == {"stub_fan": str([tmp_path / "stub_fan_1", tmp_path / "stub_fan_3"])}, "a many-input: a list"
    summary = read_json(tmp_path / "summary.json")
    assert [r["step"] for r in summary] == ["ingest", "stub_fan_1", "stub_fan_3", "stub_gather"]


def test_the_stage_verb_runs_one_variant_into_the_output_folder(plugin_stages, tmp_path):
    assert "stub_fan" in cli.build_parser()._subparsers._group_actions[0].choices
    code = cli.main(["stub_fan", "--no-clearml", f"experiment.output_dir={tmp_path}", "retriever.top_k=5"])
    assert code == 0
    assert read_json(tmp_path / "out.json") == {"parents": ["ingest"], "top_k": 5}
    assert [name for name, _ in stub_stage.CALLS] == [tmp_path.name], "one variant, no gatherer"

"""The one DAG, built from the stage registry: which steps a run, `slm eval` and `slm <stage>` get, and
the checks that keep a hand-made step list honest."""
from __future__ import annotations

import pytest

from components.overrides import build_config
from pipelines.dag import StepSpec, build_dag, single_eval_dag, stage_dag, validate_dag


def _shape(steps: list[StepSpec]) -> list[tuple[str, tuple[str, ...]]]:
    return [(s.name, s.parents) for s in steps]


def test_full_dag_fans_eval_out_over_the_modes():
    steps = build_dag(build_config([]))
    assert _shape(steps) == [("ingest", ()), ("index", ("ingest",)), ("eval_no_context", ("ingest",)),
                             ("eval_oracle_context", ("ingest",)), ("eval_retriever_context", ("ingest", "index")),
                             ("finetune", ("ingest",)), ("benchmark", ("ingest", "finetune")),
                             ("report", ("eval_no_context", "eval_oracle_context", "eval_retriever_context"))]
    assert {s.name: s.overrides for s in steps if s.stage == "eval"} == {
        f"eval_{m}": {"experiment.mode": m} for m in ("no_context", "oracle_context", "retriever_context")}
    assert all(s.inputs == {p: "${%s.id}" % p for p in s.parents} for s in steps if s.stage != "report")
    assert steps[-1].inputs == {"eval": "${eval_no_context.id},${eval_oracle_context.id},${eval_retriever_context.id}"}


def test_a_step_whose_input_is_left_out_is_left_out():
    without_index = build_dag(build_config([]), ("ingest", "eval", "finetune", "benchmark"))
    assert "eval_retriever_context" not in [s.name for s in without_index]
    without_finetune = build_dag(build_config([]), ("ingest", "index", "eval", "benchmark"))
    assert "benchmark" not in [s.name for s in without_finetune]


def test_modes_listed_twice_run_once():
    steps = build_dag(build_config(["experiment.modes=[no_context,no_context]"]), ("ingest", "eval", "report"))
    assert [s.name for s in steps] == ["ingest", "eval_no_context", "report"]


@pytest.mark.parametrize("mode, expected", [
    ("no_context", [("ingest", ()), ("eval", ("ingest",))]),
    ("oracle_context", [("ingest", ()), ("eval", ("ingest",))]),
    ("retriever_context", [("ingest", ()), ("index", ("ingest",)), ("eval", ("ingest", "index"))])])
def test_single_eval_builds_only_what_its_mode_reads(mode, expected):
    steps = single_eval_dag(build_config([f"experiment_mode={mode}"]))
    assert _shape(steps) == expected
    assert steps[-1].subdir == "" and steps[-1].overrides == {"experiment.mode": mode}


@pytest.mark.parametrize("stage, expected", [
    ("ingest", ["ingest"]), ("index", ["ingest", "index"]), ("finetune", ["ingest", "finetune"]),
    ("benchmark", ["ingest", "finetune", "benchmark"])])
def test_a_stage_command_runs_the_stage_and_its_upstream(stage, expected):
    assert [s.name for s in stage_dag(stage, build_config([]))] == expected


def test_validate_dag_rejects_unknown_stages_and_dangling_parents():
    with pytest.raises(ValueError, match="unknown stage"):
        validate_dag([StepSpec("x", "nope")])
    with pytest.raises(ValueError, match="parent ingest is not defined before it"):
        validate_dag([StepSpec("index", "index", parents=("ingest",))])
    with pytest.raises(ValueError, match="does not reference a parent"):
        validate_dag([StepSpec("ingest", "ingest"), StepSpec("index", "index", inputs={"ingest": "${other.id}"})])

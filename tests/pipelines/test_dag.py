"""The one DAG, built from the stage registry: which steps a run, `slm eval` and `slm <stage>` get, and
the checks that keep a hand-made step list honest."""
from __future__ import annotations

import pytest

from components.core.overrides import build_config
from pipelines.dag import StepSpec, build_dag, stage_dag, validate_dag


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
    steps = stage_dag("eval", build_config([f"experiment_mode={mode}"]))
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


def test_eval_tuned_adds_an_eval_of_the_fine_tuned_model_per_mode():
    from pipelines.controller import build_plan

    cfg = build_config(["experiment.eval_tuned=true", "experiment.modes=[no_context,oracle_context]"])
    steps = {s.name: s for s in build_dag(cfg)}
    tuned = steps["eval_tuned_oracle_context"]
    assert tuned.stage == "eval" and tuned.parents == ("ingest", "finetune")
    assert tuned.inputs == {"ingest": "${ingest.id}"}  # the adapter comes as a model reference, not an input
    assert tuned.overrides["model.adapter"] == "${finetune.models.output.-1.id}"
    assert "eval_tuned_no_context" in steps["report"].parents
    plan = {s["name"]: s for s in build_plan(cfg)}
    assert plan["eval_tuned_no_context"]["parameter_override"]["model/adapter"] == "${finetune.models.output.-1.id}"
    assert plan["eval_tuned_no_context"]["parents"] == ["ingest", "finetune"]
    assert "eval_tuned_no_context" not in [s.name for s in build_dag(build_config([]))]


def test_locally_a_model_reference_is_the_folder_the_step_registered(tmp_path):
    from pipelines.local import StepOutcome, resolve_model_refs

    cfg = build_config([])
    step = StepSpec("eval_tuned_no_context", "eval", ("ingest", "finetune"),
                    overrides={"model.adapter": "${finetune.models.output.-1.id}"})
    done = {"finetune": StepOutcome("finetune", "finetune", "ran", 1.0, tmp_path, {"model_dir": str(tmp_path / "a")})}
    assert resolve_model_refs(cfg, step, done).model.adapter == str(tmp_path / "a")
    done["finetune"].results.pop("model_dir")
    with pytest.raises(Exception, match="registered no model"):
        resolve_model_refs(cfg, step, done)


def test_a_qlora_adapter_is_evaluated_on_its_4bit_base():
    lora = {s.name: s for s in build_dag(build_config(["experiment.eval_tuned=true"]))}
    assert "model.load_in_4bit" not in lora["eval_tuned_no_context"].overrides
    qlora = {s.name: s for s in build_dag(build_config(["experiment.eval_tuned=true", "finetune.method=qlora"]))}
    assert qlora["eval_tuned_no_context"].overrides["model.load_in_4bit"] is True
    assert "model.load_in_4bit" not in qlora["eval_no_context"].overrides, "the base evals stay as configured"

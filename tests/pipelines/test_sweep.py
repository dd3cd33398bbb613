"""Sweeps: the parameter syntax, key and objective validation (#254, #285), the optimizer built offline
with Optuna (in a subprocess: ClearML's Task is process-global), and the summary (#473, #644)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from components.core.errors import UserError
from pipelines.sweep import (STAGE_METRICS, SWEEP_PRESETS, ParamSpec, check_template,
                             format_summary, infer_stage, parse_objective, parse_param, parse_space,
                             stage_parameter_types, summarize_sweep, validate_objective)
from pipelines.templates import template_parameters

from helpers import run_offline_script


def test_parameter_syntax_gives_typed_ranges_and_choices():
    assert parse_param("finetune", "finetune/r=int:4:32:4") == ParamSpec("finetune/r", "int", (4, 32, 4))
    assert parse_param("finetune", "finetune/dropout=uniform:0:0.2") == ParamSpec(
        "finetune/dropout", "uniform", (0.0, 0.2, None))
    assert parse_param("finetune", "finetune/learning_rate=loguniform:1e-5:1e-3").values == (1e-5, 1e-3, None)
    assert parse_param("finetune", "finetune/r=choice:8,16,32").values == (8, 16, 32)
    assert parse_param("eval", "generation/do_sample=choice:true,false").values == (True, False)
    assert parse_param("eval", "experiment/mode=fixed:retriever_context").values == ("retriever_context",)
    assert parse_param("eval", "inputs/index=fixed:abc123") == ParamSpec("inputs/index", "fixed", ("abc123",))
    # a comma inside a fixed value is part of the value
    assert parse_param("finetune", "finetune/target_modules=fixed:q,v").values == ("q,v",)


@pytest.mark.parametrize("text, message", [
    ("finetune/Learning_rate=loguniform:1e-5:1e-3", "did you mean finetune/learning_rate?"),
    ("finetune/learningrate=loguniform:1e-5:1e-3", "did you mean finetune/learning_rate?"),
    ("finetune.r=int:4:32", "did you mean finetune/r?"),
    ("Finetune/r=int:4:32", "did you mean finetune/r?"),
    ("generation/top_k=int:1:5", "reads sections finetune, model, prompt"),
])
def test_misspelled_or_wrong_case_key_names_the_exact_key(text, message):
    with pytest.raises(UserError) as e:
        parse_param("finetune", text)
    assert message in str(e.value) and "#254" in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("finetune/r=uniform:1:3", "use int"),
    ("finetune/learning_rate=int:1:3", "use uniform or loguniform"),
    ("finetune/learning_rate=loguniform:0:1e-3", "positive LOW"),
    ("finetune/r=int:32:4", "LOW must be below HIGH"),
    ("finetune/r=choice:8,x", "expected int"),
    ("finetune/r=between:1:2", "KIND one of"),
])
def test_bad_specs_are_user_errors(text, message):
    with pytest.raises(UserError, match=message):
        parse_param("finetune", text)


def test_list_fields_and_all_fixed_spaces_are_refused():
    with pytest.raises(UserError, match="list"):
        parse_param("eval", "generation/stop_strings=choice:a,b")
    with pytest.raises(UserError, match="nothing to sweep"):
        parse_space("eval", ["experiment/mode=fixed:retriever_context"])
    with pytest.raises(UserError, match="twice"):
        parse_space("finetune", ["finetune/r=int:4:8", "finetune/r=choice:4,8"])


def test_objective_is_a_summary_single_value_the_stage_reports():
    validate_objective("eval", "Summary", "token_recall")
    validate_objective("finetune", "Summary", "eval_loss")
    with pytest.raises(UserError) as e:
        validate_objective("eval", "Final Metrics", "token_recall")
    assert "--objective Summary/token_recall" in str(e.value) and "#285" in str(e.value)
    with pytest.raises(UserError, match="did you mean token_recall"):
        validate_objective("eval", "Summary", "Token_Recall")
    with pytest.raises(UserError, match="reports no metric to optimise"):
        validate_objective("ingest", "Summary", "num_questions")
    with pytest.raises(UserError, match="TITLE/SERIES"):
        parse_objective("token_recall")


def test_stage_is_inferred_from_sections_and_objective():
    assert infer_stage(["finetune/r=int:4:8"], "eval_loss") == "finetune"
    assert infer_stage(["retriever/top_k=int:1:5"], "token_recall") == "eval"
    assert infer_stage(["model/path=choice:a,b"], "token_recall") == "eval"
    assert infer_stage(["benchmark/max_new_tokens=int:16:64"], "token_f1_delta") == "benchmark"
    with pytest.raises(UserError, match="pass --stage"):
        infer_stage(["model/path=choice:a,b"], "duration_seconds")  # every stage reports it


def test_benchmark_objectives_are_the_metrics_the_benchmark_reports():
    from clearml_tasks.stages import ENERGY
    from components.stages.benchmark import METRICS, MODELS, QUALITY_METRICS, flat_metrics

    summary = {which: {m: {"mean": 0.5} for m in METRICS} for which in (*MODELS, "delta")}
    quality = {f"{m}_{w}" for m in QUALITY_METRICS for w in (*MODELS, "delta")}
    assert set(STAGE_METRICS["benchmark"]) == quality | set(ENERGY)  # energy: a GPU sweep may minimise it
    assert quality <= set(flat_metrics(summary))


def test_presets_are_valid_for_their_templates():
    for preset in SWEEP_PRESETS.values():
        space = parse_space(preset.stage, preset.params)
        assert all(spec.key in template_parameters(preset.stage) for spec in space)
        validate_objective(preset.stage, *parse_objective(preset.objective))
    assert SWEEP_PRESETS["lora"].direction == "min" and SWEEP_PRESETS["retriever"].direction == "max"


def test_every_sweepable_key_is_a_template_parameter():
    for stage in ("eval", "finetune", "benchmark"):
        assert set(stage_parameter_types(stage)) == set(template_parameters(stage))


def test_check_template_catches_a_missing_key_and_lets_a_job_build_its_empty_inputs():
    params = {k: str(v) for k, v in template_parameters("finetune").items()}
    space = parse_space("finetune", ["finetune/r=int:4:8"])
    check_template("finetune", params, space)  # inputs/ingest empty: each job ingests its own dataset/*
    check_template("finetune", params, space + [ParamSpec("inputs/ingest", "fixed", ("abc",))])
    renamed = {k.replace("finetune/r", "finetune/R"): v for k, v in params.items()}
    with pytest.raises(UserError, match="did you mean finetune/R"):
        check_template("finetune", {**renamed, "inputs/ingest": "abc"}, space)


def test_an_input_no_job_can_build_must_be_set_only_where_a_job_reads_it(monkeypatch):
    """An eval that could not build its index: the sweep refuses only when some job retrieves."""
    import dataclasses

    from clearml_tasks import stages

    monkeypatch.setitem(stages.STAGES, "eval", dataclasses.replace(stages.STAGES["eval"], builds=("ingest",)))
    params = {k: str(v) for k, v in template_parameters("eval").items()}
    closed_book = parse_space("eval", ["generation/max_new_tokens=int:8:32:8"])
    check_template("eval", params, closed_book)  # the template's mode is no_context: no index needed
    with pytest.raises(UserError, match="no inputs/index"):
        check_template("eval", params, parse_space("eval", ["retriever/top_k=int:1:5",
                                                            "experiment/mode=fixed:retriever_context"]))
    with pytest.raises(UserError, match="no inputs/index"):
        check_template("eval", params, parse_space("eval", ["experiment/mode=choice:no_context,retriever_context"]))
    check_template("eval", {**params, "experiment/mode": "oracle_context"}, closed_book)
    with pytest.raises(UserError, match="no inputs/index"):
        check_template("eval", {**params, "experiment/mode": "retriever_context"}, closed_book)
    check_template("eval", {**params, "inputs/index": "index-id"},
                   parse_space("eval", ["retriever/top_k=int:1:5", "experiment/mode=fixed:retriever_context"]))


class FakeJob:
    def __init__(self, status: str):
        self._status = status

    def status(self) -> str:
        return self._status


def fake_optimizer(results: dict[str, float | None], sign: float):
    jobs = {tid: FakeJob("completed" if v is not None else "failed") for tid, v in results.items()}
    params = {tid: {"finetune/r": i} for i, tid in enumerate(results)}
    strategy = SimpleNamespace(get_created_jobs_tasks=lambda: jobs, get_created_jobs_ids=lambda: params)
    objective = SimpleNamespace(get_objective=results.get, get_objective_sign=lambda: sign)
    return SimpleNamespace(get_optimizer=lambda: strategy, objective_metric=objective)


def test_summary_ranks_by_direction_and_reports_jobs_without_objective_as_failed():
    optimizer = fake_optimizer({"a": 0.5, "b": None, "c": 0.2, "d": 0.9}, sign=-1)  # minimise
    rows = summarize_sweep(optimizer, top_n=2)
    assert [(r["rank"], r["task_id"]) for r in rows] == [(1, "c"), (2, "a"), ("-", "b")]
    assert rows[0]["finetune/r"] == 2 and rows[0]["status"] == "completed"
    assert rows[-1]["status"] == "failed: no objective (failed)"
    table = format_summary(rows, "eval_loss")
    assert table.splitlines()[0].split() == ["rank", "eval_loss", "finetune/r", "status", "task_id"]
    maximise = summarize_sweep(fake_optimizer({"a": 0.5, "c": 0.2}, sign=1), top_n=5)
    assert [r["task_id"] for r in maximise] == ["a", "c"]


BUILD_OFFLINE = """
import json, sys
from clearml import Task
Task.set_offline(True)
from clearml.automation.optuna import OptimizerOptuna
from pipelines.sweep import build_optimizer, parse_space

space = parse_space("finetune", ["finetune/r=int:4:32:4", "finetune/learning_rate=loguniform:1e-5:1e-3",
                                 "finetune/lr_scheduler=choice:cosine,linear", "inputs/ingest=fixed:abc"])
optimizer = build_optimizer("template-finetune", space, "Summary", "eval_loss", "min", max_concurrent=3,
                            total_jobs=6, time_limit_minutes=30, queue="gpu", stage="finetune")
strategy = optimizer.get_optimizer()
with open(sys.argv[1], "w") as f:
    json.dump({"optuna": isinstance(strategy, OptimizerOptuna),
               "space": {p.name: type(p).__name__ for p in optimizer.hyper_parameters},
               "optuna_space": strategy._convert_hyper_parameters_to_optuna(),
               "objective": list(optimizer.objective_metric.get_objective_metric()),
               "sign": optimizer.objective_metric.get_objective_sign(),
               "queue": optimizer.execution_queue, "concurrency": optimizer.max_number_of_concurrent_tasks,
               "total_jobs": strategy.total_max_jobs, "max_iteration": strategy.max_iteration_per_job}, f)
"""


def test_optimizer_builds_offline_with_optuna(tmp_path):
    built = run_offline_script(BUILD_OFFLINE, tmp_path)
    assert built["optuna"] is True
    assert built["space"] == {"finetune/r": "UniformIntegerParameterRange",
                              "finetune/learning_rate": "LogUniformParameterRange",
                              "finetune/lr_scheduler": "DiscreteParameterRange",
                              "inputs/ingest": "DiscreteParameterRange"}
    # Optuna samples the learning rate between the values given, not between their exponents.
    kind, rate = built["optuna_space"]["finetune/learning_rate"]
    assert kind == "suggest_float" and rate["log"] is True
    assert rate["low"] == pytest.approx(1e-5) and rate["high"] == pytest.approx(1e-3)
    assert built["optuna_space"]["finetune/r"][1] == {"low": 4, "high": 32, "log": False, "step": 4}
    assert built["objective"] == ["Summary", "eval_loss"] and built["sign"] == -1
    assert (built["queue"], built["concurrency"], built["total_jobs"]) == ("gpu", 3, 6)
    assert built["max_iteration"] > 0


def test_small_numbers_in_the_summary_keep_their_digits():
    from components.core.formatting import format_table

    table = format_table([{"rank": 1, "learning_rate": 4.7e-05, "token_recall": 0.51234, "zero": 0.0}],
                         ["rank", "learning_rate", "token_recall", "zero"])
    assert "4.70e-05" in table and "0.5123" in table and "0.0000" in table

"""Grids (`-m`): which overrides are axes, the order of the points, and the one DAG a grid compiles into:
each step once per combination of the axis values its output depends on, named by them; shards and
their merge; the report over every eval; the same grid as a pipeline plan."""
from __future__ import annotations

import json

import pytest

from components.core.errors import UserError
from components.core.overrides import build_config
from pipelines.controller import build_plan
from pipelines.dag import build_dag, validate_dag
from pipelines.grid import parse_grid

DONE_GRID = ["retriever.top_k=1,3", "experiment.shards=2", "experiment.modes=[no_context,retriever_context]"]
NO_TRAINING = ("ingest", "index", "eval", "merge", "report")


def dag_for(tokens: list[str], stages=NO_TRAINING):
    grid = parse_grid(tokens, multirun=True)
    steps = build_dag(grid.config(), stages, grid=grid)
    validate_dag(steps)
    return {s.name: s for s in steps}


def test_axes_are_comma_separated_groups_and_scalar_fields_only_with_m():
    grid = parse_grid(["model=smollm2_135m_gguf,qwen_0.6b", "retriever.top_k=1,3,5", "retriever.hit_ks=1,2",
                       "experiment.modes=[no_context,oracle_context]", "experiment.max_samples=4"], multirun=True)
    assert [(a.key, a.values) for a in grid.axes] == [("model", ("smollm2_135m_gguf", "qwen_0.6b")),
                                                     ("retriever.top_k", ("1", "3", "5"))]
    assert "retriever.hit_ks=1,2" in grid.fixed  # a list field is a value, not an axis
    assert len(grid.points()) == 6
    with pytest.raises(UserError, match="several values make a grid; add -m"):
        parse_grid(["retriever.top_k=1,3"], multirun=False)
    assert parse_grid(["retriever.hit_ks=1,3"], multirun=False).fixed == ("retriever.hit_ks=1,3",)
    with pytest.raises(UserError, match="retriever.top_k"):
        parse_grid(["retriever.top_k=1,x"], multirun=True)  # every point is checked up front
    with pytest.raises(UserError, match="repeated"):
        parse_grid(["retriever.top_k=1,1"], multirun=True)
    base_and_tuned = parse_grid(["model.adapter=,/tmp/adapter"], multirun=True)  # the base model is the empty value
    assert base_and_tuned.axes[0].values == ("", "/tmp/adapter")
    assert base_and_tuned.label({"model.adapter": ""}, {"model.adapter"}) == "__adapter-none"


def test_model_axes_vary_slowest_so_each_model_loads_once():
    grid = parse_grid(["retriever.top_k=1,3", "model=smollm2_135m_gguf,qwen_0.6b"], multirun=True)
    assert [p["model"] for p in grid.points()] == ["smollm2_135m_gguf", "smollm2_135m_gguf", "qwen_0.6b", "qwen_0.6b"]


def test_the_done_grid_shares_what_does_not_depend_on_top_k():
    steps = dag_for(DONE_GRID)
    assert list(steps) == [
        "ingest", "index",
        "eval_no_context__shard-0of2", "eval_no_context__shard-1of2", "eval_no_context",
        "eval_retriever_context__shard-0of2__top_k-1", "eval_retriever_context__shard-1of2__top_k-1",
        "eval_retriever_context__top_k-1",
        "eval_retriever_context__shard-0of2__top_k-3", "eval_retriever_context__shard-1of2__top_k-3",
        "eval_retriever_context__top_k-3", "report"]
    merge = steps["eval_retriever_context__top_k-3"]
    assert merge.stage == "merge" and merge.parents == ("eval_retriever_context__shard-0of2__top_k-3",
                                                        "eval_retriever_context__shard-1of2__top_k-3")
    assert merge.inputs["eval"] == ",".join("${%s.id}" % p for p in merge.parents)
    shard = steps["eval_retriever_context__shard-1of2__top_k-3"]
    assert shard.overrides["experiment.shard"] == 1 and shard.overrides["retriever.top_k"] == "3"
    assert "retriever.top_k" not in steps["index"].overrides  # the index is the same for every k
    assert steps["report"].parents == ("eval_no_context", "eval_retriever_context__top_k-1",
                                       "eval_retriever_context__top_k-3")


def test_adding_a_value_adds_only_its_steps():
    before = dag_for(DONE_GRID)
    after = dag_for([t.replace("1,3", "1,3,5") for t in DONE_GRID])
    assert set(after) - set(before) == {"eval_retriever_context__shard-0of2__top_k-5",
                                        "eval_retriever_context__shard-1of2__top_k-5",
                                        "eval_retriever_context__top_k-5"}
    assert all(after[name] == before[name] for name in before if name != "report")


def test_models_by_datasets_share_ingest_per_dataset_and_train_per_model_and_dataset():
    steps = dag_for(["model=smollm2_135m_gguf,smollm2_360m", "dataset=demo,local_simple_qa",
                     "experiment.modes=[no_context]"], stages=("ingest", "eval", "finetune", "benchmark", "report"))
    assert [n for n in steps if n.startswith("ingest")] == ["ingest__dataset-demo", "ingest__dataset-local_simple_qa"]
    evals = [n for n in steps if n.startswith("eval")]
    assert len(evals) == 4 and "eval_no_context__model-smollm2_360m__dataset-demo" in evals
    assert steps["finetune__model-smollm2_360m__dataset-demo"].parents == ("ingest__dataset-demo",)
    assert steps["benchmark__model-smollm2_360m__dataset-demo"].parents == (
        "ingest__dataset-demo", "finetune__model-smollm2_360m__dataset-demo")
    eval_step = steps["eval_no_context__model-smollm2_360m__dataset-demo"]
    assert eval_step.overrides["model.path"] == "HuggingFaceTB/SmolLM2-360M-Instruct"
    assert not any(k.startswith("dataset.") for k in eval_step.overrides)  # eval reads its ingest, not dataset
    assert len(steps["report"].parents) == 4


def test_a_grid_pipeline_plan_has_the_same_steps_with_their_queues():
    grid = parse_grid(DONE_GRID, multirun=True)
    cfg = build_config(list(grid.fixed))
    plan = build_plan(cfg, queue="gpu", controller_queue="services", grid=grid)
    assert [s["name"] for s in plan] == list(dag_for(DONE_GRID, stages=tuple(
        ["ingest", "index", "eval", "finetune", "benchmark", "merge", "report"])))
    by_name = {s["name"]: s for s in plan}
    assert {s["execution_queue"] for s in plan} == {"gpu"}
    shard = by_name["eval_retriever_context__shard-0of2__top_k-1"]["parameter_override"]
    assert (str(shard["retriever/top_k"]), str(shard["experiment/shard"]), str(shard["experiment/shards"])) == (
        "1", "0", "2")
    assert by_name["eval_retriever_context__top_k-1"]["template_name"] == "merge"
    assert by_name["report"]["parameter_override"]["inputs/eval"].count("${") == 3
    json.dumps(plan)  # the --dry-run document is plain JSON


def test_pipeline_start_m_dry_run_prints_the_grid_steps_with_their_queues(capsys):
    from pipelines.cli import main

    assert main(["pipeline", "start", "-m", *DONE_GRID, "--queue", "gpu", "--controller-queue", "services",
                 "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    steps = {s["name"]: s["execution_queue"] for s in plan}
    assert steps["eval_retriever_context__shard-1of2__top_k-3"] == "gpu" and steps["report"] == "gpu"
    assert len(steps) == 14

"""The DAG compiled for ClearML: the plan (pure; each step on its fleet class), the templates' parameters, and the PipelineController built offline with placeholder template ids (in a
subprocess: ClearML's Task is process-global), its retry policy surviving the rebuild on an agent. The
`--dry-run` command: tests/pipelines/test_server_commands.py."""
from __future__ import annotations

import pytest

from clearml_tasks.stages import STAGES
from components.core.coercion import field_types
from components.core.config import AppConfig, GenerationConfig, section_types
from components.core.errors import UserError
from components.core.overrides import build_config
from pipelines import templates
from pipelines.controller import (PIPELINE_PARAMETERS, build_controller, build_plan, pipeline_parameters,
                                  samples_without_seed)
from helpers import run_offline_script
from pipelines.dag import referenced_steps

STEPS = ["ingest", "index", "eval_no_context", "eval_oracle_context", "eval_retriever_context", "finetune",
         "benchmark", "report"]
PARENTS = {"ingest": [], "index": ["ingest"], "eval_no_context": ["ingest"],
           "eval_oracle_context": ["ingest"], "eval_retriever_context": ["ingest", "index"],
           "finetune": ["ingest"], "benchmark": ["ingest", "finetune"],
           "report": ["eval_no_context", "eval_oracle_context", "eval_retriever_context"]}
OVERRIDES = ["model=qwen_0.6b", "experiment.max_samples=10", "generation.max_new_tokens=16",
             "finetune.r=8", "retriever.hit_ks=[1,2]"]


def plan_by_name(*overrides: str, **kwargs) -> dict[str, dict]:
    return {step["name"]: step for step in build_plan(build_config(list(overrides)), **kwargs)}


def test_plan_has_every_step_with_its_parents_queue_and_cache():
    plan = build_plan(AppConfig(), queue="gpu", controller_queue="services", template_project="p/templates")
    assert [s["name"] for s in plan] == STEPS
    for step in plan:
        assert step["parents"] == PARENTS[step["name"]]
        assert step["execution_queue"] == "gpu"
        assert step["cache_executed_step"] is True
        assert step["retry_on_failure"] == AppConfig().fleet.retries
        assert step["template_project"] == "p/templates"
        assert step["template_name"] == step["stage"]


def test_inputs_reference_parent_ids_and_eval_steps_set_their_mode():
    plan = plan_by_name()
    assert {k: v for k, v in plan["eval_retriever_context"]["parameter_override"].items()
            if k.startswith("inputs/")} == {"inputs/ingest": "${ingest.id}", "inputs/index": "${index.id}"}
    assert plan["benchmark"]["parameter_override"]["inputs/finetune"] == "${finetune.id}"
    for mode in ("no_context", "oracle_context", "retriever_context"):
        assert plan[f"eval_{mode}"]["parameter_override"]["experiment/mode"] == mode


def test_every_override_key_is_a_parameter_the_template_connects():
    types = section_types()
    for step in build_plan(build_config(OVERRIDES + ["experiment.shards=2", "experiment.eval_tuned=true"])):
        connected = templates.template_parameters(step["stage"])
        for key, value in step["parameter_override"].items():
            section, field = key.split("/")
            if section == "inputs":
                assert field in STAGES[step["stage"]].inputs
                refs = referenced_steps(value)
                assert refs and set(refs) <= set(step["parents"])
                assert len(refs) == 1 or field in STAGES[step["stage"]].many
            else:
                assert section in STAGES[step["stage"]].sections, key
                assert field in field_types(types[section]), key
            # a shard's number and count: not on the template, connected where a step sets them
            assert key in connected or key.replace("/", ".") in STAGES[step["stage"]].step_fields, key


def test_changed_fields_reach_only_the_stages_that_read_them():
    plan = plan_by_name(*OVERRIDES)
    assert plan["eval_no_context"]["parameter_override"]["generation/max_new_tokens"] == 16
    assert "generation/max_new_tokens" not in plan["finetune"]["parameter_override"]
    assert plan["finetune"]["parameter_override"]["finetune/r"] == 8
    assert plan["index"]["parameter_override"]["retriever/hit_ks"] == "[1, 2]"  # JSON text
    assert plan["ingest"]["parameter_override"] == {"dataset/path": "${pipeline.dataset_path}"}


def test_steps_carry_only_what_their_output_depends_on():
    """ClearML caches a step on its parameters: a field the step's output does not depend on must not be
    among them, or renaming a run re-runs every GPU step."""
    renamed = plan_by_name(*OVERRIDES, "experiment.name=renamed", "experiment.modes=[no_context,oracle_context,"
                           "retriever_context]", "retriever.top_k=5")
    original = plan_by_name(*OVERRIDES)
    for name, step in renamed.items():
        keys = set(step["parameter_override"])
        assert not {"experiment/name", "experiment/modes", "experiment/output_dir"} & keys, name
        if name != "eval_retriever_context":
            assert step["parameter_override"] == original[name]["parameter_override"], name
    closed = renamed["eval_no_context"]["parameter_override"]
    assert not any(key.startswith("retriever/") for key in closed)  # closed book reads no retriever
    rag = renamed["eval_retriever_context"]["parameter_override"]
    assert rag["retriever/top_k"] == "${pipeline.top_k}" and rag["retriever/kind"] == "${pipeline.retriever_kind}"
    assert "retriever/top_k" not in renamed["index"]["parameter_override"]  # the index is the same for any k


def test_pipeline_knobs_are_references_with_the_config_value_as_default():
    cfg = build_config(OVERRIDES)
    assert pipeline_parameters(cfg)["max_samples"] == 10
    assert pipeline_parameters(cfg)["model_path"] == "Qwen/Qwen3-0.6B"
    # the preset's name is what model_path gives: left empty, so a NEW RUN editing model_path relabels too
    assert pipeline_parameters(cfg)["model_name"] == ""
    assert pipeline_parameters(build_config(["model.name=mine"]))["model_name"] == "mine"
    override = plan_by_name(*OVERRIDES)["eval_no_context"]["parameter_override"]
    assert override["experiment/max_samples"] == "${pipeline.max_samples}"
    assert override["model/path"] == "${pipeline.model_path}"
    assert all("." not in name for name in PIPELINE_PARAMETERS)  # ClearML splits ${pipeline.a.b}


def test_a_knob_set_at_start_stays_a_reference_so_new_run_reaches_every_step():
    """`slm pipeline start experiment.max_samples=8`: a grid of one point, whose steps carry the run's
    fixed overrides among their own; they used to override the knob with a literal 8."""
    from pipelines.grid import parse_grid

    for multirun in (False, True):
        grid = parse_grid(["experiment.max_samples=8"], multirun)
        plan = {s["name"]: s for s in build_plan(grid.config(), grid=grid)}
        for mode in ("no_context", "oracle_context", "retriever_context"):
            assert plan[f"eval_{mode}"]["parameter_override"]["experiment/max_samples"] == "${pipeline.max_samples}"
        assert pipeline_parameters(grid.config())["max_samples"] == 8  # NEW RUN's default
    grid = parse_grid(["experiment.max_samples=4,8"], multirun=True)  # an axis is the step's own value
    plan = {s["name"]: s for s in build_plan(grid.config(), grid=grid)}
    assert plan["eval_no_context__max_samples-4"]["parameter_override"]["experiment/max_samples"] == "4"


def test_sampling_without_a_seed_is_never_cached():
    # A config cannot hold seed=None today (seeds are ints); the rule still guards a stage that samples.
    unseeded = AppConfig(generation=GenerationConfig(do_sample=True, seed=None))
    assert {s: samples_without_seed(unseeded, s) for s in STAGES} == {s: s == "eval" for s in STAGES}
    seeded = build_config(["generation.do_sample=true", "generation.seed=7", "benchmark.do_sample=true"])
    assert all(step["cache_executed_step"] for step in build_plan(seeded))


def test_controller_and_steps_on_one_queue_is_refused():
    with pytest.raises(UserError, match="#1328"):
        build_plan(AppConfig(), queue="gpu", controller_queue="gpu")
    plan = build_plan(AppConfig())
    with pytest.raises(UserError, match="deadlock"):  # the CPU class is a step queue too
        build_controller(plan, AppConfig(), controller_queue="cpu", base_task_ids={})


def test_missing_template_id_is_an_error_before_any_clearml_call():
    plan = build_plan(AppConfig())
    with pytest.raises(UserError, match="no template id for stage 'benchmark'"):
        build_controller(plan, AppConfig(), base_task_ids={s: "x" for s in STAGES if s != "benchmark"})


def test_template_parameters_are_what_the_stage_reads_less_what_only_the_dag_reads():
    data = AppConfig().to_dict()
    for stage in STAGES:
        spec = STAGES[stage]
        params = templates.template_parameters(stage)
        expected = {f"{s}/{f}" for s in spec.template_sections for f in data[s]}
        expected |= {f"inputs/{name}" for name in spec.inputs}
        assert set(params) <= expected and all(params[f"inputs/{name}"] == "" for name in spec.inputs)
    eval_params = templates.template_parameters("eval")
    # one eval: its mode, not the modes the DAG fans out over, nor the DAG's shards, run name or folder
    assert {k for k in eval_params if k.startswith("experiment/")} == {
        "experiment/mode", "experiment/max_samples", "experiment/split", "experiment/bootstrap_samples"}
    assert "model/max_input_tokens" not in eval_params and "model/path" in eval_params
    # the dataset it ingests itself when inputs/ingest is empty, less what only the ingest task does (publish)
    assert "dataset/path" in eval_params and "dataset/publish" not in eval_params
    assert "retriever/top_k" in eval_params and "retriever/hit_ks" not in eval_params  # hit@k is the index's
    index_params = templates.template_parameters("index")
    assert "retriever/hit_ks" in index_params and "retriever/top_k" not in index_params
    assert "dataset/publish" in templates.template_parameters("ingest")
    assert {"finetune/r", "dataset/path"} <= set(templates.template_parameters("benchmark"))  # it trains its own


def test_template_parameters_carry_the_config_help_with_choices_as_descriptions():
    for stage in STAGES:
        descriptions = templates.parameter_descriptions(stage)
        assert set(descriptions) == set(templates.template_parameters(stage))
        assert all(descriptions.values())
    eval_help = templates.parameter_descriptions("eval")
    assert "passages retrieved per question" in eval_help["retriever/top_k"]
    assert eval_help["experiment/mode"].endswith("(one of: no_context, oracle_context, retriever_context)")
    assert "clearml://<dataset id>" in eval_help["dataset/path"]
    assert "empty: this task runs the ingest stage itself from its own dataset/*" in eval_help["inputs/ingest"]
    assert "retriever_context" in eval_help["inputs/index"]
    assert templates.parameter_descriptions("merge")["inputs/eval"].endswith("comma-separated; required")


def test_a_template_describes_itself_and_where_its_runs_go():
    text = templates.template_description("eval", "slm-experiments")
    assert text.startswith("eval: answer every question in experiment.mode")
    assert "experiment/mode (no_context | oracle_context | retriever_context)" in text
    assert "experiment/max_samples" in text and "model/path" in text and "dataset/path" in text
    assert "Produces: " in text and "predictions.jsonl" in text
    assert "'eval · no_context · smollm2_135m_gguf · demo'" in text and "project slm-experiments" in text
    assert all(templates.template_description(stage, "p") for stage in STAGES)
    assert templates.default_runs_project("slm-experiments/templates") == "slm-experiments"
    assert templates.default_runs_project("tmpl") == AppConfig().clearml.project


def fake_git(answers: dict[tuple[str, ...], str]):
    return lambda *args: answers.get(args, "")


def test_git_source_warns_when_no_commit_makes_steps_uncacheable(monkeypatch):
    monkeypatch.setattr(templates, "_git", fake_git({("remote", "get-url", "origin"): "https://git/x.git",
                                                     ("rev-parse", "--abbrev-ref", "HEAD"): "main"}))
    warnings: list[str] = []
    source = templates.git_source(branch="feature", warn=warnings.append)
    assert source == templates.GitSource("https://git/x.git", "feature", "")
    assert any("#415" in w for w in warnings)


def test_git_source_warns_about_an_unpushed_commit(monkeypatch):
    monkeypatch.setattr(templates, "_git", fake_git({("remote", "get-url", "origin"): "https://git/x.git",
                                                     ("rev-parse", "--abbrev-ref", "HEAD"): "main",
                                                     ("rev-parse", "HEAD"): "abc123"}))
    warnings: list[str] = []
    assert templates.git_source(warn=warnings.append).commit == "abc123"
    assert any("push it" in w for w in warnings)


def test_git_source_without_origin_asks_for_the_repo(monkeypatch):
    monkeypatch.setattr(templates, "_git", fake_git({}))
    with pytest.raises(UserError, match="--repo"):
        templates.git_source()


BUILD_OFFLINE = """
import json, sys
from clearml import Task
Task.set_offline(True)
from components.core.errors import UserError
from components.core.overrides import build_config
from pipelines.controller import build_controller, build_plan
from clearml_tasks.stages import STAGES
from pipelines.templates import register_templates

cfg = build_config(sys.argv[2:])
plan = build_plan(cfg)
controller = build_controller(plan, cfg, "services", {stage: f"template-{stage}" for stage in STAGES})
nodes = {name: {"parents": node.parents, "queue": node.queue, "parameters": node.parameters,
                "cache": node.cache_executed_step, "base_task_id": node.base_task_id}
         for name, node in controller.get_pipeline_dag().items()}
try:
    register_templates("p")
    refused = ""
except UserError as e:
    refused = str(e)
with open(sys.argv[1], "w") as f:
    json.dump({"plan": plan, "nodes": nodes, "parameters": controller.get_parameters(),
               "descriptions": controller._pipeline_args_desc, "refused": refused}, f)
Task.current_task().close()
"""


def test_controller_builds_offline_with_placeholder_ids(tmp_path):
    built = run_offline_script(BUILD_OFFLINE, tmp_path, *OVERRIDES)
    assert list(built["nodes"]) == STEPS
    for step in built["plan"]:
        node = built["nodes"][step["name"]]
        assert node["parents"] == step["parents"]
        assert node["queue"] == step["execution_queue"]
        assert node["parameters"] == step["parameter_override"]
        assert node["cache"] is True
        assert node["base_task_id"] == f"template-{step['stage']}"
    assert built["parameters"]["max_samples"] == 10
    assert "offline" in built["refused"]
    # ClearML writes a parameter's description under Args/<name> (NEW RUN shows it); it files the bare name
    assert built["descriptions"]["Args/max_samples"].startswith("experiment.max_samples: questions per eval")
    assert all(f"Args/{name}" in built["descriptions"] for name in PIPELINE_PARAMETERS)


ROUND_TRIP = """
import json, sys
from types import SimpleNamespace
from clearml import PipelineController, Task
Task.set_offline(True)
from components.core.overrides import build_config
from clearml_tasks.stages import STAGES
from pipelines.controller import build_controller, build_plan, controller_class
from pipelines.fleet import FleetRetry


class FailedTask:  # what the retry policy reads of a failed step task
    def __init__(self, log):
        self.log, self.data, self.texts = log, SimpleNamespace(status_reason="worker execution exit code 1"), []
    def reload(self): pass
    def get_reported_console_output(self, number_of_reports=1): return [self.log]
    def get_logger(self): return SimpleNamespace(report_text=self.texts.append)


cfg = build_config(["fleet.queues=cpu:0,gpu-16gb:16,gpu-80gb:80"])
built = build_controller(build_plan(cfg), cfg, "services", {stage: f"template-{stage}" for stage in STAGES})
dag = json.loads(json.dumps(built._serialize(), default=str))
result = {}
for label, cls in (("clearml", PipelineController), ("ours", controller_class())):
    # an agent's process: nothing registered by add_step, the DAG read back from the task
    PipelineController._retries.clear()
    PipelineController._retries_callbacks.clear()
    rebuilt = cls(name="", project="", always_create_from_code=False, retry_on_failure=FleetRetry())
    rebuilt._deserialize(dag, force=True)
    rebuilt.get_parameters = lambda: {"fleet_queues": "cpu:0,gpu-16gb:16,gpu-80gb:80", "fleet_retries": "3"}
    node = rebuilt._nodes["eval_no_context"]
    task = FailedTask("loading...\\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    node.job = SimpleNamespace(task=task)
    queue_before = node.queue
    moved = rebuilt._call_retries_callback(node)
    result[label] = [sorted(rebuilt._nodes) == sorted(dag), queue_before, bool(moved), node.queue, task.texts]
with open(sys.argv[1], "w") as f:
    json.dump(result, f)
Task.current_task().close()
"""


def test_an_out_of_memory_step_moves_up_after_the_dag_is_rebuilt_on_an_agent(tmp_path):
    retries = run_offline_script(ROUND_TRIP, tmp_path)
    assert retries["clearml"][:3] == [True, "gpu-16gb", False]  # ClearML's own controller forgets the retry
    assert retries["ours"] == [True, "gpu-16gb", True, "gpu-80gb",
                               ["step eval_no_context: out of memory on gpu-16gb; re-enqueued on gpu-80gb"]]
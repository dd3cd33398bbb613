"""The ClearML web UI as a researcher meets it, checked through the API calls the UI itself makes: every
template shows only its stage's parameters, each with a description (choices listed), describes itself and
is published (read-only, clonable); a clone of each template enqueued unchanged completes on the demo data
and becomes a run (renamed after what it ran, untagged, in the runs project) whose results read in the
browser (ordered single values, a rounded table with CIs, artifact previews, interactive plots); a clone
with `dataset/path` and `model/path` edited ran on them under the new names; a NEW RUN of a pipeline (the
UI's `pipelines.start_pipeline`: clone the controller with other Args and enqueue it) with another
`max_samples` changes every eval's question count, and its parameters carry descriptions.

Shares the live-server fixtures of test_clearml_server.py (its own templates and agents, module-scoped);
skips when no server answers.
"""
from __future__ import annotations

import json
import re
import textwrap

import pytest

from test_clearml_server import (PROJECT, SERVICES_QUEUE, STEPS_QUEUE, TEMPLATES, agents, sdk, server,  # noqa: F401
                                 slm, source, templates)

pytestmark = pytest.mark.clearml_server

EDIT_FIRST = {"eval": ["experiment/mode", "experiment/max_samples", "model/path", "dataset/path"]}
UNCHANGED = ("ingest", "index", "eval", "finetune", "benchmark")  # merge and report read task ids (required)


def test_every_template_shows_its_parameters_explained_describes_itself_and_is_published(server, templates):
    from clearml_tasks.stages import STAGES
    from pipelines.templates import parameter_descriptions, template_description

    seen = sdk(server, f"""
        from clearml.backend_api.session.client import APIClient
        out = {{}}
        for stage, task_id in {templates!r}.items():
            t = Task.get_task(task_id=task_id)
            params = {{f"{{s}}/{{n}}": p.description for s, sec in (t.data.hyperparams or {{}}).items()
                      for n, p in sec.items() if s != "properties"}}  # user properties are stored there too
            out[stage] = [str(t.status), t.comment, params]
        clone = Task.clone(source_task={templates["eval"]!r})  # what the UI's Clone does
        project = APIClient().projects.get_all(name={TEMPLATES!r})[0]
        out["_"] = [str(clone.status), clone.get_parameters()["experiment/mode"], project.description]
        clone.delete()
        print(json.dumps(out))
        """)
    clone_status, clone_mode, project_description = seen.pop("_")
    assert set(seen) == set(STAGES)
    for stage, (status, comment, params) in seen.items():
        assert status == "published", stage  # read-only in the UI
        assert comment == template_description(stage, PROJECT), stage
        assert params == parameter_descriptions(stage), stage  # only its parameters, each explained
    eval_params = seen["eval"][2]
    assert not {"experiment/modes", "experiment/shards", "experiment/shard", "experiment/eval_tuned",
                "experiment/output_dir", "experiment/name", "model/max_input_tokens"} & set(eval_params)
    assert eval_params["experiment/mode"].endswith("(one of: no_context, oracle_context, retriever_context)")
    assert "(one of: bm25, dense, hybrid)" in eval_params["retriever/kind"]
    assert "clearml://<dataset id>" in eval_params["dataset/path"]
    assert "runs the ingest stage itself" in eval_params["inputs/ingest"]
    assert all(key in seen["eval"][1] for key in EDIT_FIRST["eval"])
    assert (clone_status, clone_mode) == ("created", "no_context")  # a published template still clones
    assert f"Runs land in {PROJECT}" in project_description


def _run_clone(server, template_id: str, edits: dict, timeout: float) -> dict:
    """Clone like the UI (name "Clone Of ..."), apply `edits`, enqueue, wait; what the run became."""
    return sdk(server, f"""
        from clearml.backend_api.session.client import APIClient
        template = Task.get_task(task_id={template_id!r})
        clone = Task.clone(source_task=template, name="Clone Of " + template.name)
        for key, value in {edits!r}.items():
            clone.set_parameter(key, value)
        Task.enqueue(clone, queue_name={STEPS_QUEUE!r})
        run = wait(clone.id, {timeout})
        client = APIClient()
        singles = client.events.get_task_single_value_metrics(tasks=[run.id]).tasks
        plots = client.events.get_task_plots(task=run.id, iters=1).plots
        artifacts = {{a.key: a.type_data.preview if a.type_data else "" for a in run.data.execution.artifacts or []}}
        console = "\\n".join(run.get_reported_console_output(number_of_reports=1000))
        results = {{}}
        if "results" in run.artifacts:
            results = json.load(open(run.artifacts["results"].get_local_copy()))
        print(json.dumps({{
            "id": run.id, "status": str(run.status), "reason": run.data.status_reason, "name": run.name,
            "project": run.get_project_name(), "tags": run.get_tags(), "properties": run.get_user_properties(),
            "parameters": run.get_parameters(),
            "singles": [v["variant"] for t in singles for v in t["values"]] if singles else [],
            "plots": [[p["metric"], p["variant"], p["plot_str"]] for p in plots or []],
            "artifacts": artifacts, "results": {{k: v for k, v in results.items() if k != "meta"}},
            # the inputs it built are named at the start: a fine-tune's progress can push them out of the tail
            "built": [line for line in console.splitlines() if "inputs/" in line and " is empty" in line],
            "log": console[-4000:]}}))
        """, timeout=timeout + 120)


@pytest.fixture(scope="module")
def unchanged_runs(server, templates, agents) -> dict[str, dict]:
    """A clone of each template enqueued unchanged, one after another on the steps agent."""
    return {stage: _run_clone(server, templates[stage], {}, timeout=900) for stage in UNCHANGED}


@pytest.mark.parametrize("stage", UNCHANGED)
def test_a_clone_enqueued_unchanged_completes_and_becomes_a_run(unchanged_runs, stage):
    from clearml_tasks.stages import STAGES
    from components.core.overrides import build_config

    run = unchanged_runs[stage]
    assert run["status"] == "completed", (run["reason"], run["log"])
    assert run["name"] == STAGES[stage].run_name(build_config([]))  # e.g. "eval · no_context · ... · demo"
    assert run["project"] == PROJECT and "template" not in run["tags"]
    assert "slm_template" not in run["properties"]
    if STAGES[stage].builds:  # it ingested the template's own dataset/* itself
        assert any("inputs/ingest is empty" in line for line in run["built"]), run["built"]


def test_an_executed_eval_reads_in_the_browser(unchanged_runs):
    run = unchanged_runs["eval"]
    assert run["results"]["num_examples"] == 42 and run["results"]["model"] == "smollm2_135m_gguf"
    # SCALARS: a few single values, quality first, no CI bounds of their own
    assert run["singles"][0] == "token_recall" and not any(v.endswith(("_ci_low", "_ci_high")) for v in run["singles"])
    assert len(run["singles"]) <= 16
    # PLOTS: the Final Metrics table, rounded, each CI beside its metric
    (table,) = [json.loads(p[2]) for p in run["plots"] if p[0] == "Final Metrics"]
    columns = table["data"][0]["cells"]["values"]  # plotly: one list per column
    assert columns[0][0] == "token_recall" and columns[2][0] and columns[3][0]  # its CI on its row
    assert not any(name.endswith(("_ci_low", "_ci_high")) for name in columns[0])
    decimals = [v for col in columns[1:] for v in col if "." in str(v)]  # ints stay whole (model_size_bytes)
    assert decimals and all(len(re.sub(r"\D", "", v.split("e")[0]).lstrip("0")) <= 4 for v in decimals)
    # ARTIFACTS: previews to read without downloading
    previews = run["artifacts"]
    assert previews["results"].startswith("token_recall: ")
    assert previews["predictions"].startswith("first 5 of 42 lines:")
    assert previews["output"].split("\n")[0].endswith("files")


def test_a_benchmark_plots_interactively_not_as_images(unchanged_runs):
    run = unchanged_runs["benchmark"]
    figures = {p[1]: json.loads(p[2]) for p in run["plots"] if p[0] == "benchmark"}
    assert {"base vs tuned", "token F1 per question"} <= set(figures)
    assert figures["token F1 per question"]["data"][0]["type"] == "histogram"
    assert "metrics_base_vs_tuned" in run["artifacts"]  # the PNG kept as a file


def test_a_clone_with_dataset_and_model_edited_runs_on_them_under_their_names(server, templates, agents, tmp_path):
    """dataset/path -> a file of 20 questions; model/path -> a checkpoint folder of another name (the embedded
    model's converted weights: nothing to download): results and the run's name carry the new labels."""
    from components.backends.models import converted_checkpoint, packaged_gguf_path
    from components.core.config import ModelConfig
    from helpers import ROOT

    model = tmp_path / "my-smollm"  # the plain checkpoint the packaged GGUF becomes, under another name
    model.symlink_to(converted_checkpoint(packaged_gguf_path(ModelConfig())))
    data = ROOT / "tests" / "fixtures" / "nq_open.jsonl"
    run = _run_clone(server, templates["eval"], {"dataset/path": str(data), "model/path": str(model),
                                                 "experiment/mode": "no_context"}, timeout=600)
    assert run["status"] == "completed", (run["reason"], run["log"])
    assert run["results"]["model"] == "my-smollm" and run["results"]["dataset"] == "nq_open"
    with open(data) as f:
        assert run["results"]["num_examples"] == sum(1 for line in f if line.strip())
    assert run["name"] == "eval · no_context · my-smollm · nq_open"
    assert run["project"] == PROJECT and "template" not in run["tags"]
    assert run["parameters"]["model/name"] == ""  # the label was never typed: it followed model/path


def test_new_run_with_another_max_samples_reaches_every_eval(server, templates, agents):
    out = slm(server, "pipeline", "start", "--queue", STEPS_QUEUE, "--controller-queue", SERVICES_QUEUE,
              "--project", TEMPLATES, f"clearml.project={PROJECT}", "experiment.name=newrun",
              "experiment.modes=[no_context,oracle_context]", "experiment.max_samples=2", "finetune.max_steps=2",
              "finetune.eval_steps=2", "finetune.save_steps=2", "benchmark.max_samples=2",
              "benchmark.max_new_tokens=4", "benchmark.bootstrap_samples=20", "experiment.bootstrap_samples=20")
    assert out.returncode == 0, out.stderr[-3000:]
    first_id = out.stdout.split("controller task ")[1].split()[0]
    code = textwrap.dedent("""
        def evals(controller_id):
            controller = wait(controller_id, 900)
            dag = controller.get_configuration_object_as_dict("Pipeline")
            counts = {}
            for name, node in dag.items():
                if name.startswith("eval_"):
                    step = Task.get_task(task_id=node["executed"])
                    counts[name] = json.load(open(step.artifacts["results"].get_local_copy()))["num_examples"]
            args = {n: p for n, p in (controller.data.hyperparams or {}).get("Args", {}).items()}
            report = Task.get_task(task_id=dag["report"]["executed"])
            html = report.get_debug_samples(title="report", series="report.html")
            return {"status": str(controller.status), "counts": counts, "report_html": [s["url"] for s in html],
                    "descriptions": {n: p.description for n, p in args.items()},
                    "max_samples": args["max_samples"].value if "max_samples" in args else None}
        """)
    first = sdk(server, code + f"\nprint(json.dumps(evals({first_id!r})))", timeout=1000)
    assert first["status"] == "completed", first
    assert first["counts"] == {"eval_no_context": 2, "eval_oracle_context": 2}
    assert first["descriptions"]["max_samples"].startswith("experiment.max_samples: questions per eval")
    assert all(first["descriptions"].values())  # NEW RUN lists them explained
    assert first["report_html"] and first["report_html"][0].endswith(".html")  # DEBUG SAMPLES renders it
    second = sdk(server, code + textwrap.dedent(f"""
        from clearml.backend_api.session.client import APIClient
        queue = APIClient().queues.get_all(name={SERVICES_QUEUE!r})[0].id
        # what the UI's NEW RUN sends (the SDK's APIClient has no `pipelines` service)
        res = Task._get_default_session().send_request("pipelines", "start_pipeline", method="post", json={{
            "task": {first_id!r}, "queue": queue, "args": [{{"name": "max_samples", "value": "3"}}]}})
        assert res.ok, res.text
        print(json.dumps(evals(res.json()["data"]["pipeline"])))
        """), timeout=1000)
    assert second["status"] == "completed", second
    assert second["max_samples"] == "3"
    assert second["counts"] == {"eval_no_context": 3, "eval_oracle_context": 3}
    assert all(second["descriptions"].values())  # put back by the controller: the next NEW RUN lists them too

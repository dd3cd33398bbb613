"""Against a live ClearML server (opt in: `pytest -m clearml_server`, with CLEARML_API_HOST and keys set):
register the templates, clone one and edit a parameter, enqueue it, start the pipeline, check a sweep's
keys against a registered template. Queues here are ones no agent serves, so nothing really runs.

    SLM_TEST_REPO=https://git.example/slm.git pytest -m clearml_server tests/test_clearml_server.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from clearml_tasks._tracking import configured_api_host, server_answers
from clearml_tasks.stages import STAGES
from components.errors import UserError
from pipelines.sweep import check_template, parse_space
from pipelines.templates import (TEMPLATE_TAG, GitSource, register_templates,
                                 template_parameters)

from helpers import ROOT
RUN = uuid.uuid4().hex[:8]
PROJECT = f"slm-tests/{RUN}"
TEMPLATE_PROJECT = f"{PROJECT}/templates"
STEP_QUEUE, CONTROLLER_QUEUE = f"slm-tests-steps-{RUN}", f"slm-tests-services-{RUN}"
SOURCE = GitSource(os.environ.get("SLM_TEST_REPO", "https://github.com/example/slm-experiments.git"),
                   os.environ.get("SLM_TEST_BRANCH", "main"), os.environ.get("SLM_TEST_COMMIT", ""))


def _server_up() -> bool:
    host = os.environ.get("CLEARML_API_HOST") or configured_api_host()
    return bool(host) and server_answers(host)


pytestmark = [pytest.mark.clearml_server,
              pytest.mark.skipif(not _server_up(), reason="no ClearML server answers (CLEARML_API_HOST)")]


def _create_queue(name: str) -> None:
    from clearml.backend_api.session.client import APIClient

    client = APIClient()
    if not client.queues.get_all(name=f"^{name}$"):
        client.queues.create(name=name)


@pytest.fixture(scope="module")
def template_ids() -> dict[str, str]:
    for queue in (STEP_QUEUE, CONTROLLER_QUEUE):
        _create_queue(queue)
    return register_templates(TEMPLATE_PROJECT, repo_url=SOURCE.repo, branch=SOURCE.branch,
                              commit=SOURCE.commit or None)


def test_templates_show_their_sections_before_any_run(template_ids):
    from clearml import Task

    assert set(template_ids) == set(STAGES)
    for stage, task_id in template_ids.items():
        task = Task.get_task(task_id=task_id)
        params = task.get_parameters()
        assert set(template_parameters(stage)) <= set(params)
        assert TEMPLATE_TAG in task.get_tags()
        assert task.data.script.entry_point == STAGES[stage].script
        assert task.data.script.repository == SOURCE.repo
        assert str(task.status) == "created"


def test_clone_edit_and_enqueue_a_template(template_ids):
    from clearml import Task

    clone = Task.clone(source_task=template_ids["ingest"], name=f"ingest edited {RUN}")
    clone.set_parameter("dataset/path", "builtin:demo")
    clone.set_parameter("dataset/test_fraction", 0.3)
    assert clone.get_parameters()["dataset/test_fraction"] == "0.3"
    Task.enqueue(clone, queue_name=STEP_QUEUE)
    clone.reload()
    assert str(clone.status) == "queued"
    Task.dequeue(clone)


def test_pipeline_start_enqueues_the_controller_with_the_dag(template_ids):
    from clearml import Task

    code = (
        "from components.overrides import build_config\n"
        "from pipelines.controller import start_pipeline\n"
        "from pipelines.templates import GitSource\n"
        f"cfg = build_config(['clearml.project={PROJECT}', 'experiment.name=p{RUN}', "
        "'experiment.max_samples=4'])\n"
        f"start_pipeline(cfg, {STEP_QUEUE!r}, {CONTROLLER_QUEUE!r}, {TEMPLATE_PROJECT!r}, "
        f"source=GitSource({SOURCE.repo!r}, {SOURCE.branch!r}, {SOURCE.commit!r}))\n")
    # `start` enqueues the controller and ends its process, so it runs in its own.
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    controller_id = out.stdout.split("controller task ")[1].split()[0]
    controller = Task.get_task(task_id=controller_id)
    assert str(controller.status) == "queued"
    assert controller.data.script.entry_point == "pipelines/controller.py"
    assert controller.get_parameters()["Args/max_samples"] == "4"
    dag = controller.get_configuration_object_as_dict("Pipeline")
    assert {"ingest", "index", "eval_retriever_context", "finetune", "benchmark"} <= set(dag)
    assert dag["eval_retriever_context"]["parameters"]["inputs/index"] == "${index.id}"
    assert dag["ingest"]["base_task_id"] == template_ids["ingest"]
    Task.dequeue(controller)


def test_sweep_keys_are_checked_against_the_registered_template(template_ids):
    from clearml import Task

    params = Task.get_task(task_id=template_ids["finetune"]).get_parameters()
    pinned = parse_space("finetune", ["finetune/r=int:4:16:4", "inputs/ingest=fixed:some-ingest-task"])
    check_template("finetune", params, pinned)
    with pytest.raises(UserError, match="inputs/ingest"):
        check_template("finetune", params, parse_space("finetune", ["finetune/r=int:4:16:4"]))

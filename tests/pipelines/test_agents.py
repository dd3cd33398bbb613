"""`slm fleet agents` (pipelines/agents.py): one docker agent per GPU on its memory class's queue, a CPU agent and
a services agent, with the command and task-container arguments the docker test ran
(tests/e2e/test_clearml_docker.py); the compose file it writes is valid Compose."""
from __future__ import annotations

import json
import shlex

import jsonschema
import yaml

from components.fleet.gpus import Gpu
from helpers import TEST_DATA
from pipelines.agents import TASK_CACHES, agent_command, agents, compose_file, gpu_class, task_docker_args
from pipelines.fleet import parse_classes

CLASSES = parse_classes("cpu:0,gpu-16gb:16,gpu-24gb:24,gpu-80gb:80")
GPUS = [Gpu("0", "NVIDIA A10G", 22.5), Gpu("1", "NVIDIA H100 80GB HBM3", 79.6), Gpu("2", "Tesla T4", 14.6)]


def test_each_card_serves_the_largest_class_it_holds():
    assert [gpu_class(g, CLASSES) for g in GPUS] == ["gpu-24gb", "gpu-80gb", "gpu-16gb"]
    assert gpu_class(Gpu("3", "GT 1030", 2.0), CLASSES) is None


def test_one_agent_per_gpu_then_a_cpu_and_a_services_agent():
    found = agents(GPUS, CLASSES, "task:cuda", "services", cpu_image="task:cpu")
    assert [(a["name"], a["queue"]) for a in found] == [
        ("agent-gpu0", "gpu-24gb"), ("agent-gpu1", "gpu-80gb"), ("agent-gpu2", "gpu-16gb"), ("agent-cpu", "cpu"),
        ("agent-services", "services")]
    assert found[1]["command"] == ["clearml-agent", "daemon", "--docker", "task:cuda", "--gpus", "1", "--queue",
                                   "gpu-80gb", "--create-queue", "--foreground"]
    assert found[3]["command"] == agent_command("cpu", None, "task:cpu")
    assert "--cpu-only" in found[4]["command"] and "--services-mode" in found[4]["command"]
    assert {a["command"][3] for a in agents(GPUS, CLASSES, "task:cuda", "services")} == {"task:cuda"}


def test_task_containers_get_no_installs_no_index_and_the_cache_volumes():
    args = task_docker_args()
    assert shlex.join(args) == ("-e CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL=1 -e PIP_NO_INDEX=1 "
                                "-e HF_HOME=/root/.cache/huggingface -e SLM_CACHE_DIR=/root/.cache/slm-experiments "
                                "-v slm_hf_cache:/root/.cache/huggingface -v slm_cache:/root/.cache/slm-experiments")
    renamed = task_docker_args({"slm_cache": "test-cache"})
    assert "test-cache:/root/.cache/slm-experiments" in renamed and "slm_hf_cache:/root/.cache/huggingface" in renamed


def test_the_written_compose_file_is_valid_and_its_agents_are_the_proven_ones():
    text = compose_file(GPUS[:2], CLASSES, "task:cuda", "services", cpu_image="task:cpu")
    data = yaml.safe_load(text)
    schema = json.loads((TEST_DATA / "compose-spec.json").read_text())
    assert not list(jsonschema.Draft7Validator(schema).iter_errors(data))
    services = data["services"]
    assert list(services) == ["agent-gpu0", "agent-gpu1", "agent-cpu", "agent-services"]
    assert services["agent-gpu1"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["1"]
    assert "deploy" not in services["agent-cpu"]
    for name, service in services.items():
        extra = shlex.split(service["environment"]["CLEARML_AGENT_EXTRA_DOCKER_ARGS"])
        assert extra[-len(task_docker_args()):] == task_docker_args(), name
        assert "--add-host" in extra and any(a.startswith("AWS_ENDPOINT_URL=") for a in extra), name
        assert service["extra_hosts"] and all(f"{v}:{p}" in service["volumes"] for v, (_, p) in TASK_CACHES.items())
    assert data["volumes"] == {v: {"name": v} for v in TASK_CACHES}

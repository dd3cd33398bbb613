"""One agent per GPU on the queue of its memory class, a CPU agent and a services-mode agent for
controllers: the commands and the compose file `slm fleet agents` writes, checked against the Compose
Specification's JSON schema."""
from __future__ import annotations

import json

import yaml

from components.fleet.gpus import Gpu
from helpers import TEST_DATA
from pipelines.agents import agent_commands, agents, compose_file, gpu_class
from pipelines.fleet import parse_classes

CLASSES = parse_classes("cpu:0,gpu-16gb:16,gpu-24gb:24,gpu-80gb:80")
HOST = [Gpu("0", "NVIDIA H100 80GB HBM3", 79.6), Gpu("1", "NVIDIA H100 80GB HBM3", 79.6),
        Gpu("2", "NVIDIA A10", 22.5)]


def test_each_card_serves_the_largest_class_it_holds():
    assert [gpu_class(g, CLASSES) for g in HOST] == ["gpu-80gb", "gpu-80gb", "gpu-24gb"]
    assert gpu_class(Gpu("3", "A100 40GB", 39.4), CLASSES) == "gpu-24gb"
    assert gpu_class(Gpu("4.1", "A100 MIG 1g.10gb", 9.75, True), CLASSES) is None, "below every class"


def test_two_80gb_and_one_24gb_give_three_gpu_agents_a_cpu_and_a_services_agent():
    made = agents(HOST, CLASSES, "slm-experiments-task:0.1.0", "services")
    assert [(a["name"], a["queue"]) for a in made] == [
        ("agent-gpu0", "gpu-80gb"), ("agent-gpu1", "gpu-80gb"), ("agent-gpu2", "gpu-24gb"), ("agent-cpu", "cpu"),
        ("agent-services", "services")]
    gpu2 = made[2]["command"]
    assert gpu2[:4] == ["clearml-agent", "daemon", "--docker", "slm-experiments-task:0.1.0"]
    assert gpu2[gpu2.index("--gpus") + 1] == "2" and "--cpu-only" not in gpu2
    assert "--cpu-only" in made[3]["command"] and "--services-mode" in made[4]["command"]
    lines = agent_commands(HOST, CLASSES, "img", "services")
    assert lines[2].startswith("# agent-gpu2: NVIDIA A10, 22.5 GB\nclearml-agent daemon --docker img --gpus 2")


def test_a_mig_device_is_its_own_agent_in_the_agents_syntax():
    made = agents([Gpu("0.1", "A100 MIG", 19.5, True)], CLASSES, "img", "services")
    assert made[0]["name"] == "agent-gpu0-1" and made[0]["command"][made[0]["command"].index("--gpus") + 1] == "0.1"


def test_the_compose_file_is_valid_and_reserves_one_gpu_per_agent():
    import jsonschema

    data = yaml.safe_load(compose_file(HOST, CLASSES, "slm-experiments-task:0.1.0", "services"))
    jsonschema.validate(data, json.loads((TEST_DATA / "compose-spec.json").read_text()))
    services = data["services"]
    assert list(services) == ["agent-gpu0", "agent-gpu1", "agent-gpu2", "agent-cpu", "agent-services"]
    devices = [services[f"agent-gpu{i}"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
               for i in range(3)]
    assert devices == [["0"], ["1"], ["2"]]
    assert "deploy" not in services["agent-cpu"]
    assert services["agent-gpu1"]["command"][-4:] == ["--queue", "gpu-80gb", "--create-queue", "--foreground"]
    assert all(s["env_file"] == ["agent.env"] for s in services.values())

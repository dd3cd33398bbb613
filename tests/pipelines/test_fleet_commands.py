"""`slm pipeline plan` and `slm fleet agents` without a server: a grid of three models x eval + finetune
is placed with the 4B fine-tune above the 135M eval and no CPU stage on a GPU queue; a step that fits no
class is warned about; the agents come from this host's GPUs (a fake NVML)."""
from __future__ import annotations

import json

import yaml

from components.fleet import gpus
from fake_nvml import FakeGpu, FakeNvml
from pipelines.cli import main

GRID = ["-m", "model=smollm2_135m,qwen_1.7b,qwen_4b", "experiment.modes=[no_context,oracle_context]"]


def test_plan_json_places_a_model_grid_by_memory(capsys):
    assert main(["pipeline", "plan", "--json", *GRID]) == 0
    plan = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    sizes = {"cpu": 0, "gpu-16gb": 16, "gpu-24gb": 24, "gpu-80gb": 80}
    tiny_eval = plan["eval_no_context__model-smollm2_135m"]
    big_finetune = plan["finetune__model-qwen_4b"]
    assert sizes[big_finetune["queue"]] > sizes[tiny_eval["queue"]]
    assert big_finetune["estimate_gb"] > plan["finetune__model-qwen_1_7b"]["estimate_gb"] > tiny_eval["estimate_gb"]
    assert {s["queue"] for s in plan.values() if s["stage"] in ("ingest", "index", "merge", "report")} == {"cpu"}
    assert all(s["queue"] != "cpu" for s in plan.values() if s["stage"] in ("eval", "finetune", "benchmark"))
    assert set(big_finetune["breakdown_gb"]) == {"weights", "lora", "lora_gradients", "optimizer_states",
                                                 "activations", "cuda_overhead"}


def test_plan_table_and_a_step_that_fits_no_class(capsys):
    assert main(["pipeline", "plan", "model=qwen_14b", "model.dtype=float32", "fleet.queues=cpu:0,gpu-24gb:24"]) == 0
    out = capsys.readouterr()
    assert "finetune" in out.out and "seed_rule_gb" in out.out.splitlines()[0]
    assert "warning: step eval_no_context needs" in out.err and "it goes to the largest, gpu-24gb" in out.err


def test_fleet_agents_writes_a_compose_file_for_this_hosts_gpus(monkeypatch, tmp_path, capsys):
    nvml = FakeNvml([FakeGpu("H100", 79.6), FakeGpu("H100", 79.6), FakeGpu("A10", 22.5)])
    real = gpus.read_gpus
    monkeypatch.setattr(gpus, "read_gpus", lambda nvml_module=None: real(nvml))
    out = tmp_path / "agents.yml"
    assert main(["fleet", "agents", "--output", str(out)]) == 0
    services = yaml.safe_load(out.read_text())["services"]
    assert {n: s["command"][s["command"].index("--queue") + 1] for n, s in services.items()} == {
        "agent-gpu0": "gpu-80gb", "agent-gpu1": "gpu-80gb", "agent-gpu2": "gpu-24gb", "agent-cpu": "cpu",
        "agent-services": "services"}
    assert "3 GPU agent(s)" in capsys.readouterr().out
    assert main(["fleet", "agents", "--print"]) == 0
    assert capsys.readouterr().out.count("clearml-agent daemon") == 5


def test_fleet_agents_without_a_gpu_is_one_line(monkeypatch, capsys):
    real = gpus.read_gpus
    monkeypatch.setattr(gpus, "read_gpus", lambda nvml=None: real(FakeNvml([], missing=True)))
    assert main(["fleet", "agents", "--print"]) == 2
    assert capsys.readouterr().err.startswith("error: no NVIDIA GPU is visible here")

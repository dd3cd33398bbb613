"""One clearml-agent per GPU, each on the queue of its memory class, plus one CPU agent: the ClearML way to
run one step per GPU (its open-source agent has no memory-aware placement; `--dynamic-gpus` is
Enterprise-only). What `slm fleet agents` writes, with the flags the docker agents were proven with."""
from __future__ import annotations

from components.fleet.gpus import Gpu
from pipelines.fleet import QueueClass, cpu_queue

# A card's reported memory is a little under its nominal size (an "80 GB" H100 reports 79.6 GiB, a
# "24 GB" A10 22.5 GiB): a card serves the largest class whose size it reaches within this share.
NOMINAL_SHARE = 0.9


def gpu_class(gpu: Gpu, classes: list[QueueClass]) -> str | None:
    """The largest GPU class this card holds (None: smaller than every class)."""
    held = [c for c in classes if c.gb > 0 and gpu.memory_gb >= c.gb * NOMINAL_SHARE]
    return held[-1].name if held else None


def _agent_args(queue: str, gpu: str | None, image: str, services_mode: bool = False) -> list[str]:
    device = ["--gpus", gpu] if gpu is not None else ["--cpu-only"]
    mode = ["--services-mode"] if services_mode else []
    return ["clearml-agent", "daemon", "--docker", image, *device, *mode, "--queue", queue, "--create-queue",
            "--foreground"]


def agents(gpus: list[Gpu], classes: list[QueueClass], image: str, services_queue: str) -> list[dict]:
    """{name, command, gpu, queue} per agent: one per GPU on its class's queue; one CPU agent for the CPU
    steps; and one in services mode for the pipeline controllers (many at once, each waiting on its steps:
    on the CPU steps' agent a controller would hold it while its own CPU steps wait, clearml #1328)."""
    out = []
    for gpu in gpus:
        queue = gpu_class(gpu, classes)
        if queue is not None:
            out.append({"name": f"agent-gpu{gpu.index.replace('.', '-')}", "gpu": gpu, "queue": queue,
                        "command": _agent_args(queue, gpu.index, image)})
    cpu = cpu_queue(classes)
    out.append({"name": "agent-cpu", "gpu": None, "queue": cpu, "command": _agent_args(cpu, None, image)})
    out.append({"name": "agent-services", "gpu": None, "queue": services_queue,
                "command": _agent_args(services_queue, None, image, services_mode=True)})
    return out


def agent_commands(gpus: list[Gpu], classes: list[QueueClass], image: str, services_queue: str) -> list[str]:
    lines = []
    for agent in agents(gpus, classes, image, services_queue):
        gpu = agent["gpu"]
        what = f"{gpu.name}, {gpu.memory_gb:.1f} GB" if gpu else f"queue {agent['queue']}"
        lines.append(f"# {agent['name']}: {what}\n{' '.join(agent['command'])}")
    return lines


def _service(agent: dict, image: str) -> dict:
    """One agent service, shaped like docker/agent.compose.yml's (its env file, mounts and caches)."""
    gpu = agent["gpu"]
    service = {
        "image": "slm-clearml-agent:3.0.3",
        "build": {"context": ".", "dockerfile_inline": AGENT_IMAGE},
        "restart": "unless-stopped",
        "env_file": ["agent.env"],
        "environment": {"CLEARML_WORKER_ID": "${CLEARML_WORKER_ID:?set CLEARML_WORKER_ID in docker/agent.env}:"
                                             + agent["name"],
                        "CLEARML_AGENT_DOCKER_HOST_MOUNT": "${CLEARML_AGENT_DIR:-/opt/clearml/agent}/"
                                                          + agent["name"] + ":/root/.clearml"},
        "command": agent["command"],
        "volumes": ["/var/run/docker.sock:/var/run/docker.sock",
                    "${CLEARML_AGENT_DIR:-/opt/clearml/agent}/" + agent["name"] + ":/root/.clearml",
                    {"type": "bind", "source": "${CLEARML_CONF:-../clearml.conf}", "target": "/root/clearml.conf",
                     "read_only": True, "bind": {"create_host_path": False}},
                    "slm_hf_cache:/root/.cache/huggingface", "slm_cache:/root/.cache/slm-experiments"]}
    if gpu is not None:
        service["deploy"] = {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "device_ids": [gpu.index.split(".")[0]], "capabilities": ["gpu"]}]}}}
    return service


AGENT_IMAGE = ("FROM python:3.11.11-slim-bookworm\n"
               "COPY --from=docker:27.3.1-cli /usr/local/bin/docker /usr/local/bin/docker\n"
               "RUN pip install --no-cache-dir clearml-agent==3.0.3\n")


def compose_file(gpus: list[Gpu], classes: list[QueueClass], image: str, services_queue: str) -> str:
    """A compose file for this host (next to docker/agent.compose.yml, reading docker/agent.env): one service
    per agent, the task containers in `image`."""
    import yaml

    services = {a["name"]: _service(a, image) for a in agents(gpus, classes, image, services_queue)}
    header = ("# Written by `slm fleet agents`: one clearml-agent per GPU on the queue of its memory class "
              "(fleet.queues),\n# plus a CPU agent for the CPU steps and one for the pipeline controllers. Fill docker/agent.env "
              "first (docker/README.md).\n#   docker compose -f docker/agents.generated.yml --env-file "
              "docker/agent.env up -d\n")
    volumes = {"slm_hf_cache": {"name": "slm_hf_cache"}, "slm_cache": {"name": "slm_cache"}}
    return header + yaml.safe_dump({"name": "slm-fleet-agents", "services": services, "volumes": volumes},
                                   sort_keys=False, width=120)

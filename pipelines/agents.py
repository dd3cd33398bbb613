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


# The task caches: named volume -> (variable the task image sets, its path there; docker/Dockerfile). Fixed
# volume names: the agent hands them to `docker run -v` on the host, where a compose project prefix would
# make another, empty volume.
TASK_CACHES = {"slm_hf_cache": ("HF_HOME", "/root/.cache/huggingface"),
               "slm_cache": ("SLM_CACHE_DIR", "/root/.cache/slm-experiments")}


def task_docker_args(volumes: dict[str, str] | None = None) -> list[str]:
    """The docker arguments every task container gets from an agent, on any host: what the docker test ran
    with and what the compose files and `slm fleet agents` pass (CLEARML_AGENT_EXTRA_DOCKER_ARGS, after the
    host's own: its network, --add-host, AWS_ENDPOINT_URL). Nothing is installed into the task image (it
    holds every package, clearml-agent #222) and pip asks no index there: the agent runs `pip install -U
    clearml-agent` in each container, which would otherwise replace the image's agent with the newest one.
    The caches persist in named volumes (`volumes` renames them: volume -> another name), so the GGUF model
    is converted and hub models downloaded once per host, not once per step."""
    volumes = volumes or {}
    args = ["-e", "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL=1", "-e", "PIP_NO_INDEX=1"]
    for variable, path in TASK_CACHES.values():
        args += ["-e", f"{variable}={path}"]
    for volume, (_, path) in TASK_CACHES.items():
        args += ["-v", f"{volumes.get(volume, volume)}:{path}"]
    return args


def agent_command(queue: str, gpu: str | None, image: str, services_mode: bool = False) -> list[str]:
    """`clearml-agent daemon` in docker mode on `queue`: on GPU `gpu` (one agent per GPU; in the container it
    is device 0), or CPU only (`--gpus all` fails where docker has no NVIDIA runtime); in the foreground, so
    its log is the container's (else it goes to a /tmp file deleted when the agent stops)."""
    device = ["--gpus", gpu] if gpu is not None else ["--cpu-only"]
    mode = ["--services-mode"] if services_mode else []
    return ["clearml-agent", "daemon", "--docker", image, *device, *mode, "--queue", queue, "--create-queue",
            "--foreground"]


def agents(gpus: list[Gpu], classes: list[QueueClass], image: str, services_queue: str,
           cpu_image: str | None = None) -> list[dict]:
    """{name, command, gpu, queue} per agent: one per GPU on its class's queue; one CPU agent for the CPU
    steps; and one in services mode for the pipeline controllers (many at once, each waiting on its steps:
    on the CPU steps' agent a controller would hold it while its own CPU steps wait, clearml #1328). The CPU
    agents default to `cpu_image` (the templates name their own image, which wins over the agent's)."""
    cpu_image = cpu_image or image
    out = []
    for gpu in gpus:
        queue = gpu_class(gpu, classes)
        if queue is not None:
            out.append({"name": f"agent-gpu{gpu.index.replace('.', '-')}", "gpu": gpu, "queue": queue,
                        "command": agent_command(queue, gpu.index, image)})
    cpu = cpu_queue(classes)
    out.append({"name": "agent-cpu", "gpu": None, "queue": cpu, "command": agent_command(cpu, None, cpu_image)})
    out.append({"name": "agent-services", "gpu": None, "queue": services_queue,
                "command": agent_command(services_queue, None, cpu_image, services_mode=True)})
    return out


def agent_commands(gpus: list[Gpu], classes: list[QueueClass], image: str, services_queue: str,
                   cpu_image: str | None = None) -> list[str]:
    lines = []
    for agent in agents(gpus, classes, image, services_queue, cpu_image):
        gpu = agent["gpu"]
        what = f"{gpu.name}, {gpu.memory_gb:.1f} GB" if gpu else f"queue {agent['queue']}"
        lines.append(f"# {agent['name']}: {what}\n{' '.join(agent['command'])}")
    lines.append("# each with CLEARML_AGENT_EXTRA_DOCKER_ARGS='<this host's network / --add-host / AWS_ENDPOINT_URL> "
                 + " ".join(task_docker_args()) + "'")
    return lines


# What a host other than the server's gives its task containers (as docker/agent.compose.yml does): the
# stack's service names mapped to the server's address, and AWS-form dataset URIs resolved against MinIO.
SERVICE_NAMES = ("apiserver", "fileserver", "webserver", "minio")
REMOTE_HOST_ARGS = [a for name in SERVICE_NAMES for a in ("--add-host", f"{name}:${{CLEARML_SERVER_IP}}")] + [
    "-e", "AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:?set AWS_ENDPOINT_URL in docker/agent.env}"]


def _service(agent: dict) -> dict:
    """One agent service, shaped like docker/agent.compose.yml's (its env file, mounts, host names and caches)."""
    gpu = agent["gpu"]
    service = {
        "image": "slm-clearml-agent:3.0.3",
        "build": {"context": ".", "dockerfile_inline": AGENT_IMAGE},
        "restart": "unless-stopped",
        "env_file": ["agent.env"],
        "extra_hosts": [f"{name}:${{CLEARML_SERVER_IP:?set CLEARML_SERVER_IP in docker/agent.env}}"
                        for name in SERVICE_NAMES],
        "environment": {"CLEARML_WORKER_ID": "${CLEARML_WORKER_ID:?set CLEARML_WORKER_ID in docker/agent.env}:"
                                             + agent["name"],
                        "CLEARML_AGENT_DOCKER_HOST_MOUNT": "${CLEARML_AGENT_DIR:-/opt/clearml/agent}/"
                                                          + agent["name"] + ":/root/.clearml",
                        "CLEARML_AGENT_EXTRA_DOCKER_ARGS": " ".join(REMOTE_HOST_ARGS + task_docker_args())},
        "command": agent["command"],
        "volumes": ["/var/run/docker.sock:/var/run/docker.sock",
                    "${CLEARML_AGENT_DIR:-/opt/clearml/agent}/" + agent["name"] + ":/root/.clearml",
                    {"type": "bind", "source": "${CLEARML_CONF:-../clearml.conf}", "target": "/root/clearml.conf",
                     "read_only": True, "bind": {"create_host_path": False}},
                    # Not used by the agent itself: mounted so that `up` creates the cache volumes its tasks get.
                    *(f"{volume}:{path}" for volume, (_, path) in TASK_CACHES.items())]}
    if gpu is not None:
        service["deploy"] = {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "device_ids": [gpu.index.split(".")[0]], "capabilities": ["gpu"]}]}}}
    return service


AGENT_IMAGE = ("FROM python:3.11.11-slim-bookworm\n"
               "COPY --from=docker:27.3.1-cli /usr/local/bin/docker /usr/local/bin/docker\n"
               "RUN pip install --no-cache-dir clearml-agent==3.0.3\n")


def compose_file(gpus: list[Gpu], classes: list[QueueClass], image: str, services_queue: str,
                 cpu_image: str | None = None) -> str:
    """A compose file for this host (next to docker/agent.compose.yml, reading docker/agent.env): one service
    per agent, the task containers in `image` (GPU agents) and `cpu_image` (the CPU and services agents)."""
    import yaml

    services = {a["name"]: _service(a) for a in agents(gpus, classes, image, services_queue, cpu_image)}
    header = ("# Written by `slm fleet agents`: one clearml-agent per GPU on the queue of its memory class "
              "(fleet.queues),\n# plus a CPU agent for the CPU steps and one for the pipeline controllers. Fill docker/agent.env "
              "first (docker/README.md).\n#   docker compose -f docker/agents.generated.yml --env-file "
              "docker/agent.env up -d\n")
    volumes = {volume: {"name": volume} for volume in TASK_CACHES}
    return header + yaml.safe_dump({"name": "slm-fleet-agents", "services": services, "volumes": volumes},
                                   sort_keys=False, width=120)

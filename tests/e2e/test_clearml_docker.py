"""The pipeline on docker agents, end to end: the CPU task image built from a plain base, `clearml-agent daemon
--docker <image> --cpu-only` serving the steps and (in services mode) the controller, artifacts in an S3
bucket (moto's S3 server on loopback standing in for MinIO), the model caches in named volumes; then the same
pipeline on a non-docker agent, whose results must be the same.

    SLM_TEST_BASE_IMAGE=local/debian-python:base \\
    CLEARML_AGENT_EXTRA_DOCKER_ARGS="--network host -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro" \\
    pytest -m clearml_docker -s

Runs when a Docker engine answers, a ClearML server answers (as for tests/e2e/test_clearml_server.py) and a
base image is named (SLM_TEST_BASE_IMAGE: any base docker/Dockerfile accepts); skips naming whichever is
missing. The image is built with docker/build_image.py --host-pip under a fixed tag, so docker's layer cache
serves the next run while the Dockerfile, the base and the pins are unchanged. CLEARML_AGENT_EXTRA_DOCKER_ARGS
holds what this host's task containers need (its network, a CA bundle); the test adds what every host's
agents pass (pipelines.agents.task_docker_args, as the compose files do) and a read-only mount of the
temporary repository the agents clone. Takes several minutes: one image build (cached after), then a
pipeline of 5 steps in containers and the same 5 on a non-docker agent.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from urllib.parse import unquote

import pytest

from components.core.outputs import cache_root
from helpers import ROOT, SLM

pytestmark = pytest.mark.clearml_docker

RUN = uuid.uuid4().hex[:8]
PROJECT = f"slm-tests/docker-{RUN}"
BASE_ENV = "SLM_TEST_BASE_IMAGE"
# Fixed tags: the next run finds the layers in docker's cache. The GPU stages' image is the CPU image under a
# second tag (this host has no GPU), so the stored containers show each stage got the image meant for it.
IMAGE, GPU_IMAGE = "slm-experiments-task:test-cpu", "slm-experiments-task:test-gpu-standin"
DOCKER_QUEUE, PLAIN_QUEUE, SERVICES_QUEUE = (f"slm-test-{q}-{RUN}" for q in ("docker", "plain", "services"))
VOLUMES = {"slm_hf_cache": f"slm-test-hf-{RUN}", "slm_cache": f"slm-test-cache-{RUN}"}  # fresh: the first load converts
BUCKET = f"slm-test-{RUN}"
S3_KEY, S3_SECRET = "slm-test-key", "slm-test-secret-never-printed"
# ingest -> index -> eval (no_context, retriever_context) -> and a 3-step finetune, whose adapter is a model
PIPELINE = ["experiment.modes=[no_context,retriever_context]", "experiment.max_samples=4",
            "experiment.bootstrap_samples=50", "finetune.max_steps=3", "finetune.eval_steps=3",
            "finetune.save_steps=3", "--skip", "benchmark", "report"]
STEPS = {"ingest", "index", "eval_no_context", "eval_retriever_context", "finetune"}
MODEL_STEPS = ("eval_no_context", "eval_retriever_context", "finetune")
CONVERTING = "once into a plain checkpoint"  # components.backends.models: a model load that missed the cache
FINISHED = ("completed", "failed", "stopped", "closed", "published")


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def _docker_answers() -> str:
    """'' when a Docker engine answers, else why not."""
    try:
        out = _docker("version", "--format", "{{.Server.Version}}", timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"no Docker engine answers ({type(e).__name__})"
    return "" if out.returncode == 0 else f"no Docker engine answers ({(out.stderr.strip().splitlines() or ['?'])[-1]})"


@pytest.fixture(scope="module")
def server(server_env, tmp_path_factory) -> dict[str, str]:
    """The environment of a client of the live server, once all three prerequisites hold; else a skip naming
    each one that is missing."""
    from clearml.utilities.pyhocon import ConfigFactory
    from clearml_tasks._tracking import server_answers

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARML_")} | server_env
    host = env.get("CLEARML_API_HOST")
    conf = env.get("CLEARML_CONFIG_FILE") or str(Path.home() / "clearml.conf")
    if not host and Path(conf).is_file():
        env["CLEARML_CONFIG_FILE"] = conf
        host = ConfigFactory.parse_file(conf).get("api.api_server", "")
    missing = [why for why in (
        _docker_answers(),
        "" if host and server_answers(host) else f"no ClearML server answers ({host or 'none configured'}: set "
                                                 "CLEARML_API_HOST and keys or CLEARML_CONFIG_FILE)",
        "" if os.environ.get(BASE_ENV) else f"no base image given ({BASE_ENV}, e.g. python:3.11-slim-bookworm)")
        if why]
    if missing:
        pytest.skip("docker agents test: " + "; ".join(missing))
    home = tmp_path_factory.mktemp("home")
    env.update(HOME=str(home), SLM_CACHE_DIR=str(cache_root()), PYTHONUNBUFFERED="1",
               CLEARML_CACHE_DIR=str(home / "clearml-cache"))
    env.pop("SLM_USER_CLEARML_CONFIG", None)
    return env


@pytest.fixture(scope="module")
def image(server) -> dict:
    """The CPU task image built from the given base (docker's cache makes a rebuild of the same thing quick)."""
    started = time.monotonic()
    out = subprocess.run([sys.executable, str(ROOT / "docker" / "build_image.py"), "--variant", "cpu", "--base",
                          os.environ[BASE_ENV], "--tag", IMAGE, "--host-pip"], cwd=ROOT, capture_output=True,
                         text=True, timeout=3600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    seconds = time.monotonic() - started
    assert _docker("tag", IMAGE, GPU_IMAGE).returncode == 0
    size = int(_docker("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    cached = out.stdout.count("Using cache")
    print(f"\nimage {IMAGE} from {os.environ[BASE_ENV]}: built in {seconds:.0f} s ({cached} cached steps), "
          f"{size / 1e9:.2f} GB")
    return {"seconds": seconds, "size": size}


@pytest.fixture(scope="module")
def s3(server):
    """moto's S3 server on 127.0.0.1 with one bucket; the keys of every request it served, in order."""
    import boto3
    from moto.server import ThreadedMotoServer

    requests: list[str] = []

    class Record(logging.Handler):  # werkzeug logs each request: '"GET /bucket/key HTTP/1.1" 200 -'
        def emit(self, record):
            found = re.search(r'"(GET|PUT|POST|HEAD) (\S+) HTTP', record.getMessage())
            if found:
                requests.append(f"{found.group(1)} {found.group(2).split('?')[0]}")

    log = logging.getLogger("werkzeug")
    handler, level = Record(level=logging.INFO), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", aws_access_key_id=S3_KEY,
                          aws_secret_access_key=S3_SECRET, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield {"endpoint": f"{host}:{port}", "uri": f"s3://{host}:{port}/{BUCKET}", "client": client,
           "requests": requests}
    moto.stop()
    log.removeHandler(handler)
    log.setLevel(level)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, dict[str, str]]:
    """This working tree as two commits of one temporary bare repository, one per pipeline: the same code,
    different commit ids, so the second pipeline is not served from the first one's step cache."""
    tmp = tmp_path_factory.mktemp("repo")
    bare = tmp / "repo.git"
    git_env = {**os.environ, "GIT_INDEX_FILE": str(tmp / "index"), "GIT_AUTHOR_NAME": "slm tests",
               "GIT_AUTHOR_EMAIL": "tests@localhost", "GIT_COMMITTER_NAME": "slm tests",
               "GIT_COMMITTER_EMAIL": "tests@localhost"}

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, env=git_env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True, timeout=60)
    git("read-tree", "HEAD")
    git("add", "-A")
    tree = git("write-tree")
    found = {}
    for name in ("docker", "plain"):
        commit = git("commit-tree", tree, "-p", "HEAD", "-m", f"slm docker test snapshot ({name} agent)")
        git("push", "-q", str(bare), f"{commit}:refs/heads/slm-test-{name}")
        found[name] = {"repo": bare.as_uri(), "branch": f"slm-test-{name}", "commit": commit, "path": str(bare)}
    assert found["docker"]["commit"] != found["plain"]["commit"]
    return found


def _agent_conf(path: Path, tmp: Path, server: dict, s3: dict) -> Path:
    user_conf = server.get("CLEARML_CONFIG_FILE")
    path.write_text((f'include file("{user_conf}")\n' if user_conf else "") + textwrap.dedent(f"""
        sdk {{
            development {{ report_use_subprocess: false, default_output_uri: "{s3['uri']}" }}
            aws {{ s3 {{ credentials: [{{ host: "{s3['endpoint']}", key: "{S3_KEY}", secret: "{S3_SECRET}",
                                         secure: false, multipart: false }}] }} }}
        }}
        agent {{
            venvs_dir: {tmp}/venvs-builds
            vcs_cache {{ enabled: true, path: {tmp}/vcs-cache }}
            venvs_cache {{ path: {tmp}/venvs-cache }}
            docker_force_pull: false
            docker_install_opencv_libs: false
            package_manager {{ type: pip }}
        }}
        """))
    return path


@pytest.fixture(scope="module")
def agents(server, image, s3, sources, tmp_path_factory):
    """Docker agents as `slm fleet agents` writes them (the steps' queue, and the controllers' in services
    mode), and one non-docker agent reusing this interpreter for the comparison run."""
    from pipelines.agents import agent_command, task_docker_args

    tmp = tmp_path_factory.mktemp("agents")
    conf = _agent_conf(tmp / "agent.conf", tmp, server, s3)
    host_args = os.environ.get("CLEARML_AGENT_EXTRA_DOCKER_ARGS", "")
    extra = " ".join([host_args, shlex.join(task_docker_args(VOLUMES)),
                      # the temporary repository, where the agent in the container clones it from
                      shlex.join(["-v", f"{sources['docker']['path']}:{sources['docker']['path']}:ro"])])
    agent_bin = str(Path(sys.executable).parent / "clearml-agent")
    specs = {
        "docker": agent_command(DOCKER_QUEUE, None, IMAGE),
        "services": agent_command(SERVICES_QUEUE, None, IMAGE, services_mode=True),
        "plain": ["clearml-agent", "daemon", "--queue", PLAIN_QUEUE, "--foreground", "--create-queue"],
    }
    procs, workers = {}, {}
    for name, command in specs.items():
        workers[name] = f"slm-test-{RUN}:{name}"
        env = {**server, "CLEARML_CONFIG_FILE": str(conf), "CLEARML_WORKER_ID": workers[name]}
        if name == "plain":
            env.update(CLEARML_AGENT_SKIP_PIP_VENV_INSTALL=sys.executable, CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL="1")
        else:
            env["CLEARML_AGENT_EXTRA_DOCKER_ARGS"] = extra
        log = open(tmp / f"{name}.log", "w")
        procs[name] = subprocess.Popen([agent_bin, *command[1:]], env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
    queues = {"docker": DOCKER_QUEUE, "services": SERVICES_QUEUE, "plain": PLAIN_QUEUE}
    deadline = time.monotonic() + 90
    while not all(queues[n] in (tmp / f"{n}.log").read_text() for n in specs):
        assert time.monotonic() < deadline, "the agents did not start"
        assert all(p.poll() is None for p in procs.values()), {n: (tmp / f"{n}.log").read_text()[-2000:] for n in specs}
        time.sleep(1)
    yield {"dir": tmp, "conf": conf, "extra": extra, "workers": workers}
    for proc in procs.values():  # each agent and the docker client of the task it may still run
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
    for worker in workers.values():  # a container outlives its `docker run` client
        for label in (f"clearml-worker-id={worker}", f"clearml-parent-worker-id={worker}"):
            ids = _docker("ps", "-aq", "--filter", f"label={label}").stdout.split()
            if ids:
                _docker("rm", "-f", *ids)
    _docker("volume", "rm", *VOLUMES.values())


def _client_env(server: dict, agents: dict) -> dict:
    """A client that reads the bucket with the agents' keys."""
    return {**server, "CLEARML_CONFIG_FILE": str(agents["conf"])}


def sdk(env: dict, code: str, timeout: float = 120):
    """Run ClearML SDK code in a fresh process; its last printed line, as JSON."""
    prelude = textwrap.dedent(f"""
        import json, time
        from clearml import Task
        def wait(task_id, timeout):
            deadline = time.time() + timeout
            while True:
                task = Task.get_task(task_id=task_id)
                if str(task.status) in {FINISHED!r} or time.time() > deadline:
                    return task
                time.sleep(3)
        """)
    out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def slm(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(SLM), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def register(env: dict, source: dict, project: str, *image_args: str) -> dict[str, str]:
    out = slm(env, "templates", "register", "--project", project, "--repo", source["repo"], "--branch",
              source["branch"], "--commit", source["commit"], *image_args)
    assert out.returncode == 0, out.stderr[-3000:]
    from clearml_tasks.stages import STAGES

    return {line.split()[0]: line.split()[1] for line in out.stdout.splitlines()
            if line.split() and line.split()[0] in STAGES}


# Threads as in this process: the same numerics in a container as on the non-docker agent.
TEMPLATE_DOCKER_ARGS = f"-e OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}"


@pytest.fixture(scope="module")
def templates(server, agents, sources) -> dict[str, dict[str, str]]:
    env = _client_env(server, agents)
    return {"docker": register(env, sources["docker"], f"{PROJECT}/templates-docker", "--image", GPU_IMAGE,
                               "--cpu-image", IMAGE, f"--docker-args={TEMPLATE_DOCKER_ARGS}"),
            "plain": register(env, sources["plain"], f"{PROJECT}/templates-plain")}


def run_pipeline(env: dict, s3: dict, kind: str, queue: str) -> dict:
    """Start the pipeline, wait for it, then read back each step: its task, container, runtime record,
    artifact and model URIs, console, results and predictions."""
    started = time.monotonic()
    out = slm(env, "pipeline", "start", "--queue", queue, "--controller-queue", SERVICES_QUEUE, "--image", IMAGE,
              "--project", f"{PROJECT}/templates-{kind}", f"clearml.project={PROJECT}",
              f"experiment.name={kind}{RUN}", *PIPELINE)
    assert out.returncode == 0, out.stderr[-3000:]
    controller_id = out.stdout.split("controller task ")[1].split()[0]
    status = sdk(env, f"""
        controller = wait({controller_id!r}, 1500)
        print(json.dumps(str(controller.status)))
        """, timeout=1600)
    seconds = time.monotonic() - started
    requests = list(s3["requests"])  # what the steps fetched, before this test reads anything back
    seen = sdk(env, f"""
        controller = Task.get_task(task_id={controller_id!r})
        dag = controller.get_configuration_object_as_dict("Pipeline")
        steps = {{}}
        for name, node in dag.items():
            t = Task.get_task(task_id=node["executed"])
            step = {{"id": t.id, "status": str(t.status), "container": dict(t.data.container or {{}}),
                    "properties": {{k: v["value"] for k, v in t.get_user_properties().items()}},
                    "artifacts": {{k: a.url for k, a in t.artifacts.items()}},
                    "models": [m.url for m in t.models["output"]],
                    "log": "\\n".join(t.get_reported_console_output(number_of_reports=1000)),
                    "seconds": (t.data.completed - t.data.started).total_seconds(),
                    "started": t.data.started.timestamp()}}
            if "results" in t.artifacts:
                step["results"] = json.load(open(t.artifacts["results"].get_local_copy()))
            if "predictions" in t.artifacts:
                step["predictions"] = [json.loads(line) for line in open(t.artifacts["predictions"].get_local_copy())]
            steps[name] = step
        print(json.dumps({{"steps": steps, "controller_container": dict(controller.data.container or {{}})}}))
        """, timeout=600)
    return {"status": status, "seconds": seconds, "requests": requests, **seen}


@pytest.fixture(scope="module")
def docker_run(server, agents, templates, s3) -> dict:
    return run_pipeline(_client_env(server, agents), s3, "docker", DOCKER_QUEUE)


@pytest.fixture(scope="module")
def plain_run(server, agents, templates, s3, docker_run) -> dict:
    return run_pipeline(_client_env(server, agents), s3, "plain", PLAIN_QUEUE)


def test_templates_carry_the_image_meant_for_their_stage(server, agents, templates):
    from clearml_tasks.stages import STAGES

    stored = sdk(_client_env(server, agents), f"""
        print(json.dumps({{stage: dict(Task.get_task(task_id=task_id).data.container or {{}})
                          for stage, task_id in {templates["docker"]!r}.items()}}))
        """)
    for stage, container in stored.items():
        assert container.get("image") == (GPU_IMAGE if STAGES[stage].gpu else IMAGE), (stage, container)
        assert container.get("arguments") == TEMPLATE_DOCKER_ARGS, (stage, container)
    print(f"\nstored container of the eval template: {stored['eval']}")


def test_every_step_ran_in_a_container_of_its_image(docker_run, agents):
    assert docker_run["status"] == "completed", {n: s["log"][-3000:] for n, s in docker_run["steps"].items()
                                                 if s["status"] != "completed"}
    steps = docker_run["steps"]
    assert set(steps) == STEPS
    for name, step in steps.items():
        image = GPU_IMAGE if name in MODEL_STEPS else IMAGE
        assert step["status"] == "completed", name
        assert step["container"]["image"] == image and step["container"]["arguments"] == TEMPLATE_DOCKER_ARGS, name
        # the step's own record of where it ran: in a docker container, started from that image by our agent
        props = step["properties"]
        assert (props["runtime_container"], props["runtime_image"]) == ("docker", image), (name, props)
        assert props["runtime_worker"] == agents["workers"]["docker"], (name, props)
    for name in ("eval_no_context", "eval_retriever_context"):
        runtime = steps[name]["results"]["meta"]["runtime"]
        assert (runtime["container"], runtime["image"]) == ("docker", GPU_IMAGE)
    assert docker_run["controller_container"].get("image") == IMAGE
    print("\nsteps in containers (seconds from start to completion on the docker agent):")
    for name, step in sorted(steps.items(), key=lambda s: s[1]["started"]):
        print(f"  {name:<24} {step['seconds']:6.1f} s  container {step['container']}")
    print(f"pipeline: {docker_run['seconds']:.0f} s from `slm pipeline start` to the controller's completion")


def test_artifacts_and_the_adapter_live_in_the_bucket_and_steps_fetch_their_inputs_there(docker_run, s3):
    steps = docker_run["steps"]
    prefix = s3["uri"] + "/"
    client = s3["client"]
    for name, step in steps.items():
        assert step["artifacts"] and "output" in step["artifacts"], name
        for artifact, url in step["artifacts"].items():
            assert url.startswith(prefix), (name, artifact, url)
            client.head_object(Bucket=BUCKET, Key=url[len(prefix):])  # raises when it is not there
    (model_url,) = steps["finetune"]["models"]
    assert model_url.startswith(prefix)
    assert client.head_object(Bucket=BUCKET, Key=model_url[len(prefix):])["ContentLength"] > 0
    # Each step downloaded its parents' outputs from the bucket (moto's log, before the test read anything).
    fetched = {unquote(r.split(" ", 1)[1]).lstrip("/") for r in docker_run["requests"] if r.startswith("GET ")}
    for parent in ("ingest", "index"):
        key = f"{BUCKET}/" + steps[parent]["artifacts"]["output"][len(prefix):]
        assert key in fetched, (parent, key, sorted(fetched)[:20])


def test_the_model_cache_survives_containers(docker_run):
    steps = docker_run["steps"]
    order = sorted(MODEL_STEPS, key=lambda n: steps[n]["started"])
    converted = [n for n in order if CONVERTING in steps[n]["log"]]
    # The first step that loads the model converts the GGUF into the cache volume; the others load it there.
    assert converted == order[:1], {n: CONVERTING in steps[n]["log"] for n in order}
    loads = {n: steps[n]["results"]["load_seconds"] for n in order if n.startswith("eval")}
    volume = _docker("run", "--rm", "--network", "none", "-v", f"{VOLUMES['slm_cache']}:/cache", "--entrypoint",
                     "ls", IMAGE, "/cache/models").stdout.split()
    assert any(name.startswith("SmolLM2-135M-Instruct") for name in volume), volume
    print(f"\nmodel steps in order {order}: converted in {converted[0]}; eval load seconds {loads}; "
          f"volume {VOLUMES['slm_cache']}/models: {volume}")


def test_results_equal_the_same_pipeline_on_a_non_docker_agent(docker_run, plain_run, agents):
    assert plain_run["status"] == "completed"
    plain_worker = agents["workers"]["plain"]
    plain, docker = plain_run["steps"], docker_run["steps"]
    assert set(plain) == set(docker) == STEPS
    # not started by a docker agent (no image; ClearML keeps an empty property value as none): the non-docker
    # one. (`runtime_container` tells whether the process is in any container: on a host that is one itself,
    # the non-docker agent's steps are too.)
    assert all(not s["properties"].get("runtime_image") and s["properties"]["runtime_worker"] == plain_worker
               for s in plain.values()), {n: s["properties"] for n, s in plain.items()}
    assert not set(s["id"] for s in plain.values()) & set(s["id"] for s in docker.values())  # none from cache
    for name in ("eval_no_context", "eval_retriever_context"):
        assert [(r["id"], r["prediction"], r["context_ids"]) for r in docker[name]["predictions"]] == \
               [(r["id"], r["prediction"], r["context_ids"]) for r in plain[name]["predictions"]], name
        for metric in ("num_examples", "token_recall", "token_f1", "exact_match"):
            assert docker[name]["results"][metric] == plain[name]["results"][metric], (name, metric)
    for metric in ("train_loss_last", "eval_loss"):
        assert docker["finetune"]["results"][metric] == pytest.approx(plain["finetune"]["results"][metric],
                                                                      rel=1e-5), metric
    print(f"\nnon-docker pipeline: {plain_run['seconds']:.0f} s; steps "
          + ", ".join(f"{n} {s['seconds']:.1f} s" for n, s in sorted(plain.items(), key=lambda s: s[1]['started'])))

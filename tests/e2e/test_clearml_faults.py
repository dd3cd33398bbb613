"""Faults on a fleet, survived with nothing lost, on a live ClearML server (issue 25): an agent killed in the
middle of an eval step, the controller's agent killed in the middle of a pipeline, the server unreachable
for 60 s in the middle of a step. Each pipeline must complete with every step's outputs present and each
eval's predictions byte for byte those of an undisturbed run of the same pipeline.

The undisturbed run (`reference`) and each disturbed one differ only in `generation.seed`: greedy decoding
never reads it, but it is part of an eval step's cache key, so each disturbed pipeline really runs its evals
(and its report) instead of being served from the reference's; ingest, index, finetune and benchmark are
served from the cache. Steps run on private queues served by non-docker agents this test starts (reusing
this interpreter) and kills by process group; `fleet.step_stale_after_s=30` and the agents' status reports
every 5 s (`CLEARML_AGENT_STATUS_REPORT_FREQ_SEC`; 30 s by default) keep each test within minutes.

Runs whenever a configured server answers, skips saying so when none does (tests/e2e/test_clearml_server.py
finds the server, snapshots this working tree for the agents and registers the templates).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from test_clearml_server import TEMPLATES, sdk, server, slm, source, templates  # noqa: F401 (fixtures)

pytestmark = pytest.mark.clearml_server

RUN = uuid.uuid4().hex[:8]
PROJECT = f"slm-tests/faults-{RUN}"
STEPS_QUEUE, SERVICES_QUEUE = f"slm-faults-gpu-{RUN}", f"slm-faults-services-{RUN}"
EVALS = ("eval_no_context", "eval_oracle_context")
BATCHES = 8  # 16 questions in batches of 2: a kill after half of them leaves 4 to resume from
PIPELINE = ["experiment.modes=[no_context,oracle_context]", "experiment.max_samples=16", "generation.batch_size=2",
            "finetune.max_steps=3", "finetune.eval_steps=3", "finetune.save_steps=3", "benchmark.max_samples=2",
            "benchmark.max_new_tokens=8", "benchmark.bootstrap_samples=50", "experiment.bootstrap_samples=50",
            "fleet.step_stale_after_s=30", "fleet.retries=2"]
# what differs between two runs of the same results.json: time, place and the process's own measurements
VOLATILE = ("duration_seconds", "load_seconds", "generation_seconds", "seconds_per_question",
            "generated_tokens_per_second", "prefill_tokens_per_second", "timing", "meta", "resumed_batches",
            "cpu_ram_used_mb", "gpu_ram_used_mb", "gpu_ram_peak_mb", "reserved_gpu_ram_mb", "energy_joules",
            "energy_wh", "memory_estimate_gb", "memory_estimate_breakdown_gb")


class Api:
    """The server's REST API straight from this process (the SDK's session is process-global and this test
    process is kept offline): fast, light polls while a fault is staged."""

    def __init__(self, env: dict):
        import requests

        self.host, self.http = env["CLEARML_API_HOST"].rstrip("/"), requests.Session()
        key, secret = env.get("CLEARML_API_ACCESS_KEY"), env.get("CLEARML_API_SECRET_KEY")
        if not key:
            from clearml.utilities.pyhocon import ConfigFactory

            creds = ConfigFactory.parse_file(env["CLEARML_CONFIG_FILE"]).get("api.credentials")
            key, secret = creds["access_key"], creds["secret_key"]
        token = self.http.post(f"{self.host}/auth.login", auth=(key, secret), timeout=30).json()["data"]["token"]
        self.http.headers["Authorization"] = f"Bearer {token}"

    def __call__(self, endpoint: str, **payload) -> dict:
        reply = self.http.post(f"{self.host}/{endpoint}", json=payload, timeout=60).json()
        assert reply["meta"]["result_code"] == 200, reply["meta"]
        return reply["data"]

    def children(self, controller_id: str) -> list[dict]:
        return self("tasks.get_all", parent=controller_id, search_hidden=True, order_by=["created"],
                    only_fields=["id", "name", "status", "last_worker", "execution.artifacts"])["tasks"]

    def status(self, task_id: str) -> str:
        return self("tasks.get_all", id=[task_id], only_fields=["status"])["tasks"][0]["status"]


def artifact_meta(task: dict, key: str) -> dict | None:
    for artifact in (task.get("execution") or {}).get("artifacts") or []:
        if artifact.get("key") == key:
            return dict(artifact.get("display_data") or []) | {"uri": artifact.get("uri")}
    return None


def wait_until(what: str, check, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


class TcpProxy:
    """A loopback TCP forwarder this test controls, standing between the clients and one server port:
    `stop()` closes its port and cuts every connection through it (the server is unreachable: connections
    are refused, requests in flight are cut), `start()` opens the same port again."""

    def __init__(self, target: str):
        host, port = target.rsplit("//", 1)[-1].split(":")
        self.target = (host, int(port.split("/")[0]))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.listener, self.conns, self.lock = None, set(), threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=30)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            self._cut(sock)

    def _cut(self, sock) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        with self.lock:
            self.conns.discard(sock)

    def stop(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept loop
        self.listener.close()
        with self.lock:
            conns = list(self.conns)
        for sock in conns:
            self._cut(sock)


class Fleet:
    """Non-docker agents started and killed by this test, each in its own process group with its own folders."""

    def __init__(self, env: dict, tmp: Path):
        self.env, self.tmp, self.procs, self.worker_ids = env, tmp, {}, {}

    def start(self, name: str, queue: str, env: dict | None = None) -> str:
        folder = self.tmp / name
        folder.mkdir(exist_ok=True)
        conf = folder / "agent.conf"
        user_conf = (env or self.env).get("CLEARML_CONFIG_FILE")
        conf.write_text((f'include file("{user_conf}")\n' if user_conf else "") + textwrap.dedent(f"""
            sdk {{ development {{ report_use_subprocess: false }} }}
            agent {{
                venvs_dir: {folder}/venvs-builds
                vcs_cache {{ enabled: true, path: {folder}/vcs-cache }}
                venvs_cache {{ path: {folder}/venvs-cache }}
            }}
            """))
        worker = f"slm-faults-{RUN}:{name}"
        agent_env = {**(env or self.env), "CLEARML_CONFIG_FILE": str(conf),
                     "CLEARML_AGENT_SKIP_PIP_VENV_INSTALL": sys.executable, "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL": "1",
                     "CLEARML_WORKER_ID": worker, "CLEARML_AGENT_STATUS_REPORT_FREQ_SEC": "5"}
        log = folder / "agent.log"
        with open(log, "a") as out:
            self.procs[name] = subprocess.Popen(
                [str(Path(sys.executable).parent / "clearml-agent"), "daemon", "--queue", queue, "--foreground",
                 "--create-queue"], env=agent_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.worker_ids[worker] = name
        wait_until(f"agent {name}", lambda: queue in log.read_text() or self.procs[name].poll() is not None, 90)
        assert self.procs[name].poll() is None, log.read_text()[-3000:]
        return worker

    def kill(self, name: str) -> None:
        """kill -9 of the agent and the task it runs (its process group)."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self, name: str) -> None:
        """An agent shut down in order (SIGTERM): it deregisters."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs.clear()


@pytest.fixture(scope="module")
def fleet(server, tmp_path_factory):
    fleet = Fleet(server, tmp_path_factory.mktemp("fleet"))
    fleet.start("steps-a", STEPS_QUEUE)
    fleet.start("services", SERVICES_QUEUE)
    yield fleet
    fleet.stop_all()


@pytest.fixture(scope="module")
def api(server) -> Api:
    return Api(server)


def start_pipeline(env: dict, name: str, seed: int, queue: str = STEPS_QUEUE,
                   controller_queue: str = SERVICES_QUEUE) -> str:
    out = slm(env, "pipeline", "start", "--queue", queue, "--controller-queue", controller_queue, "--project",
              TEMPLATES, f"clearml.project={PROJECT}", f"experiment.name={name}{RUN}", f"generation.seed={seed}",
              *PIPELINE)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split("controller task ")[1].split()[0]


def finished(env: dict, controller_id: str, timeout: float = 900) -> dict:
    """The pipeline once its controller has finished: its status and log, each step's task, status, attempts,
    console log and output files (results.json and predictions.jsonl of the evals)."""
    return sdk(env, f"""
        controller = wait({controller_id!r}, {timeout})
        dag = controller.get_configuration_object_as_dict("Pipeline")
        steps = {{}}
        for name, node in dag.items():
            task = Task.get_task(task_id=node["executed"]) if node.get("executed") else None
            if task is None:
                steps[name] = None
                continue
            out = {{"id": task.id, "status": str(task.status), "parent": task.parent,
                    "attempts": int((task.get_user_properties().get("slm_attempts") or {{}}).get("value") or 1),
                    "log": "\\n".join(task.get_reported_console_output(number_of_reports=1000)),
                    "artifacts": sorted(task.artifacts), "worker": task.data.last_worker}}
            if name.startswith("eval_"):
                out["predictions"] = open(task.artifacts["predictions"].get_local_copy(), "rb").read().decode()
                out["results"] = json.load(open(task.artifacts["results"].get_local_copy()))
                out["scalars"] = task.get_reported_scalars()
                out["single_values"] = task.get_reported_single_values()
                out["plots"] = sorted({{(p["metric"], p["variant"]) for p in task.get_reported_plots()}})
            steps[name] = out
        children = [[t.name, str(t.status)] for t in Task.get_tasks(task_filter={{"parent": {controller_id!r}}})]
        print(json.dumps({{"status": str(controller.status), "steps": steps, "children": children,
                          "log": "\\n".join(controller.get_reported_console_output(number_of_reports=1000))}}))
        """, timeout=timeout + 300)


def assert_reports_arrived(step: dict) -> None:
    """Every report of an eval step is on the server: the progress scalar of each batch, its single values
    (the stage's registry metrics: SCALARS' summary row), the Final Metrics table (every metric), its artifacts."""
    from clearml_tasks.stages import STAGES
    from components.core.formatting import numeric_metrics
    from components.core.presentation import summary_values

    assert sorted(set(step["scalars"]["progress"]["batches_done"]["x"])) == list(range(1, BATCHES + 1))
    metrics = numeric_metrics({k: v for k, v in step["results"].items() if k not in ("meta", "question_ids")})
    expected = summary_values(metrics, STAGES["eval"].metrics)
    assert "token_recall" in expected and "num_examples" in expected
    assert set(expected) <= set(step["single_values"]), set(expected) - set(step["single_values"])
    assert ["Final Metrics", "Summary"] in step["plots"]
    assert {"output", "results", "predictions", "memory_usage"} <= set(step["artifacts"])


def stable(results: dict) -> dict:
    return {k: v for k, v in results.items() if k not in VOLATILE}


def assert_same_outputs(run: dict, reference: dict) -> None:
    """Completed, every step's output present, each eval's predictions byte for byte the reference's."""
    assert run["status"] == "completed", run["log"][-3000:]
    assert set(run["steps"]) == set(reference["steps"])
    for name, step in run["steps"].items():
        assert step and step["status"] == "completed" and "output" in step["artifacts"], (name, step)
    for name in EVALS:
        assert "predictions.partial" not in run["steps"][name]["artifacts"], name  # dropped once complete
        assert run["steps"][name]["predictions"] == reference["steps"][name]["predictions"], name
        assert stable(run["steps"][name]["results"]) == stable(reference["steps"][name]["results"]), name


@pytest.fixture(scope="module")
def reference(server, templates, fleet) -> dict:
    """The undisturbed pipeline."""
    started = time.monotonic()
    run = finished(server, start_pipeline(server, "undisturbed", seed=0))
    assert run["status"] == "completed", run["log"][-3000:]
    print(f"undisturbed pipeline: {time.monotonic() - started:.0f} s")
    return run


def test_an_agent_killed_mid_eval_is_detected_and_its_step_resumed_by_another_agent(server, api, fleet,
                                                                                   reference):
    """kill -9 of the agent running an eval (and the eval's process) after half its batches: the controller
    takes the step for dead after fleet.step_stale_after_s, marks it aborted and re-enqueues it; the second
    agent on the queue runs it again, resuming from the batches the first attempt uploaded."""
    fleet.start("steps-b", STEPS_QUEUE)
    controller_id = start_pipeline(server, "agentkilled", seed=1)

    def half_done():
        for task in api.children(controller_id):
            meta = artifact_meta(task, "predictions.partial")
            if task["name"] in EVALS and task["status"] == "in_progress" and meta and \
                    int(meta.get("batches_done", 0)) >= BATCHES // 2:
                return task
        return None

    victim = wait_until("an eval half done", half_done, 600, every=0.5)
    name = fleet.worker_ids[victim["last_worker"]]
    fleet.kill(name)
    killed_at = time.monotonic()
    done_at_kill = int(artifact_meta(victim, "predictions.partial")["batches_done"])
    assert done_at_kill < BATCHES  # killed mid-run: the rest must come from the next attempt

    def taken_up_again():
        (task,) = api("tasks.get_all", id=[victim["id"]], only_fields=["status", "last_worker"])["tasks"]
        return task["status"] == "queued" or task.get("last_worker") != victim["last_worker"]

    wait_until("the step re-enqueued", taken_up_again, 180)
    detected_s = time.monotonic() - killed_at
    run = finished(server, controller_id)
    recovered_s = time.monotonic() - killed_at
    fleet.start(name, STEPS_QUEUE)  # the fleet as it was, for the next test
    assert_same_outputs(run, reference)
    step = run["steps"][victim["name"]]
    assert step["id"] == victim["id"] and step["attempts"] == 2 and step["worker"] != victim["last_worker"]
    assert "slm: no sign of life for" in step["log"] and f"agent {victim['last_worker']}" in step["log"]
    reused = int(step["log"].split("resumed: reused ")[1].split()[0])
    assert reused >= done_at_kill and step["results"]["resumed_batches"] == reused
    assert_reports_arrived(step)  # both attempts' reports, at their own iterations
    assert sum(1 for n, _ in run["children"] if n == victim["name"]) == 1  # the same task, not a second one
    print(f"agent killed: re-enqueued {detected_s:.0f} s after the kill (threshold 30 s), pipeline completed "
          f"{recovered_s:.0f} s after it; {reused} of {BATCHES} batches reused")


def test_a_controller_killed_mid_pipeline_continues_when_resumed_and_no_completed_step_runs_again(
        server, api, fleet, reference):
    """kill -9 of the services agent and the controller it runs once one eval has completed and the other
    runs; that eval completes while no controller watches. `slm pipeline resume` refuses while the dead
    agent's registration still says it runs the controller, and once the agent is back re-enqueues the same
    controller task: it keeps the completed steps (neither eval runs again, each step is one task that ran
    once), and launches the rest."""
    if "steps-b" in fleet.procs:
        fleet.stop("steps-b")  # one step agent: the evals run one after the other
    controller_id = start_pipeline(server, "controllerkilled", seed=2)

    def one_eval_done_one_running():
        states = {t["name"]: t["status"] for t in api.children(controller_id)}
        done = [n for n in EVALS if states.get(n) == "completed"]
        return states if done and any(states.get(n) == "in_progress" for n in EVALS) else None

    at_kill = wait_until("one eval completed, the other running", one_eval_done_one_running, 600, every=0.5)
    fleet.kill("services")
    killed_at = time.monotonic()
    before = {t["name"]: t["id"] for t in api.children(controller_id)}
    refused = slm(server, "pipeline", "resume", controller_id)
    assert refused.returncode == 2 and "is running on agent" in refused.stderr, refused.stderr
    status = slm(server, "pipeline", "status", controller_id)
    assert status.returncode == 0 and "in_progress" in status.stdout.splitlines()[0], status.stdout + status.stderr
    wait_until("the running eval completed without its controller",
               lambda: all(api.status(before[n]) == "completed" for n in EVALS), 600)
    fleet.start("services", SERVICES_QUEUE)
    time.sleep(12)  # the agent's first status reports replace the dead one's registration
    resumed = slm(server, "pipeline", "resume", controller_id)
    assert resumed.returncode == 0 and "re-enqueued" in resumed.stdout, resumed.stderr
    resumed_at = time.monotonic()
    run = finished(server, controller_id)
    recovered_s = time.monotonic() - killed_at
    fleet.start("steps-b", STEPS_QUEUE)
    assert_same_outputs(run, reference)
    names = [n for n, _ in run["children"]]
    assert sorted(names) == sorted(set(names))  # one task per step: nothing launched twice
    for name in EVALS:
        step = run["steps"][name]
        assert step["id"] == before[name] and step["attempts"] == 1
        assert step["log"].count("Running task id") == 1, name  # ran once: never re-enqueued
    for name in at_kill:
        if at_kill[name] == "completed":
            assert f"resume: step {name} is task {before[name]} (completed); kept, not run again" in run["log"]
    status = slm(server, "pipeline", "status", controller_id)
    rows = [line.split() for line in status.stdout.splitlines()[3:]]
    assert status.returncode == 0 and {r[0]: r[1] for r in rows} == {
        name: "completed" if run["steps"][name]["parent"] == controller_id else "cached" for name in run["steps"]}
    print(f"controller killed: resumed {resumed_at - killed_at:.0f} s after the kill (the operator's wait "
          f"included), pipeline completed {recovered_s:.0f} s after it; steps completed before: "
          f"{sorted(n for n, st in at_kill.items() if st == 'completed')}")


def test_a_step_and_its_controller_survive_the_server_unreachable_for_a_minute(server, api, fleet, reference):
    """The API and file servers unreachable for 60 s while an eval runs: every client of this pipeline (the
    `slm` that starts it, its agents, hence its controller and steps) talks to the servers through loopback
    proxies this test stops for 60 s. A restart of the server process itself would lose the in-memory
    database stand-ins of the test server (mongomock, an Elasticsearch stand-in), so the proxy stands for the
    outage. The step must finish with every scalar, single value, table and artifact it reported on the
    server, the controller must not take it for dead (it could not see it: the silence is not counted) and
    the pipeline must complete."""
    from clearml.utilities.pyhocon import ConfigFactory

    conf = ConfigFactory.parse_file(server["CLEARML_CONFIG_FILE"]) if server.get("CLEARML_CONFIG_FILE") else {}
    files_host = server.get("CLEARML_FILES_HOST") or conf.get("api.files_server")
    proxies = [TcpProxy(server["CLEARML_API_HOST"]), TcpProxy(files_host)]
    for proxy in proxies:
        proxy.start()
    proxied = {**server, "CLEARML_API_HOST": proxies[0].url, "CLEARML_FILES_HOST": proxies[1].url}
    queue, controller_queue = f"{STEPS_QUEUE}-proxied", f"{SERVICES_QUEUE}-proxied"
    try:
        fleet.start("steps-proxied", queue, env=proxied)
        fleet.start("services-proxied", controller_queue, env=proxied)
        controller_id = start_pipeline(proxied, "outage", seed=3, queue=queue, controller_queue=controller_queue)

        def eval_under_way():
            for task in api.children(controller_id):
                meta = artifact_meta(task, "predictions.partial")
                if task["name"] in EVALS and task["status"] == "in_progress" and meta and \
                        int(meta.get("batches_done", 0)) >= 2:
                    return task
            return None

        victim = wait_until("an eval under way", eval_under_way, 600, every=0.5)
        for proxy in proxies:
            proxy.stop()
        time.sleep(60)
        for proxy in proxies:
            proxy.start()
        back_at, back_wall = time.monotonic(), datetime.now(timezone.utc)
        run = finished(proxied, controller_id)  # its artifacts' addresses are the proxy's
        recovered_s = time.monotonic() - back_at
        step_done = api("tasks.get_all", id=[victim["id"]], only_fields=["completed"])["tasks"][0]["completed"]
    finally:
        for name in ("steps-proxied", "services-proxied"):
            if name in fleet.procs:
                fleet.stop(name)
        for proxy in proxies:
            proxy.stop() if proxy.listener and proxy.listener.fileno() != -1 else None
    assert_same_outputs(run, reference)
    assert "slm: no sign of life" not in run["log"]  # the controller did not count the outage as silence
    for name in EVALS:
        step = run["steps"][name]
        assert step["attempts"] == 1 and step["log"].count("Running task id") == 1, name  # never given up on
        assert_reports_arrived(step)
    step_s = (datetime.fromisoformat(step_done) - back_wall).total_seconds()
    print(f"server unreachable 60 s during {victim['name']}: the step completed {step_s:.0f} s and the pipeline "
          f"{recovered_s:.0f} s after the server came back")

"""GPU placement on a live server: a pipeline over two GPU classes and a CPU class, each served by its own
(non-docker) agent. A stub GPU step (tests/e2e/oom_stub_stage.py) placed by its estimate on the small
class runs out of CUDA memory there; the controller's retry policy moves it to the big class, where it
completes; the CPU step ran on the CPU queue. Each step task's queue is read back from the server.

The agents stand for cards of different sizes: each gets SLM_TEST_CARD_GB, which the stub compares with
what its work needs. The controller runs in the test's own process (start_locally); the policy rebuilt on
an agent is covered offline (tests/pipelines/test_controller.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from test_clearml_server import RUN, TEMPLATES, sdk, server, source  # noqa: F401,F811 (fixtures used by name)

pytestmark = pytest.mark.clearml_server

CPU, SMALL, BIG = f"slm-fleet-cpu-{RUN}", f"slm-fleet-small-{RUN}", f"slm-fleet-big-{RUN}"
CARDS = {CPU: 0, SMALL: 16, BIG: 80}
FLEET = f"fleet.queues=[{CPU}:0,{SMALL}:16,{BIG}:80]"


@pytest.fixture(scope="module")
def fleet_agents(server, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("fleet-agents")
    conf = tmp / "agent.conf"
    user_conf = server.get("CLEARML_CONFIG_FILE")
    conf.write_text((f'include file("{user_conf}")\n' if user_conf else "") + textwrap.dedent(f"""
        sdk {{ development {{ report_use_subprocess: false }} }}
        agent {{ venvs_dir: {tmp}/venvs, vcs_cache {{ enabled: true, path: {tmp}/vcs }} }}
        """))
    procs = []
    for queue, card in CARDS.items():
        env = {**server, "CLEARML_CONFIG_FILE": str(conf), "CLEARML_AGENT_SKIP_PIP_VENV_INSTALL": sys.executable,
               "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL": "1", "CLEARML_WORKER_ID": f"slm-fleet-{RUN}:{queue}",
               "SLM_TEST_CARD_GB": str(card)}
        log = open(tmp / f"{queue}.log", "w")
        procs.append(subprocess.Popen([str(Path(sys.executable).parent / "clearml-agent"), "daemon", "--queue",
                                       queue, "--foreground", "--create-queue"], env=env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + 90
    while not all(q in (tmp / f"{q}.log").read_text() for q in CARDS):
        assert time.monotonic() < deadline, "the agents did not start"
        assert all(p.poll() is None for p in procs), [(tmp / f"{q}.log").read_text()[-2000:] for q in CARDS]
        time.sleep(1)
    yield tmp
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)


def test_an_out_of_memory_step_moves_to_the_bigger_class_and_cpu_steps_stay_on_cpu(server, source,  # noqa: F811
                                                                                    fleet_agents):
    ran = sdk(server, f"""
        import tests.e2e.oom_stub_stage  # registers the stub stage in this process too
        from clearml.backend_api.session.client import APIClient
        from components.core.overrides import build_config
        from pipelines.controller import build_controller, build_plan
        from pipelines.templates import register_templates

        ids = register_templates({TEMPLATES + "-fleet"!r}, repo_url={source["repo"]!r}, branch={source["branch"]!r},
                                 commit={source["commit"]!r}, log=lambda _: None)
        cfg = build_config([{FLEET!r}, "clearml.project={TEMPLATES}-fleet-runs", "experiment.name=fleet{RUN}",
                            "fleet.retries=0"])
        plan = build_plan(cfg, controller_queue="slm-fleet-unused-{RUN}", template_project={TEMPLATES + "-fleet"!r},
                          stages=("ingest", "oom_stub"))
        planned = {{s["name"]: s["execution_queue"] for s in plan}}
        controller = build_controller(plan, cfg, "slm-fleet-unused-{RUN}", ids)
        controller.start_locally(run_pipeline_steps_locally=False)  # steps on the agents; returns when done
        queues = {{q.id: q.name for q in APIClient().queues.get_all()}}
        out = {{"planned": planned, "steps": {{}}}}
        for name, node in controller.get_pipeline_dag().items():
            task = Task.get_task(task_id=node.executed or node.job.task_id())
            log = "\\n".join(task.get_reported_console_output(number_of_reports=100))
            out["steps"][name] = [str(task.status), queues.get(task.data.execution.queue), log]
        print(json.dumps(out))
        """, timeout=900)
    assert ran["planned"] == {"ingest": CPU, "oom_stub": SMALL}, "placed by the estimate: 1 GB fits the small class"
    ingest_status, ingest_queue, _ = ran["steps"]["ingest"]
    assert (ingest_status, ingest_queue) == ("completed", CPU)
    stub_status, stub_queue, log = ran["steps"]["oom_stub"]
    assert (stub_status, stub_queue) == ("completed", BIG), log[-3000:]
    assert "CUDA out of memory" in log and f"out of memory on {SMALL}; re-enqueued on {BIG}" in log

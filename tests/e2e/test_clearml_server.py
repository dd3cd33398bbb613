"""The server path on a live ClearML server, as a user drives it: `slm templates register` (what the server
stored), a template cloned, edited and enqueued (it ran with the edited values and found its input), a
bad input (one line naming it), `slm pipeline start` (every step completed; a second start fully cached),
a failing step retried once, `slm sweep --remote` of 2 jobs (its summary), an offline session imported,
a stage failing locally (marked failed with its reason), and a dataset registered, ingested by id and
fine-tuned on, the adapter a model of the finetune task that the tuned eval loads by its id.

Runs whenever a configured server answers (CLEARML_API_HOST + keys, or CLEARML_CONFIG_FILE, or
~/clearml.conf); skips, saying so, when none does. It starts its own two non-docker `clearml-agent`
daemons on private queues (reusing this interpreter: no venv build) and stops them by process group.
Agents run a snapshot of this working tree (committed or not), pushed to a temporary bare repository.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from components.core.outputs import cache_root
from helpers import ROOT, SLM

pytestmark = pytest.mark.clearml_server

RUN = uuid.uuid4().hex[:8]
PROJECT = f"slm-tests/{RUN}"
TEMPLATES = f"{PROJECT}/templates"
STEPS_QUEUE, SERVICES_QUEUE = f"slm-test-gpu-{RUN}", f"slm-test-services-{RUN}"
TINY = ["experiment.max_samples=4", "finetune.max_steps=3", "finetune.eval_steps=3", "finetune.save_steps=3",
        "benchmark.max_samples=2", "benchmark.max_new_tokens=8", "benchmark.bootstrap_samples=50",
        "experiment.bootstrap_samples=50"]
# a grid of 2 points, each eval in 2 shards: 11 steps (ingest, index, 2 x (2 shards + merge), finetune,
# benchmark, report)
GRID = ["-m", "generation.max_new_tokens=4,8", "experiment.shards=2", "experiment.modes=[no_context]"]
FINISHED = ("completed", "failed", "stopped", "closed", "published")


@pytest.fixture(scope="module")
def server(server_env, tmp_path_factory) -> dict[str, str]:
    """The environment of a client of the live server; skips when none answers."""
    from clearml_tasks._tracking import server_answers
    from clearml.utilities.pyhocon import ConfigFactory

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARML_")} | server_env
    host = env.get("CLEARML_API_HOST")
    conf = env.get("CLEARML_CONFIG_FILE") or str(Path.home() / "clearml.conf")
    if not host and Path(conf).is_file():
        env["CLEARML_CONFIG_FILE"] = conf
        host = ConfigFactory.parse_file(conf).get("api.api_server", "")
    if not host or not server_answers(host):
        pytest.skip(f"no ClearML server answers ({host or 'none configured'}): set CLEARML_API_HOST and keys "
                    "or CLEARML_CONFIG_FILE to run the live-server tests")
    home = tmp_path_factory.mktemp("home")
    env.update(HOME=str(home), SLM_CACHE_DIR=str(cache_root()), PYTHONUNBUFFERED="1",
               CLEARML_CACHE_DIR=str(home / "clearml-cache"))
    env.pop("SLM_USER_CLEARML_CONFIG", None)
    return env


WAIT = """
def wait(task_id, timeout):
    deadline = time.time() + timeout
    while True:
        task = Task.get_task(task_id=task_id)
        if str(task.status) in {finished!r} or time.time() > deadline:
            return task
        time.sleep(3)
""".format(finished=FINISHED)


def sdk(env: dict, code: str, timeout: float = 120):
    """Run ClearML SDK code in a fresh process against the server; its last printed line, as JSON.
    `wait(task_id, timeout)` is defined for it: the task once it has finished (or the time is up)."""
    prelude = "import json, re, time\nfrom clearml import Task\n" + WAIT
    out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def slm(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(SLM), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)




@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict[str, str]:
    """This working tree as one commit on branch slm-test of a temporary bare repository (agents clone it)."""
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
    commit = git("commit-tree", git("write-tree"), "-p", "HEAD", "-m", "slm live-server test snapshot")
    git("push", "-q", str(bare), f"{commit}:refs/heads/slm-test")
    return {"repo": bare.as_uri(), "branch": "slm-test", "commit": commit}


@pytest.fixture(scope="module")
def agents(server, tmp_path_factory):
    """Two non-docker agents, one per queue (a controller and its steps on one agent deadlock)."""
    tmp = tmp_path_factory.mktemp("agents")
    conf = tmp / "agent.conf"
    user_conf = server.get("CLEARML_CONFIG_FILE")
    conf.write_text((f'include file("{user_conf}")\n' if user_conf else "") + textwrap.dedent(f"""
        sdk {{ development {{ report_use_subprocess: false }} }}
        agent {{
            venvs_dir: {tmp}/venvs-builds
            vcs_cache {{ enabled: true, path: {tmp}/vcs-cache }}
            venvs_cache {{ path: {tmp}/venvs-cache }}
        }}
        """))
    procs = []
    for queue in (STEPS_QUEUE, SERVICES_QUEUE):
        env = {**server, "CLEARML_CONFIG_FILE": str(conf), "CLEARML_AGENT_SKIP_PIP_VENV_INSTALL": sys.executable,
               "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL": "1", "CLEARML_WORKER_ID": f"slm-test-{RUN}:{queue}"}
        log = open(tmp / f"{queue}.log", "w")
        procs.append(subprocess.Popen([str(Path(sys.executable).parent / "clearml-agent"), "daemon", "--queue", queue,
                                       "--foreground", "--create-queue"], env=env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + 60
    while not all(q in (tmp / f"{q}.log").read_text() for q in (STEPS_QUEUE, SERVICES_QUEUE)):
        assert time.monotonic() < deadline, "the agents did not start"
        assert all(p.poll() is None for p in procs), [(tmp / f"{q}.log").read_text()[-2000:]
                                                      for q in (STEPS_QUEUE, SERVICES_QUEUE)]
        time.sleep(1)
    yield tmp
    for proc in procs:  # each agent and the task it may still run
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def templates(server, source) -> dict[str, str]:
    out = slm(server, "templates", "register", "--project", TEMPLATES, "--repo", source["repo"], "--branch",
              source["branch"], "--commit", source["commit"])
    assert out.returncode == 0, out.stderr[-3000:]
    from clearml_tasks.stages import STAGES

    ids = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines()
           if line.split() and line.split()[0] in STAGES}
    assert set(ids) == set(STAGES), out.stdout
    return ids


def test_register_stores_the_code_agents_run(server, source, templates):
    stored = sdk(server, f"""
        out = {{}}
        for stage, task_id in {templates!r}.items():
            t = Task.get_task(task_id=task_id)
            s = t.data.script
            out[stage] = [s.repository, s.branch, s.version_num, s.entry_point, str(t.status), t.get_tags(),
                          t.get_user_properties().get("slm_template", {{}}).get("value"),
                          t.get_parameters().get("retriever/top_k"),
                          (t.data.hyperparams.get("retriever", {{}}).get("top_k") or {{}}).description
                          if stage == "eval" else None]
        print(json.dumps(out))
        """)
    for stage, (repo, branch, commit, entry, status, tags, marker, top_k, help_text) in stored.items():
        assert (repo, branch, commit) == (source["repo"], source["branch"], source["commit"]), stage
        assert entry == f"clearml_tasks/{stage}.py" and status == "published" and "template" in tags
        assert marker == templates[stage]
    assert stored["eval"][7] == "3" and "passages retrieved per question" in stored["eval"][8]


def test_a_clone_edited_and_enqueued_runs_with_its_edits_and_finds_its_input(server, templates, agents):
    ran = sdk(server, f"""
        ingest = Task.clone(source_task={templates["ingest"]!r}, name="ingest edited")
        ingest.set_parameter("dataset/test_fraction", 0.5)
        Task.enqueue(ingest, queue_name={STEPS_QUEUE!r})
        ingest = wait(ingest.id, 240)
        manifest = json.load(open(ingest.artifacts["output"].get_local_copy() + "/manifest.json"))
        index = Task.clone(source_task={templates["index"]!r}, name="index of the edited ingest")
        index.set_parameter("inputs/ingest", ingest.id)
        Task.enqueue(index, queue_name={STEPS_QUEUE!r})
        index = wait(index.id, 240)
        results = json.load(open(index.artifacts["output"].get_local_copy() + "/index_results.json"))
        clones = [t.id for t in Task.get_tasks(project_name={TEMPLATES!r}, task_name="^ingest$")]
        print(json.dumps([str(ingest.status), manifest, str(index.status), results, clones]))
        """, timeout=600)
    ingest_status, manifest, index_status, results, _ = ran
    assert ingest_status == "completed" and index_status == "completed"
    assert manifest["num_test"] == 21 and manifest["num_questions"] == 42  # test_fraction 0.5 of 42
    assert results["num_passages"] == 66 and results["num_questions"] == 42
    # the template lookup still finds the template, never the clone that kept its name, tag and project
    found = sdk(server, f"""
        from pipelines.templates import find_template_ids
        print(json.dumps(find_template_ids({TEMPLATES!r}, ["ingest"])))
        """)
    assert found == {"ingest": templates["ingest"]}


def test_a_bad_input_fails_the_step_with_one_line_naming_it(server, templates, agents):
    status, log = sdk(server, f"""
        task = Task.clone(source_task={templates["eval"]!r}, name="eval with a bad input")
        task.set_parameter("inputs/ingest", "no-such-task")
        Task.enqueue(task, queue_name={STEPS_QUEUE!r})
        task = wait(task.id, 240)
        log = "\\n".join(task.get_reported_console_output(number_of_reports=50))
        print(json.dumps([str(task.status), log]))
        """, timeout=400)
    assert status == "failed"
    assert "inputs/ingest='no-such-task': no task with that id" in log
    assert "Traceback" not in log


def test_a_grid_pipeline_runs_every_step_and_a_second_start_is_cached(server, templates, agents):
    def start() -> dict:
        out = slm(server, "pipeline", "start", "--queue", STEPS_QUEUE, "--controller-queue", SERVICES_QUEUE,
                  "--project", TEMPLATES, f"clearml.project={PROJECT}", f"experiment.name=p{RUN}", *GRID, *TINY)
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"queue {SERVICES_QUEUE!r}: served by" in out.stdout, out.stdout
        controller_id = out.stdout.split("controller task ")[1].split()[0]
        return sdk(server, f"""
            controller = wait({controller_id!r}, 900)
            steps = Task.get_tasks(task_filter={{"parent": {controller_id!r}}})
            dag = controller.get_configuration_object_as_dict("Pipeline")
            report = Task.get_task(task_id=dag["report"]["executed"])
            board = open(report.artifacts["leaderboard.md"].get_local_copy()).read()
            shown = {{}}  # what the report task and the controller carry: table plot, page, page as artifact
            for name, task in (("report", report), ("controller", controller)):
                html = task.artifacts.get("report.html")
                shown[name] = {{"plots": [p.get("metric") for p in task.get_reported_plots()],
                               "samples": [s.get("url", "") for s in task.get_debug_samples("report", "report.html")],
                               "page": open(html.get_local_copy()).read() if html else ""}}
            print(json.dumps({{"status": str(controller.status),
                              "steps": {{t.name: [str(t.status), t.get_tags()] for t in steps}},
                              "executed": {{name: node.get("executed") for name, node in dag.items()}},
                              "leaderboard": board, "shown": shown}}))
            """, timeout=1000)

    first = start()
    assert first["status"] == "completed", first
    shards = [f"eval_no_context__shard-{i}of2__max_new_tokens-{n}" for n in (4, 8) for i in (0, 1)]
    assert set(first["executed"]) == {"ingest", "index", *shards, "eval_no_context__max_new_tokens-4",
                                      "eval_no_context__max_new_tokens-8", "finetune", "benchmark", "report"}
    assert len({first["executed"][s] for s in shards}) == 4  # each shard its own task
    assert all(status == "completed" and "template" not in tags for status, tags in first["steps"].values())
    assert "max_new_tokens=4" in first["leaderboard"] and "max_new_tokens=8" in first["leaderboard"]
    for where in ("report", "controller"):  # the report opens in the web UI from either task
        shown = first["shown"][where]
        assert "Leaderboard" in shown["plots"], (where, shown["plots"])
        assert shown["samples"] and shown["samples"][-1].endswith(".html"), (where, shown["samples"])
        assert 'id="drilldown-data"' in shown["page"], where
    page = first["shown"]["report"]["page"]
    # cells link to their eval tasks, the run's steps to theirs (steps launched before the report ran)
    for step in ("eval_no_context__max_new_tokens-4", "eval_no_context__max_new_tokens-8", "ingest", "index"):
        assert re.search(rf'href="http[^"]*/(tasks|experiments)/{first["executed"][step]}/', page), step
    second = start()
    assert second["status"] == "completed"
    assert second["executed"] == first["executed"]  # every step served from the first run


def test_a_failing_step_is_retried_once(server, templates, agents):
    out = slm(server, "pipeline", "start", "--queue", STEPS_QUEUE, "--controller-queue", SERVICES_QUEUE,
              "--project", TEMPLATES, f"clearml.project={PROJECT}", f"experiment.name=fail{RUN}",
              "dataset.path=/nope/missing.jsonl", "fleet.retries=1", *TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    controller_id = out.stdout.split("controller task ")[1].split()[0]
    status, steps, runs, retries = sdk(server, f"""
        controller = wait({controller_id!r}, 600)
        steps = [t for t in Task.get_tasks(task_filter={{"parent": {controller_id!r}}}) if t.name == "ingest"]
        step_log = "\\n".join(steps[0].get_reported_console_output(number_of_reports=500)) if steps else ""
        log = "\\n".join(controller.get_reported_console_output(number_of_reports=500))
        print(json.dumps([str(controller.status), [str(t.status) for t in steps], step_log.count("Running task id"),
                          sorted(set(re.findall(r"retry number (\\d+)", log)))]))
        """, timeout=700)
    assert status == "failed"
    # fleet.retries=1 (the default is 3): ClearML re-enqueues the same task, so it ran twice, retried once, no more
    assert steps == ["failed"] and runs == 2 and retries == ["1"]


def test_a_remote_sweep_runs_its_jobs_and_prints_the_summary(server, templates, agents):
    ingest = sdk(server, f"""
        t = Task.clone(source_task={templates["ingest"]!r}, name="ingest for the sweep")
        Task.enqueue(t, queue_name={STEPS_QUEUE!r})
        print(json.dumps(wait(t.id, 240).id))
        """, timeout=400)
    # a continuous parameter: Optuna never proposes the same trial twice (a repeated choice is skipped)
    out = slm(server, "sweep", "--stage", "finetune", "--param", "finetune/learning_rate=loguniform:1e-4:1e-3",
              "--param", f"inputs/ingest=fixed:{ingest}", "--param", "finetune/max_steps=fixed:2",
              "--param", "finetune/eval_steps=fixed:2", "--objective", "Summary/eval_loss", "--direction", "min",
              "--total-jobs", "2", "--concurrency", "1", "--queue", STEPS_QUEUE, "--project", TEMPLATES,
              "--remote", "--remote-queue", SERVICES_QUEUE)
    assert out.returncode == 0, out.stderr[-3000:]
    sweep_id = out.stdout.split("sweep ")[1].split(":")[0]
    status, log, jobs = sdk(server, f"""
        task = wait({sweep_id!r}, 900)
        log = "\\n".join(task.get_reported_console_output(number_of_reports=200))
        jobs = [[str(t.status), t.get_tags()] for t in Task.get_tasks(task_filter={{"parent": {sweep_id!r}}})]
        print(json.dumps([str(task.status), log, jobs]))
        """, timeout=1000)
    assert status == "completed", log[-3000:]
    assert "rank" in log and "eval_loss" in log and "finetune/learning_rate" in log
    assert len(jobs) == 2 and all(s == "completed" and "template" not in tags for s, tags in jobs)


def test_an_offline_session_imports(server, tmp_path):
    offline_env = {**server, "CLEARML_CACHE_DIR": str(tmp_path / "cache")}
    out = slm(offline_env, "ingest", "--offline", f"experiment.output_dir={tmp_path / 'out'}",
              f"clearml.project={PROJECT}")
    assert out.returncode == 0, out.stderr[-3000:]
    (zipped,) = (tmp_path / "cache" / "offline").glob("*.zip")
    imported = sdk(server, f"""
        task = Task.get_task(task_id=Task.import_offline_session({str(zipped)!r}))
        print(json.dumps([task.name, sorted(task.artifacts), task.get_parameters().get("dataset/path")]))
        """)
    assert imported[0] == "ingest" and "output" in imported[1] and imported[2] == "builtin:demo"


def test_a_stage_failing_locally_is_marked_failed_with_its_reason(server, tmp_path):
    out = slm(server, "ingest", "dataset.path=/nope/missing.jsonl", f"clearml.project={PROJECT}/local",
              f"experiment.output_dir={tmp_path}")
    assert out.returncode == 2 and "missing.jsonl" in out.stderr
    status, reason, log = sdk(server, f"""
        (task,) = Task.get_tasks(project_name={PROJECT + "/local"!r}, task_name="^ingest$")
        log = "\\n".join(task.get_reported_console_output(number_of_reports=20))
        print(json.dumps([str(task.status), task.data.status_reason or "", log]))
        """)
    assert status == "failed" and "missing.jsonl" in reason and "missing.jsonl" in log


def test_data_and_adapters_live_in_clearml_datasets_and_models(server, templates, agents):
    """slm data register -> a pipeline that ingests it by id, fine-tunes (the adapter a model of the finetune
    task) and evaluates the tuned model, which loads the adapter by its model id."""
    out = slm(server, "data", "register", str(ROOT / "components" / "data" / "demo_data" / "demo.jsonl"), "--name",
              f"demo-{RUN}", "--project", f"{PROJECT}/datasets", "--version", "1.0")
    assert out.returncode == 0, out.stderr[-3000:]
    dataset_id = re.search(r"^dataset ([0-9a-f]{32}):", out.stdout, re.MULTILINE).group(1)
    out = slm(server, "pipeline", "start", "--queue", STEPS_QUEUE, "--controller-queue", SERVICES_QUEUE,
              "--project", TEMPLATES, f"clearml.project={PROJECT}", f"experiment.name=tuned{RUN}",
              f"dataset.path=clearml://{dataset_id}", "experiment.eval_tuned=true", "experiment.modes=[no_context]",
              *TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    controller_id = out.stdout.split("controller task ")[1].split()[0]
    seen = sdk(server, f"""
        from clearml import Model
        controller = wait({controller_id!r}, 900)
        dag = controller.get_configuration_object_as_dict("Pipeline")
        ingest = Task.get_task(task_id=dag["ingest"]["executed"])
        manifest = json.load(open(ingest.artifacts["output"].get_local_copy() + "/manifest.json"))
        finetune = Task.get_task(task_id=dag["finetune"]["executed"])
        model = finetune.models["output"][-1]
        tuned = Task.get_task(task_id=dag["eval_tuned_no_context"]["executed"])
        folder = tuned.artifacts["output"].get_local_copy()
        print(json.dumps({{"status": str(controller.status), "manifest": manifest,
                          "properties": {{k: v["value"] for k, v in ingest.get_user_properties().items()}},
                          "model": [model.id, model.tags, model.config_dict.get("base_model")],
                          "tuned_param": tuned.get_parameters().get("model/adapter"),
                          "tuned_config": json.load(open(folder + "/config.json"))["model"]["adapter"],
                          "tuned_results": json.load(open(folder + "/results.json"))["adapter"]}}))
        """, timeout=1000)
    assert seen["status"] == "completed", seen
    assert seen["manifest"]["dataset_id"] == dataset_id and seen["properties"]["dataset_id"] == dataset_id
    assert seen["manifest"]["source"] == f"clearml://{dataset_id}" and seen["manifest"]["ingested_dataset_id"]
    model_id, tags, base = seen["model"]
    assert "finetune" in tags and base == "smollm2_135m_gguf"
    assert seen["tuned_param"] == seen["tuned_config"] == model_id  # ClearML resolved the model reference
    assert Path(seen["tuned_results"]).is_absolute()  # ... and the eval ran on the adapter downloaded by that id

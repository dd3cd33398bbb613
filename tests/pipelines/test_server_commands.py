"""`slm templates register`, `slm pipeline start`, `slm sweep`: what runs without a ClearML server (the
parsers, --dry-run, the sweep request checked up front) and the one-line refusal where a server is needed."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

import pytest

from components.core.errors import UserError, run_guarded
from pipelines import server_commands
from helpers import ROOT

STEPS = ["ingest", "index", "eval_no_context", "eval_oracle_context", "eval_retriever_context", "finetune",
         "benchmark", "report"]


def slm(argv: list[str]) -> int:
    """`slm ...` with the server commands registered, as pipelines.cli.main runs a command."""
    parser = argparse.ArgumentParser(prog="slm")
    server_commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_guarded(lambda: args.func(args))


def test_dry_run_prints_the_plan_as_json(capsys):
    from clearml_tasks.stages import STAGES

    assert slm(["pipeline", "start", "--dry-run", "--json", "experiment.max_samples=5"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in plan] == STEPS
    assert {s["name"]: s["queue"] for s in plan} == {
        "ingest": "cpu", "index": "cpu", "eval_no_context": "gpu-16gb", "eval_oracle_context": "gpu-16gb",
        "eval_retriever_context": "gpu-16gb", "finetune": "gpu-16gb", "benchmark": "gpu-16gb", "report": "cpu"}
    assert all((s["estimate_gb"] is None) == (not STAGES[s["stage"]].gpu) for s in plan)


def test_skipped_stages_leave_the_pipeline_as_slm_run_skip_does(capsys):
    assert slm(["pipeline", "start", "experiment.modes=[no_context,retriever_context]", "--dry-run", "--json",
                "--skip", "benchmark", "report"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in plan] == ["ingest", "index", "eval_no_context", "eval_retriever_context", "finetune"]
    assert slm(["pipeline", "start", "--dry-run", "--json", "--skip", "eval"]) == 0  # report reads the evals
    assert [s["name"] for s in json.loads(capsys.readouterr().out)] == ["ingest", "index", "finetune", "benchmark"]


def test_dry_run_without_json_is_the_plan_table(capsys):
    assert slm(["pipeline", "start", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["step", "stage", "queue", "estimate_gb", "seed_rule_gb"]
    assert [line.split()[0] for line in lines[2:]] == STEPS


def test_dry_run_with_one_queue_for_both_fails_with_exit_2(capsys):
    assert slm(["pipeline", "start", "--dry-run", "--queue", "services"]) == 2
    assert "#1328" in capsys.readouterr().err


def test_dry_run_touches_no_server_and_never_imports_clearml():
    code = textwrap.dedent("""
        import argparse, contextlib, io, sys
        from pipelines import server_commands
        parser = argparse.ArgumentParser()
        server_commands.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["pipeline", "start", "--dry-run"])
        with contextlib.redirect_stdout(io.StringIO()):
            assert args.func(args) == 0
        print("clearml" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def sweep_cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="slm")
    server_commands.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["sweep", *argv])


def test_cli_merges_preset_and_params_and_needs_a_direction():
    request = server_commands.resolve_sweep(sweep_cli(["--preset", "lora", "--param",
                                                       "finetune/r=choice:8,16"]))
    assert request.stage == "finetune" and request.direction == "min"
    assert request.params[0] == "finetune/r=choice:8,16" and len(request.params) == 3
    with pytest.raises(UserError, match="--direction"):
        server_commands.resolve_sweep(sweep_cli(["--param", "finetune/r=int:4:8",
                                                 "--objective", "Summary/eval_loss"]))


def test_cli_dry_run_prints_the_space(capsys):
    args = sweep_cli(["--preset", "retriever", "--dry-run"])
    assert args.func(args) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["stage"] == "eval" and document["objective_series"] == "token_recall"
    assert document["space"][0] == {"key": "retriever/top_k", "kind": "int", "values": [1, 10, 1]}


@pytest.fixture
def no_server(monkeypatch, tmp_path):
    """No clearml.conf and no CLEARML_API_HOST: tracking resolves offline."""
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(tmp_path / "none.conf"))
    monkeypatch.setenv("SLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CLEARML_API_HOST", raising=False)


@pytest.mark.parametrize("argv, what", [
    (["templates", "register"], "error: registering templates needs a ClearML server"),
    (["pipeline", "start"], "error: `pipeline start` needs a ClearML server"),
    (["sweep", "--preset", "lora"], "error: a sweep needs a ClearML server"),
])
def test_without_a_server_each_command_is_one_line_and_exit_2(no_server, capsys, argv, what):
    assert slm(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(what) and err.count("\n") == 1


def test_multirun_dry_run_has_one_step_per_grid_value(capsys):
    assert slm(["pipeline", "start", "--dry-run", "--json", "-m", "retriever.top_k=1,3"]) == 0
    names = [s["name"] for s in json.loads(capsys.readouterr().out)]
    assert "eval_retriever_context__top_k-1" in names and "eval_retriever_context__top_k-3" in names
    assert names.count("ingest") == 1  # what the axis does not change runs once
    capsys.readouterr()
    assert slm(["pipeline", "start", "--dry-run", "retriever.top_k=1,3"]) == 2  # without -m: not a grid, a bad value
    assert "retriever.top_k" in capsys.readouterr().err


def test_parser_defaults():
    from pipelines.controller import DEFAULT_CONTROLLER_QUEUE
    from pipelines.templates import DEFAULT_TASK_IMAGE, DEFAULT_TEMPLATE_PROJECT

    parser = argparse.ArgumentParser(prog="slm")
    server_commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["templates", "register"])
    assert (args.project, args.image, args.cpu_image, args.docker_args, args.repo, args.branch, args.commit) == (
        DEFAULT_TEMPLATE_PROJECT, DEFAULT_TASK_IMAGE, None, "", None, None, None)
    args = parser.parse_args(["templates", "register", "--image", "task:cuda", "--cpu-image", "task:cpu",
                              "--docker-args=--ipc=host"])  # with `=`: a value that starts with a dash
    assert (args.image, args.cpu_image, args.docker_args) == ("task:cuda", "task:cpu", "--ipc=host")
    args = parser.parse_args(["pipeline", "start", "model=qwen_0.6b", "--queue", "gpu2"])
    assert (args.overrides, args.queue, args.controller_queue, args.multirun, args.dry_run) == (
        ["model=qwen_0.6b"], "gpu2", DEFAULT_CONTROLLER_QUEUE, False, False)
    assert parser.parse_args(["pipeline", "start"]).queue is None, "each step on its fleet class"
    args = parser.parse_args(["sweep", "--preset", "lora"])
    assert (args.queue, args.remote_queue, args.concurrency, args.total_jobs, args.top, args.remote) == (
        None, DEFAULT_CONTROLLER_QUEUE, 2, 10, 5, False)
    assert server_commands.default_queue("finetune") == "gpu-16gb", "a sweep job goes where its stage fits"
    assert server_commands.DEFAULT_SWEEP_PROJECT == "slm-experiments/sweeps"


@pytest.mark.parametrize("argv", [["sweep", "--direction", "up"], ["sweep", "--preset", "nope"], ["templates"],
                                  ["pipeline", "stop"]])
def test_bad_arguments_are_usage_errors(argv, capsys):
    parser = argparse.ArgumentParser(prog="slm")
    server_commands.register(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(argv)
    assert exit_.value.code == 2 and "usage:" in capsys.readouterr().err


def test_a_sweep_needs_parameters_and_an_objective():
    with pytest.raises(UserError, match=r"^give --preset, or --param KEY=SPEC and --objective"):
        server_commands.resolve_sweep(sweep_cli([]))
    with pytest.raises(UserError, match=r"^give --preset"):
        server_commands.resolve_sweep(sweep_cli(["--param", "finetune/r=int:4:8", "--direction", "min"]))


def test_a_sweep_request_without_a_preset_infers_the_stage_and_checks_the_objective():
    request = server_commands.resolve_sweep(sweep_cli(["--param", "finetune/r=int:4:8", "--objective",
                                                       "Summary/eval_loss", "--direction", "min"]))
    assert request == server_commands.SweepRequest("finetune", ["finetune/r=int:4:8"], "Summary", "eval_loss", "min")
    with pytest.raises(UserError, match="eval_los"):
        server_commands.resolve_sweep(sweep_cli(["--param", "finetune/r=int:4:8", "--objective",
                                                 "Summary/eval_los", "--direction", "min"]))
    preset = server_commands.resolve_sweep(sweep_cli(["--preset", "lora", "--objective", "Summary/tokens_per_second",
                                                      "--direction", "max"]))
    assert (preset.objective_series, preset.direction) == ("tokens_per_second", "max")  # the preset's, replaced

"""The command line: one-line errors with exit 2, flags anywhere among the overrides, `slm config`,
`--config` repeating a saved run, and `slm --help` without torch or clearml."""
from __future__ import annotations

import json
import subprocess
import sys

from components.core.config import AppConfig
from components.core.overrides import build_config
from helpers import ROOT, SLM
from pipelines import cli


def test_cli_unknown_key_is_one_line_exit_2():
    proc = subprocess.run([str(SLM), "eval", "experiment.max_sampels=3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "experiment.max_samples" in lines[0]
    assert "experiment.max_sampels" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_bad_value_is_one_line_exit_2():
    proc = subprocess.run([str(SLM), "eval", "generation.batch_size=abc"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "generation.batch_size" in proc.stderr and "Traceback" not in proc.stderr


def test_parser_and_help_do_not_import_torch():
    code = "import sys; from pipelines.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    code = ("import sys\nfrom pipelines.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0\nprint('torch' in sys.modules, 'clearml' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "slm" in proc.stdout and "eval" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "False False"


def test_flags_may_come_between_overrides():
    parser = cli.build_parser()
    args = cli.parse_args(parser, ["eval", "experiment.max_samples=3", "--no-clearml", "retriever.top_k=2",
                                   "--no-cache"])
    assert args.overrides == ["experiment.max_samples=3", "retriever.top_k=2"]
    assert args.no_clearml and args.no_cache
    args = cli.parse_args(parser, ["run", "--offline", "model=qwen_0.6b", "--skip", "finetune", "benchmark"])
    assert args.overrides == ["model=qwen_0.6b"] and args.skip == ["finetune", "benchmark"] and args.offline


def test_unknown_flag_is_still_an_error(capsys):
    proc = subprocess.run([str(SLM), "eval", "a.b=c", "--bogus"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr


def test_config_command_shows_values_and_help(capsys):
    assert cli.main(["config", "retriever", "retriever.top_k=7"]) == 0
    out = capsys.readouterr().out
    assert "retriever.top_k" in out and "= 7" in out and "passages retrieved per question" in out
    assert "model.path" not in out
    assert cli.main(["config", "retriever.top_k=9"]) == 0  # an override alone: every section
    out = capsys.readouterr().out
    assert "= 9" in out and "model.path" in out
    assert cli.main(["config", "retreiver"]) == 2
    assert "did you mean retriever" in capsys.readouterr().err


def test_saved_config_repeats_the_run_and_overrides_go_on_top(tmp_path):
    saved = build_config(["model=qwen_0.6b", "experiment.max_samples=7", "retriever.hit_ks=[2,4]"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved.to_dict()))
    args = cli.parse_args(cli.build_parser(), ["run", "--config", str(path)])
    assert cli.load_config(args) == saved
    args = cli.parse_args(cli.build_parser(), ["eval", "--config", str(path), "experiment.max_samples=2"])
    again = cli.load_config(args)
    assert again.experiment.max_samples == 2 and again.model == saved.model
    assert cli.load_config(cli.parse_args(cli.build_parser(), ["eval"])) == AppConfig()


def _leaf_parsers(parser, path=()):
    """(command path, parser) of every `slm` subcommand that runs something."""
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaf_parsers(sub, (*path, name))


def test_every_subcommand_says_what_it_does_and_what_it_needs():
    from pipelines.cli import build_parser

    leaves = dict(_leaf_parsers(build_parser()))
    assert {("run",), ("eval",), ("templates", "register"), ("pipeline", "start"), ("sweep",), ("data", "ls"),
            ("report",), ("config",), ("fleet", "agents"), ("pipeline", "plan")} <= set(leaves)
    for path, parser in leaves.items():
        text = parser.format_help()
        assert parser.description and "Needs" in parser.description, f"slm {' '.join(path)}: {text[:300]}"
    register = leaves[("templates", "register")].format_help()
    assert "Needs a ClearML server" in register and "published" in register and "--runs-project" in register

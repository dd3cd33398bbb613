"""`slm`: the command line. Heavy imports (torch, clearml) happen inside the commands, so `slm --help`
stays instant.
  slm run    [overrides]   the local DAG: ingest -> index -> eval per mode (+ finetune -> benchmark)
  slm eval   [overrides]   ingest (+ index) + eval of one mode; outputs in experiment.output_dir
  slm ingest|index|finetune|benchmark [overrides]   one stage (and what it needs upstream)
  slm config [section]     every setting with its current value and what it does
Overrides: `group=preset` (model=qwen_0.6b, dataset=local_nq, experiment_mode=retriever_context) and
`section.field=value` (experiment.max_samples=100, experiment.output_dir=DIR, dataset.path=FILE_OR_S3).
`--config outputs/x/config.json` starts from a saved run's resolved config (overrides go on top).
Flags and overrides may come in any order.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from clearml_tasks.stages import STAGES, skippable, stage_names
from components.core.errors import run_guarded

SUMMARY_COLUMNS = ["step", "status", "seconds", "num_examples", "token_recall", "legacy_token_recall", "token_f1",
                   "exact_match", "gold_hit@5", "train_loss_first", "train_loss_last", "token_f1_base",
                   "token_f1_tuned", "cpu_ram_used_mb", "memory_estimate_gb"]


def _tracking(args) -> str:
    from clearml_tasks._tracking import resolve_tracking

    return resolve_tracking("none" if args.no_clearml else "offline" if args.offline else "auto")


def saved_config(args):
    """The config saved at `--config`, or None for the defaults."""
    from components.core.config import AppConfig
    from components.core.fileio import read_json

    return AppConfig.from_dict(read_json(args.config)) if getattr(args, "config", None) else None


def load_config(args):
    """The saved config of `--config` (or the defaults), with the command line's overrides on top."""
    from components.core.overrides import build_config

    return build_config(args.overrides, base=saved_config(args))


def _summary_rows(outcomes) -> list[dict]:
    return [{"step": o.name, "status": o.status, "seconds": round(o.seconds, 1), **o.results} for o in outcomes]


def _print_and_save_summary(cfg, outcomes) -> None:
    from pathlib import Path

    from components.core.fileio import write_json, write_text
    from components.core.formatting import format_summary

    rows = _summary_rows(outcomes)
    table = format_summary(rows, SUMMARY_COLUMNS)
    root = Path(cfg.experiment.resolved_output_dir())
    write_json(root / "summary.json", rows)
    write_text(root / "summary.txt", table + "\n")
    print("\n" + table)
    for outcome in outcomes:  # a stage's closing file (the leaderboard) ends the run's output
        closing = outcome.results.get(STAGES[outcome.stage].closing, "") if outcome.stage in STAGES else ""
        if closing and Path(closing).is_file():
            print("\n" + Path(closing).read_text())
    print(f"\noutputs: {root}")


def _run_steps(args, steps_for: Callable) -> int:
    from pipelines.local import run_local

    cfg = load_config(args)
    outcomes = run_local(steps_for(cfg), cfg, _tracking(args), use_cache=not args.no_cache)
    _print_and_save_summary(cfg, outcomes)
    return 0


def cmd_run(args) -> int:
    from pipelines.dag import build_dag
    from pipelines.grid import parse_grid
    from pipelines.local import run_local

    grid = parse_grid(args.overrides, args.multirun, saved_config(args))
    cfg = grid.config()  # the run's own settings (name, output folder); the axes are per step
    stages = tuple(s for s in stage_names() if s not in (args.skip or []))
    steps = build_dag(cfg, stages, grid=grid)
    if grid.axes:
        print(f"grid: {' x '.join(f'{a.key} ({len(a.values)})' for a in grid.axes)} = {len(grid.points())} "
              f"points, {len(steps)} steps")
    outcomes = run_local(steps, cfg, _tracking(args), use_cache=not args.no_cache)
    _print_and_save_summary(cfg, outcomes)
    return 0


def cmd_stage(stage: str):
    def run(args) -> int:
        from pipelines.dag import stage_dag

        return _run_steps(args, lambda cfg: stage_dag(stage, cfg))

    return run


def cmd_config(args) -> int:
    from components.core.config_help import describe_config

    if args.section and "=" in args.section:  # `slm config a.b=c`: an override, not a section
        args.overrides, args.section = [args.section, *args.overrides], None
    print(describe_config(args.section, load_config(args)))
    return 0


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", help="group=preset or section.field=value")
    p.add_argument("--config", metavar="CONFIG_JSON",
                   help="start from a saved resolved config (e.g. outputs/x/config.json)")


def _add_common(p: argparse.ArgumentParser) -> None:
    _add_overrides(p)
    p.add_argument("--no-clearml", action="store_true", help="no tracking at all")
    p.add_argument("--offline", action="store_true", help="ClearML offline session even if a server is set")
    p.add_argument("--no-cache", action="store_true", help="run every step even if unchanged")


RUN_DESCRIPTION = ("Run the whole DAG here, in this process: ingest -> index -> one eval per experiment.modes -> "
                   "finetune -> benchmark -> report (the leaderboard). Needs nothing: no server, no GPU (the defaults "
                   "are the shipped demo data and the packaged SmolLM2-135M GGUF). Unchanged steps are served from "
                   "their folders under experiment.output_dir (default outputs/{experiment.name}); with a ClearML "
                   "server configured each step is also a task there, else an offline session.")


def stage_description(stage: str) -> str:
    spec = STAGES[stage]
    upstream = [p for p in spec.inputs if p in STAGES]
    needs = (f"its {', '.join(upstream)} step{'s' if len(upstream) > 1 else ''} run first (or served from the "
             "cache)" if upstream else "only its config")
    return (f"The {stage} stage here, in this process: {spec.help}. Needs nothing beyond the config: {needs}. "
            f"Produces: {spec.produces or 'its results'}; files under experiment.output_dir.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the local DAG (ingest, index, eval per mode, finetune, benchmark, report)",
                       description=RUN_DESCRIPTION)
    _add_common(p)
    p.add_argument("-m", "--multirun", action="store_true",
                   help="a grid: comma-separated values of a preset group or scalar field are axes "
                        "(model=a,b retriever.top_k=1,3)")
    p.add_argument("--skip", nargs="*", choices=skippable(),
                   help="stages to leave out")
    p.set_defaults(func=cmd_run)
    for stage in (s for s in stage_names() if STAGES[s].cli):
        p = sub.add_parser(stage, help=f"{STAGES[stage].help} (and what it needs upstream)",
                           description=stage_description(stage))
        _add_common(p)
        p.set_defaults(func=cmd_stage(stage))
    p = sub.add_parser("config", help="every setting: its value under the given overrides and what it does",
                       description="Print every setting (or one section's) with its value under the overrides "
                                   "given, its type, what it does and its choices: the same text the ClearML "
                                   "templates show as parameter descriptions. Needs nothing.")
    p.add_argument("section", nargs="?", help="one section (model, dataset, retriever, ...)")
    _add_overrides(p)
    p.set_defaults(func=cmd_config)
    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub) -> None:
    """Command groups that live in their own modules."""
    from pipelines import data_commands, fleet_commands, report_command, server_commands

    data_commands.register(sub)
    report_command.register(sub)
    server_commands.register(sub)
    fleet_commands.register(sub)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Like parse_args, but `key=value` overrides may also follow flags (`slm eval a=b --no-clearml c=d`):
    argparse stops the positional list at the first flag and leaves the rest over."""
    args, extra = parser.parse_known_args(argv)
    stray = [t for t in extra if t.startswith("-") or "=" not in t or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    from clearml_tasks._tracking import OFFLINE_SESSION_CHATTER
    from components.core.console import configure_console

    # transformers' per-load progress bars drown the stage output; our own loops keep theirs.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    configure_console(drop=OFFLINE_SESSION_CHATTER)  # bars as lines in a log; the runner names each session
    parser = build_parser()
    args = parse_args(parser, argv)
    return run_guarded(lambda: args.func(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())

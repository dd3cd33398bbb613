"""`slm`: the command line. Heavy imports (torch, clearml) happen inside the commands, so `slm --help`
stays instant.

  slm run    [overrides]   the local DAG: ingest -> index -> eval per mode (+ finetune -> benchmark)
  slm eval   [overrides]   ingest (+ index) + eval of one mode; outputs in experiment.output_dir
  slm ingest|index|finetune|benchmark [overrides]   one stage (and what it needs upstream)
Overrides: `group=preset` (model=qwen_0.6b, dataset=local_nq, experiment_mode=retriever_context) and
`section.field=value` (experiment.max_samples=100, experiment.output_dir=DIR, dataset.path=FILE_OR_S3).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable

from components.errors import UserError

SUMMARY_COLUMNS = ["step", "status", "seconds", "num_examples", "token_recall", "legacy_token_recall", "token_f1",
                   "exact_match", "gold_hit@5", "train_loss_first", "train_loss_last", "token_f1_base",
                   "token_f1_tuned", "cpu_ram_used_mb"]


def run_guarded(fn: Callable[[], int], debug: bool = False) -> int:
    """Run a command: a UserError (or a failed step) is one line on stderr and exit status 2."""
    debug = debug or os.environ.get("SLM_DEBUG") == "1"
    try:
        return fn()
    except UserError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e} (run with --debug for the traceback)", file=sys.stderr)
        return 1


def _tracking(args) -> str:
    from clearml_tasks._mode import resolve_mode

    return resolve_mode("none" if args.no_clearml else "offline" if args.offline else "auto")


def _summary_rows(outcomes) -> list[dict]:
    return [{"step": o.name, "status": o.status, "seconds": round(o.seconds, 1), **o.results} for o in outcomes]


def _print_and_save_summary(cfg, outcomes) -> None:
    from pathlib import Path

    from components.fileio import write_json, write_text
    from components.report import format_table

    rows = _summary_rows(outcomes)
    table = format_table(rows, [c for c in SUMMARY_COLUMNS if any(c in r for r in rows)])
    root = Path(cfg.experiment.resolved_output_dir())
    write_json(root / "summary.json", rows)
    write_text(root / "summary.txt", table + "\n")
    print("\n" + table)
    print(f"\noutputs: {root}")


def _run_steps(args, steps_for: Callable) -> int:
    from components.overrides import build_config
    from pipelines.local import run_local

    cfg = build_config(args.overrides)
    outcomes = run_local(steps_for(cfg), cfg, _tracking(args), use_cache=not args.no_cache)
    _print_and_save_summary(cfg, outcomes)
    return 0


def cmd_run(args) -> int:
    from pipelines.dag import STAGES, build_dag

    stages = tuple(s for s in STAGES if s not in (args.skip or []))
    return _run_steps(args, lambda cfg: build_dag(cfg, stages))


def cmd_eval(args) -> int:
    from pipelines.dag import single_eval_dag

    return _run_steps(args, lambda cfg: single_eval_dag(cfg.experiment.mode))


def cmd_stage(stage: str):
    def run(args) -> int:
        from pipelines.dag import stage_dag

        return _run_steps(args, lambda cfg: stage_dag(stage))

    return run


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", help="group=preset or section.field=value")
    p.add_argument("--no-clearml", action="store_true", help="no tracking at all")
    p.add_argument("--offline", action="store_true", help="ClearML offline session even if a server is set")
    p.add_argument("--no-cache", action="store_true", help="run every step even if unchanged")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the local DAG (ingest, index, eval per mode, finetune, benchmark)")
    _add_common(p)
    p.add_argument("--skip", nargs="*", choices=["index", "eval", "finetune", "benchmark"],
                   help="stages to leave out")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("eval", help="ingest (+ index) + eval of experiment.mode")
    _add_common(p)
    p.set_defaults(func=cmd_eval)
    for stage in ("ingest", "index", "finetune", "benchmark"):
        p = sub.add_parser(stage, help=f"run the {stage} stage (and what it needs upstream)")
        _add_common(p)
        p.set_defaults(func=cmd_stage(stage))
    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub) -> None:
    """Command groups that live in their own modules."""
    from pipelines import data_commands, server_commands

    data_commands.register(sub)
    server_commands.register(sub)


def main(argv: list[str] | None = None) -> int:
    # transformers' per-load progress bars drown the stage output; our own loops keep theirs.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_guarded(lambda: args.func(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())

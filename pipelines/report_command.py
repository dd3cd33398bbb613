"""`slm report`: the leaderboard over finished evals, from local output folders or from ClearML tasks.

    slm report outputs/grid1 [outputs/grid2 ...]            # every eval under these folders
    slm report --project slm-experiments --tag nq-sweep      # eval tasks of a project (and tag)
    slm report --pipeline <controller task id>               # the evals of one pipeline run
    slm report ... --out outputs/report --metric token_f1

Writes leaderboard.csv/.json/.md, the plots and report.html into --out and prints the table.
Needs finished evals: their output folders, or a ClearML server for --project/--tag/--pipeline.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from components.core.errors import UserError


def _clearml_eval_folders(args: argparse.Namespace) -> list[Path]:
    """Each finished eval task's `output` artifact, downloaded (shards are left to their merge step)."""
    from clearml import Task

    from clearml_tasks._inputs import OUTPUT_ARTIFACT
    from clearml_tasks._tracking import resolve_tracking

    if resolve_tracking("auto") != "online":
        raise UserError("--project/--tag/--pipeline read a ClearML server; none is configured (give folders)")
    task_filter = {"status": ["completed", "published"], "parent": args.pipeline} if args.pipeline else \
        {"status": ["completed", "published"]}
    tasks = Task.get_tasks(project_name=args.project, tags=args.tag or None, task_name="^eval",
                           task_filter={**task_filter, "search_hidden": True})
    folders = [Path(t.artifacts[OUTPUT_ARTIFACT].get_local_copy()) for t in tasks
               if "__shard-" not in t.name and OUTPUT_ARTIFACT in t.artifacts]
    if not folders:
        raise UserError("no completed eval task with an output artifact matches")
    return folders


def cmd_report(args: argparse.Namespace) -> int:
    from clearml_tasks._tracker import NullTracker
    from clearml_tasks.report import report
    from components.stages.report import FILES, find_evals

    if args.folders and (args.project or args.pipeline or args.tag):
        raise UserError("give output folders or --project/--tag/--pipeline, not both")
    if args.folders:
        evals = [folder for _, folder in find_evals([Path(f) for f in args.folders])]
    elif args.project or args.pipeline:
        evals = [folder for _, folder in find_evals(_clearml_eval_folders(args))]
    else:
        raise UserError("give output folders (e.g. outputs/demo) or --project/--pipeline")
    if not evals:
        raise UserError(f"no finished eval under {', '.join(args.folders)}")
    out = Path(args.out)
    report(evals, out, NullTracker(), args.metric)
    print((out / FILES["md"]).read_text())
    print(f"report: {out / FILES['html']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from components.stages.report import QUALITY

    p = subparsers.add_parser("report", help="leaderboard of finished evals (folders or ClearML tasks)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="*", help="output folders to search for evals")
    p.add_argument("--project", help="ClearML project of the eval tasks")
    p.add_argument("--tag", action="append", help="only eval tasks with this tag (repeatable)")
    p.add_argument("--pipeline", help="the evals of this pipeline controller task")
    p.add_argument("--metric", default="token_recall", choices=QUALITY)
    p.add_argument("--out", default="outputs/report", help="where the leaderboard files go")
    p.set_defaults(func=cmd_report)

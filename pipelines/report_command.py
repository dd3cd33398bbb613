"""`slm report`: the report over finished evals, from local output folders or from ClearML tasks, and the
diff of two runs.

    slm report outputs/grid1 [outputs/grid2 ...]            # every eval under these folders
    slm report --project slm-experiments --tag nq-sweep      # eval tasks of a project (and tag)
    slm report --pipeline <controller task id>               # the evals of one pipeline run
    slm report ... --out outputs/report --metric token_f1
    slm report --compare outputs/run_a outputs/run_b         # run B against run A (folders, pipeline or task ids)

Writes leaderboard.csv/.json/.md, the plots and report.html into --out and prints the table; with
--compare, compare.json/.md/.html (default --out outputs/compare) and prints the diff.
Needs finished evals: their output folders, or a ClearML server for --project/--tag/--pipeline or task ids.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from components.core.errors import UserError


def _online(what: str) -> None:
    from clearml_tasks._tracking import resolve_tracking

    if resolve_tracking("auto") != "online":
        raise UserError(f"{what} read a ClearML server, and none is configured (give output folders)")


def _eval_tasks_folders(tasks) -> list[Path]:
    """Each finished eval task's `output` artifact, downloaded (shards are left to their merge step)."""
    from clearml_tasks._inputs import OUTPUT_ARTIFACT

    return [Path(t.artifacts[OUTPUT_ARTIFACT].get_local_copy()) for t in tasks
            if "__shard-" not in t.name and OUTPUT_ARTIFACT in t.artifacts]


def _clearml_eval_folders(project: str | None, tags: list[str] | None, pipeline: str | None) -> list[Path]:
    from clearml import Task

    _online("--project/--tag/--pipeline")
    task_filter = {"status": ["completed", "published"], "search_hidden": True}
    if pipeline:
        task_filter["parent"] = pipeline
    folders = _eval_tasks_folders(Task.get_tasks(project_name=project, tags=tags or None, task_name="^eval",
                                                 task_filter=task_filter))
    if not folders:
        raise UserError("no completed eval task with an output artifact matches")
    return folders


def _run_folders(source: str) -> list[Path]:
    """A run to compare: a local folder, a pipeline controller id (its evals) or a task id (that eval)."""
    if Path(source).exists():
        return [Path(source)]
    _online(f"--compare {source}: no such folder; a pipeline or task id would")
    from clearml import Task

    try:
        task = Task.get_task(task_id=source)
    except ValueError:
        raise UserError(f"--compare {source}: neither a folder nor the id of a ClearML task") from None
    if str(task.task_type) == "controller":
        return _clearml_eval_folders(None, None, source)
    folders = _eval_tasks_folders([task])
    if not folders:
        raise UserError(f"--compare {source}: task {task.name!r} is neither a pipeline nor an eval with an output")
    return folders


def _entries(folders: list[Path], what: str):
    from clearml_tasks.report import eval_depends_on
    from components.analysis.evals import find_evals, load_entry

    found = find_evals(folders)
    if not found:
        raise UserError(f"no finished eval under {what}")
    return [load_entry(name, folder, eval_depends_on) for name, folder in found]


def cmd_compare(args: argparse.Namespace) -> int:
    from components.analysis.compare import SHOWN, compare_markdown
    from components.stages.compare import FILES, write_compare

    a_source, b_source = args.compare
    a, b = _entries(_run_folders(a_source), a_source), _entries(_run_folders(b_source), b_source)
    samples = max(e.results["meta"]["config"]["experiment"]["bootstrap_samples"] for e in a + b)
    out = Path(args.out or "outputs/compare")
    diff, paths = write_compare(a, b, out, args.metric, samples, (a_source, b_source))
    print(compare_markdown(diff, shown=SHOWN))
    print(f"compare: {paths['md']} (every question), {out / FILES['html']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from clearml_tasks._tracker import NullTracker
    from clearml_tasks.report import report
    from components.analysis.evals import find_evals
    from components.stages.report import FILES

    if args.compare:
        if args.folders or args.project or args.pipeline or args.tag:
            raise UserError("--compare takes its two runs itself: give no folders or --project/--tag/--pipeline")
        return cmd_compare(args)
    if args.folders and (args.project or args.pipeline or args.tag):
        raise UserError("give output folders or --project/--tag/--pipeline, not both")
    if args.folders:
        evals = [folder for _, folder in find_evals([Path(f) for f in args.folders])]
    elif args.project or args.pipeline:
        evals = [folder for _, folder in find_evals(_clearml_eval_folders(args.project, args.tag, args.pipeline))]
    else:
        raise UserError("give output folders (e.g. outputs/demo), --project/--pipeline, or --compare A B")
    if not evals:
        raise UserError(f"no finished eval under {', '.join(args.folders)}")
    out = Path(args.out or "outputs/report")
    report(evals, out, NullTracker(), args.metric)
    print((out / FILES["md"]).read_text())
    print(f"report: {out / FILES['html']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from components.analysis.evals import QUALITY

    p = subparsers.add_parser("report", help="report on finished evals (folders or ClearML tasks); diff two runs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="*", help="output folders to search for evals")
    p.add_argument("--project", help="ClearML project of the eval tasks")
    p.add_argument("--tag", action="append", help="only eval tasks with this tag (repeatable)")
    p.add_argument("--pipeline", help="the evals of this pipeline controller task")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="diff run B against run A; each a run folder, a pipeline controller id or an eval task id")
    p.add_argument("--metric", default="token_recall", choices=QUALITY,
                   help="what the Markdown/CSV rank by, the plots show and right/wrong is judged by")
    p.add_argument("--out", help="where the files go (default outputs/report; with --compare outputs/compare)")
    p.set_defaults(func=cmd_report)

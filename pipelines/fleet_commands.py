"""`slm pipeline plan` (where each step of a pipeline would run, and why) and `slm fleet agents` (one
clearml-agent per GPU of this host, on the queue of its memory class). Neither needs a server.

    slm pipeline plan [--json] [-m] [--queue Q] [overrides]     # also: slm pipeline start --dry-run
    slm fleet agents [--output docker/agents.generated.yml] [--print] [--image I] [--cpu-image C] [overrides]
"""
from __future__ import annotations

import argparse
import json
import sys


def plan_table(plan: list[dict]) -> str:
    """Each step with its queue, estimate and breakdown; the seed system's rule beside as a cross-check."""
    from components.core.formatting import format_table

    rows = [{"step": s["name"], "stage": s["stage"], "queue": s["execution_queue"],
             "estimate_gb": "" if s["estimate_gb"] is None else f"{s['estimate_gb']:.1f}",
             "seed_rule_gb": "" if s["seed_rule_gb"] is None else f"{s['seed_rule_gb']:.1f}",
             "breakdown (GB)": ", ".join(f"{k} {v:.2f}" for k, v in s["breakdown_gb"].items()) or "no GPU work"}
            for s in plan]
    return format_table(rows, list(rows[0]) if rows else [])


def print_plan(plan: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(plan, indent=2))
        return
    print(plan_table(plan))
    for step in plan:
        if not step["fits"]:
            print(f"warning: step {step['name']} needs {step['estimate_gb']:.1f} GB + the reserve and fits no "
                  f"class of fleet.queues; it goes to the largest, {step['execution_queue']}", file=sys.stderr)


def cmd_pipeline_plan(args: argparse.Namespace) -> int:
    from components.core.overrides import build_config
    from pipelines.controller import build_plan
    from pipelines.grid import parse_grid

    grid = parse_grid(args.overrides, args.multirun)
    plan = build_plan(build_config(list(grid.fixed)), args.queue, args.controller_queue, grid=grid)
    print_plan(plan, args.json)
    return 0


def cmd_fleet_agents(args: argparse.Namespace) -> int:
    from components.core.overrides import build_config
    from components.fleet.gpus import read_gpus
    from pipelines.agents import agent_commands, compose_file
    from pipelines.fleet import parse_classes

    cfg = build_config(args.overrides)
    gpus = read_gpus()
    classes = parse_classes(cfg.fleet.queues)
    if args.print:
        print("\n".join(agent_commands(gpus, classes, args.image, args.services_queue, args.cpu_image)))
        return 0
    from components.core.fileio import write_text

    write_text(args.output, compose_file(gpus, classes, args.image, args.services_queue, args.cpu_image))
    print(f"{args.output}: {len(gpus)} GPU agent(s), a CPU agent and a services agent; start with "
          f"docker compose -f {args.output} up -d")
    return 0


def add_plan_parser(actions: argparse._SubParsersAction) -> None:
    from pipelines.controller import DEFAULT_CONTROLLER_QUEUE

    p = actions.add_parser("plan", help="each step's queue (its GPU memory class) and memory estimate; no server",
                           description="Where `slm pipeline start` would put each step: the smallest class of "
                                       "fleet.queues that holds the step's GPU memory estimate + fleet.reserve_gb, "
                                       "the CPU class for steps without GPU work. Needs nothing: no server, no "
                                       "clearml import.")
    p.add_argument("overrides", nargs="*", help="group=preset or section.field=value (fleet.queues=...)")
    p.add_argument("--queue", help="one queue for every step (a one-class fleet) instead of the classes")
    p.add_argument("--controller-queue", default=DEFAULT_CONTROLLER_QUEUE)
    p.add_argument("-m", "--multirun", action="store_true", help="comma-separated values are grid axes")
    p.add_argument("--json", action="store_true", help="the plan as a JSON list of steps")
    p.set_defaults(func=cmd_pipeline_plan)


def register(subparsers: argparse._SubParsersAction) -> None:
    from pipelines.controller import DEFAULT_CONTROLLER_QUEUE
    from pipelines.templates import DEFAULT_TASK_IMAGE

    group = subparsers.add_parser("fleet", help="this host's GPUs as ClearML agents, one per GPU",
                                  description="ClearML agents for this host's GPUs, one per GPU, each on its "
                                              "memory class's queue.")
    actions = group.add_subparsers(dest="fleet_command", required=True, metavar="{agents}")
    p = actions.add_parser("agents", help="write a compose file with one agent per GPU on its class's queue",
                           description="Reads this host's GPUs (NVML: index, name, memory, MIG mode) and writes a "
                                       "compose file with one `clearml-agent daemon --docker --gpus N` per GPU, each "
                                       "on the queue of the largest fleet.queues class its memory holds, plus one "
                                       "CPU agent on the CPU class and the services queue. Needs no server.")
    p.add_argument("overrides", nargs="*", help="fleet.queues=... (the classes)")
    p.add_argument("--output", default="docker/agents.generated.yml", help="compose file to write")
    p.add_argument("--print", action="store_true", help="print the agent commands instead of writing a file")
    p.add_argument("--image", default=DEFAULT_TASK_IMAGE, help="the task image the GPU agents run steps in")
    p.add_argument("--cpu-image", help="the task image of the CPU and services agents (default: --image)")
    p.add_argument("--services-queue", default=DEFAULT_CONTROLLER_QUEUE, help="the controllers' queue")
    p.set_defaults(func=cmd_fleet_agents)

"""Steps placed on a GPU fleet the ClearML way: one agent per GPU, one queue per GPU memory class
(`fleet.queues`, e.g. cpu:0,gpu-24gb:24,gpu-80gb:80). Each step goes to the smallest class that holds its
memory estimate (components.fleet.memory_estimate) plus `fleet.reserve_gb`; steps without GPU work go to
the CPU class. A step that runs out of memory is re-enqueued one class up; other failures, and a step whose
agent died (pipelines.liveness), are retried `fleet.retries` times on their own class.

Pure functions over configs and plain values, so the plan, the class choice and the retry decision are
tested without a server; `FleetRetry` adapts the decision to PipelineController's `retry_on_failure`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from clearml_tasks.stages import STAGES
from components.core.config import AppConfig
from components.core.errors import UserError

RETRY_MARKER = "Retrying... (this is retry number"  # what the controller writes into a step's log


@dataclass(frozen=True)
class QueueClass:
    name: str
    gb: float  # 0: the CPU queue


def parse_classes(queues: list[str] | str) -> list[QueueClass]:
    """["cpu:0", "gpu-24gb:24"] (fleet.queues; as text too: a pipeline parameter reads back as a string)
    -> classes, smallest first; one line naming fleet.queues if bad."""
    from components.core.coercion import coerce_value, field_types
    from components.core.config import FleetConfig

    items = coerce_value("fleet.queues", field_types(FleetConfig)["queues"], queues)
    text = ",".join(items)
    classes = []
    for item in (part.strip() for part in items if part.strip()):
        name, sep, gb = item.rpartition(":")
        try:
            size = float(gb)
        except ValueError:
            size = -1.0
        if not sep or not name or size < 0:
            raise UserError(f"fleet.queues: {item!r} is not name:GB (e.g. gpu-24gb:24)")
        classes.append(QueueClass(name, size))
    if len({c.name for c in classes}) != len(classes):
        raise UserError(f"fleet.queues: a queue is listed twice in {text!r}")
    if not any(c.gb > 0 for c in classes):
        raise UserError(f"fleet.queues: {text!r} has no GPU class (a name:GB with GB > 0)")
    return sorted(classes, key=lambda c: c.gb)


def cpu_queue(classes: list[QueueClass]) -> str:
    """The 0 GB class; without one, CPU steps share the smallest GPU class."""
    return next((c.name for c in classes if c.gb == 0), classes[0].name)


@dataclass(frozen=True)
class Placement:
    step: str
    stage: str
    queue: str
    estimate_gb: float | None  # None: no GPU work
    breakdown: dict
    seed_rule_gb: float | None
    fits: bool
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"step": self.step, "stage": self.stage, "queue": self.queue,
                "estimate_gb": None if self.estimate_gb is None else round(self.estimate_gb, 2),
                "breakdown_gb": self.breakdown, "seed_rule_gb": self.seed_rule_gb, "fits": self.fits,
                "notes": list(self.notes)}


def place(step: str, stage: str, cfg: AppConfig, classes: list[QueueClass]) -> Placement:
    """The smallest GPU class holding the step's estimate + reserve; the largest (fits=False) when none."""
    estimate = STAGES[stage].memory_estimate(cfg)
    if estimate is None:
        return Placement(step, stage, cpu_queue(classes), None, {}, None, True)
    need = estimate.gb + cfg.fleet.reserve_gb
    gpus = [c for c in classes if c.gb > 0]
    chosen = next((c for c in gpus if c.gb >= need), gpus[-1])
    return Placement(step, stage, chosen.name, estimate.gb, estimate.breakdown(), round(estimate.seed_rule_gb, 2),
                     chosen.gb >= need, tuple(estimate.notes))


def next_class(queue: str, classes: list[QueueClass]) -> str | None:
    """The next larger GPU class than `queue`, or None at the largest (or for a queue not in the fleet)."""
    names = [c.name for c in classes if c.gb > 0]
    if queue not in names or names.index(queue) == len(names) - 1:
        return None
    return names[names.index(queue) + 1]


_OOM = re.compile(r"CUDA out of memory|torch\.(cuda\.)?OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED")
_KILLED = re.compile(r"exit code (137|-9)\b")


def failure_kind(status_reason: str, log_text: str) -> str:
    """`oom` (CUDA out of memory in the log after the last retry marker, or killed by the kernel's OOM
    killer: exit 137 in Docker, -9 without) or `other`."""
    latest = log_text.rsplit(RETRY_MARKER, 1)[-1]
    return "oom" if _OOM.search(latest) or _KILLED.search(status_reason or "") else "other"


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    queue: str
    message: str


def decide_retry(step: str, kind: str, queue: str, classes: list[QueueClass], failures_here: int,
                 max_retries: int) -> RetryDecision:
    """Out of memory on a GPU class: the next larger class (none above: give up). Anything else, or out of
    memory on the CPU queue: again on the same queue while it has failed there at most `max_retries`
    times."""
    bigger = next_class(queue, classes) if kind == "oom" else None
    if bigger:
        return RetryDecision(True, bigger, f"step {step}: out of memory on {queue}; re-enqueued on {bigger}")
    if kind == "oom" and queue in {c.name for c in classes if c.gb > 0}:
        return RetryDecision(False, queue, f"step {step}: out of memory on {queue}, the largest class; not retried")
    if failures_here <= max_retries:
        return RetryDecision(True, queue, f"step {step}: failed ({kind}); retry {failures_here} of {max_retries} "
                                          f"on {queue}")
    return RetryDecision(False, queue, f"step {step}: failed {failures_here} times on {queue}; not retried")


class FleetRetry:
    """PipelineController's `retry_on_failure` callable: reads the failed step task's status and log,
    decides, sets `node.queue` (the controller re-enqueues on it) and writes the decision into the step's
    log and the controller's. The classes and retries come from the pipeline's parameters, so the
    controller rebuilt on an agent (and a NEW RUN with other values) decides the same way."""

    def __init__(self, queues: str = "", retries: int | None = None):
        self.queues, self.retries = queues, retries
        self.failures: dict[tuple[str, str], int] = {}  # (step, queue) -> failures there

    def _settings(self, pipeline) -> tuple[list[QueueClass], int]:
        params = pipeline.get_parameters() if hasattr(pipeline, "get_parameters") else {}
        queues = self.queues or params.get("fleet_queues") or AppConfig().fleet.queues
        retries = self.retries if self.retries is not None else int(params.get("fleet_retries",
                                                                               AppConfig().fleet.retries))
        return parse_classes(queues), retries

    def stale_decision(self, pipeline, node) -> RetryDecision:
        """A running step given up on for want of a sign of life (pipelines.liveness): another attempt on
        its own queue, counted with its failures there against `fleet.retries`."""
        classes, max_retries = self._settings(pipeline)
        key = (node.name, node.queue)
        self.failures[key] = self.failures.get(key, 0) + 1
        return decide_retry(node.name, "stale", node.queue, classes, self.failures[key], max_retries)

    def __call__(self, pipeline, node, retries: int) -> bool:
        classes, max_retries = self._settings(pipeline)
        task = node.job.task
        task.reload()
        log = "\n".join(str(r) for r in task.get_reported_console_output(number_of_reports=200) or [])
        kind = failure_kind(str(task.data.status_reason or ""), log)
        key = (node.name, node.queue)
        self.failures[key] = self.failures.get(key, 0) + 1
        decision = decide_retry(node.name, kind, node.queue, classes, self.failures[key], max_retries)
        node.queue = decision.queue
        print(decision.message, flush=True)  # the controller's log
        task.get_logger().report_text(decision.message)
        return decision.retry

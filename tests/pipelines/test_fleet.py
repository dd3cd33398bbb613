"""Placement on a fleet of GPU memory classes: the class chosen for a table of (model, stage, dtype, batch)
cases, 4-bit and vLLM included; the classes parsed with one-line errors; the retry decision after a
failure (out of memory moves up to the largest class, other failures retry on their own class) and the
PipelineController callback that applies it to fake step tasks."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from components.core.errors import UserError
from components.core.overrides import build_config
from pipelines.fleet import (RETRY_MARKER, FleetRetry, QueueClass, decide_retry, failure_kind, next_class,
                             parse_classes, place)

FLEET = "cpu:0,gpu-16gb:16,gpu-24gb:24,gpu-80gb:80"
CLASSES = parse_classes(FLEET)


def test_classes_are_parsed_smallest_first():
    assert parse_classes("gpu-80gb:80, cpu:0 ,gpu-24gb:24") == [
        QueueClass("cpu", 0), QueueClass("gpu-24gb", 24), QueueClass("gpu-80gb", 80)]


@pytest.mark.parametrize("text, message", [
    ("cpu:0,gpu", "'gpu' is not name:GB"), ("gpu:-1", "'gpu:-1' is not name:GB"), ("cpu:0", "has no GPU class"),
    ("a:16,a:24", "listed twice")])
def test_bad_classes_are_one_line_naming_the_key(text, message):
    with pytest.raises(UserError, match=f"fleet.queues: .*{message}"):
        parse_classes(text)


@pytest.mark.parametrize("overrides, stage, queue", [
    (["model=smollm2_135m"], "eval", "gpu-16gb"),
    (["model=smollm2_135m"], "finetune", "gpu-16gb"),
    (["model=qwen_1.7b"], "finetune", "gpu-16gb"),
    (["model=qwen_4b"], "eval", "gpu-16gb"),
    (["model=qwen_4b"], "finetune", "gpu-24gb"),
    (["model=qwen_4b", "finetune.method=qlora"], "finetune", "gpu-16gb"),
    (["model=qwen_4b", "finetune.batch_size=32"], "finetune", "gpu-80gb"),
    (["model=qwen_8b"], "eval", "gpu-24gb"),
    (["model=qwen_8b_4bit"], "eval", "gpu-16gb"),
    (["model=qwen_8b", "model.dtype=float32"], "eval", "gpu-80gb"),
    (["model=qwen_8b", "generation.backend=vllm"], "eval", "gpu-24gb"),
    (["model=qwen_14b", "generation.backend=vllm"], "eval", "gpu-80gb"),
    (["model=qwen_4b", "generation.batch_size=8", "generation.max_batch_tokens=0"], "eval", "gpu-16gb"),
    (["model=qwen_14b"], "benchmark", "gpu-80gb"),
    (["model=qwen_14b"], "index", "cpu"),
    (["model=qwen_14b"], "report", "cpu"),
])
def test_each_step_goes_to_the_smallest_class_it_fits(overrides, stage, queue):
    cfg = build_config([*overrides, f"fleet.queues={FLEET}"])
    placed = place("step", stage, cfg, CLASSES)
    assert placed.queue == queue, placed.as_dict()
    if placed.estimate_gb is not None:
        size = {c.name: c.gb for c in CLASSES}[queue]
        assert placed.estimate_gb + cfg.fleet.reserve_gb <= size and placed.fits


def test_a_step_that_fits_no_class_goes_to_the_largest_and_says_so():
    cfg = build_config(["model=qwen_14b", "model.dtype=float32"])
    placed = place("eval", "eval", cfg, parse_classes("cpu:0,gpu-24gb:24,gpu-40gb:40"))
    assert (placed.queue, placed.fits) == ("gpu-40gb", False) and placed.estimate_gb > 40


def test_the_reserve_is_kept_free():
    cfg = build_config(["model=qwen_4b"])
    estimate = place("e", "eval", cfg, CLASSES).estimate_gb
    tight = parse_classes(f"cpu:0,small:{estimate + 1:.2f},big:80")
    assert place("e", "eval", cfg, tight).queue == "big"  # 1 GB over the estimate, less than the 2 GB reserve
    assert place("e", "eval", build_config(["model=qwen_4b", "fleet.reserve_gb=0.5"]), tight).queue == "small"


@pytest.mark.parametrize("reason, log, kind", [
    ("worker execution exit code 1", "Traceback\ntorch.OutOfMemoryError: CUDA out of memory. Tried", "oom"),
    ("worker execution exit code 1", "RuntimeError: CUDA out of memory.", "oom"),
    ("worker execution exit code 137", "", "oom"),  # the kernel's OOM killer in Docker
    ("worker execution exit code -9", "", "oom"),  # ... and without
    ("worker execution exit code 1", "ValueError: bad", "other"),
    # an out-of-memory error of an earlier attempt, before the controller's retry marker, is history
    ("worker execution exit code 1", f"CUDA out of memory\n{RETRY_MARKER} 1)\nValueError: bad", "other"),
])
def test_failure_kind_reads_the_latest_attempt(reason, log, kind):
    assert failure_kind(reason, log) == kind


def test_out_of_memory_moves_up_to_the_largest_then_stops():
    assert next_class("gpu-16gb", CLASSES) == "gpu-24gb" and next_class("gpu-80gb", CLASSES) is None
    first = decide_retry("ft", "oom", "gpu-16gb", CLASSES, failures_here=1, max_retries=0)
    assert (first.retry, first.queue) == (True, "gpu-24gb"), "a move up is not a retry on the same class"
    last = decide_retry("ft", "oom", "gpu-80gb", CLASSES, failures_here=1, max_retries=3)
    assert (last.retry, last.queue) == (False, "gpu-80gb") and "largest" in last.message


def test_other_failures_retry_on_their_own_class_then_stop():
    decisions = [decide_retry("s", "other", "gpu-24gb", CLASSES, n, max_retries=3) for n in (1, 2, 3, 4)]
    assert [(d.retry, d.queue) for d in decisions] == [(True, "gpu-24gb")] * 3 + [(False, "gpu-24gb")]
    on_cpu = decide_retry("s", "oom", "cpu", CLASSES, 1, max_retries=1)
    assert (on_cpu.retry, on_cpu.queue) == (True, "cpu"), "the CPU queue has no larger class: a plain retry"


class FakeTask:
    def __init__(self, reason: str, log: str):
        self.data = SimpleNamespace(status_reason=reason)
        self.log, self.texts = log, []

    def reload(self):
        pass

    def get_reported_console_output(self, number_of_reports=1):
        return [self.log]

    def get_logger(self):
        return SimpleNamespace(report_text=self.texts.append)


def node_failing(name: str, queue: str, reason: str, log: str):
    return SimpleNamespace(name=name, queue=queue, job=SimpleNamespace(task=FakeTask(reason, log)))


def test_the_controller_callback_moves_a_step_and_logs_why(capsys):
    pipeline = SimpleNamespace(get_parameters=lambda: {"fleet_queues": FLEET, "fleet_retries": "1"})
    retry = FleetRetry()
    node = node_failing("finetune", "gpu-16gb", "worker execution exit code 1", "CUDA out of memory")
    assert retry(pipeline, node, 0) is True and node.queue == "gpu-24gb"
    assert node.job.task.texts == ["step finetune: out of memory on gpu-16gb; re-enqueued on gpu-24gb"]
    assert "re-enqueued on gpu-24gb" in capsys.readouterr().out  # the controller's own log
    node.job.task = FakeTask("worker execution exit code 1", "ValueError")
    assert retry(pipeline, node, 1) is True and node.queue == "gpu-24gb"
    assert retry(pipeline, node, 2) is False, "fleet_retries=1: one retry on the same class"


def test_the_callback_defaults_to_the_config_when_the_pipeline_has_no_parameters():
    node = node_failing("eval", "gpu-16gb", "worker execution exit code 137", "")
    assert FleetRetry()(SimpleNamespace(), node, 0) is True and node.queue == "gpu-24gb"

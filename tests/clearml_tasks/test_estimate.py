"""A step's memory estimate recorded by the template glue: in its results and as a task property for GPU
stages, nothing for CPU stages, and never a failure when the model's shape cannot be read."""
from __future__ import annotations

from clearml_tasks._estimate import record_memory_estimate
from clearml_tasks._tracker import NullTracker
from clearml_tasks.stages import STAGES
from components.core.overrides import build_config


class Recorder(NullTracker):
    def __init__(self):
        self.properties: dict = {}

    def set_properties(self, values: dict) -> None:
        self.properties.update(values)


def test_a_gpu_step_records_its_estimate_and_a_cpu_step_nothing():
    tracker = Recorder()
    fields = record_memory_estimate(STAGES["eval"], build_config(["model=qwen_4b"]), tracker)
    assert 10 < fields["memory_estimate_gb"] < 12 and fields["memory_estimate_breakdown_gb"]["weights"] > 7
    assert tracker.properties == {"memory_estimate_gb": fields["memory_estimate_gb"]}
    assert record_memory_estimate(STAGES["index"], build_config([]), Recorder()) == {}


def test_an_unreadable_model_shape_never_fails_the_step(tmp_path):
    cfg = build_config([f"model.path={tmp_path}", "model.gguf_package=", "model.gguf_file="])  # no config.json
    (tmp_path / "config.json").write_text('{"vocab_size": 10}')
    tracker = Recorder()
    assert record_memory_estimate(STAGES["eval"], cfg, tracker) == {} and tracker.properties == {}

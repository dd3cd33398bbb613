"""A step's GPU memory estimate (the figure `slm pipeline` places it by, pipelines.fleet) recorded beside
what the step measured: in the step's results (the local runner's .step.json and summary) and as a user
property of its task, so a local run shows it before anything goes to a server and a server run can be
compared with its gpu_ram_peak_mb. The stage's own results.json stays what the stage wrote."""
from __future__ import annotations

from clearml_tasks._tracker import NullTracker
from components.core.config import AppConfig
from components.core.errors import UserError


def record_memory_estimate(spec, cfg: AppConfig, tracker: NullTracker) -> dict:
    """The estimate's fields ({} for a stage without GPU work, or where the model's shape cannot be read
    here: an estimate never fails a step)."""
    try:
        estimate = spec.memory_estimate(cfg)
    except UserError:
        return {}
    if estimate is None:
        return {}
    fields = {"memory_estimate_gb": round(estimate.gb, 3), "memory_estimate_breakdown_gb": estimate.breakdown()}
    tracker.set_properties({"memory_estimate_gb": fields["memory_estimate_gb"]})
    return fields

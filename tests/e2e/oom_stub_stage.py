"""A stub GPU stage for the live placement test (tests/e2e/test_fleet_live.py), run by agents as
`python tests/e2e/oom_stub_stage.py`: its memory estimate (1 GB) places it on the smallest GPU class, but
its work needs NEED_GB of card, so on an agent whose card (SLM_TEST_CARD_GB, what the test gives each
agent) is smaller it fails the way a real step does, with CUDA's out-of-memory error."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from clearml_tasks.stages import STAGES, Stage, register_stage
from components.core.fileio import write_json
from components.fleet.memory_estimate import GB, MemoryEstimate

STAGE = "oom_stub"
NEED_GB = 20.0


def estimate(cfg) -> MemoryEstimate:
    return MemoryEstimate({"weights": GB})


def body(cfg, inputs: dict, output_dir: Path, tracker) -> dict:
    import torch

    card = float(os.environ.get("SLM_TEST_CARD_GB", "0"))
    if card < NEED_GB:
        raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {NEED_GB:.2f} GiB (GPU 0; {card:.2f} "
                                     f"GiB total capacity)")
    write_json(Path(output_dir) / "ran.json", {"card_gb": card, "ingest": str(inputs["ingest"])})
    return {"card_gb": card}


if STAGE not in STAGES:
    register_stage(Stage(STAGE, "training", ("model",), inputs=("ingest",), entry="tests.e2e.oom_stub_stage",
                         gpu=True, memory="tests.e2e.oom_stub_stage:estimate", help="stub: CUDA OOM on small cards"))

if __name__ == "__main__":
    from clearml_tasks._task import main

    sys.exit(main(STAGE, body))

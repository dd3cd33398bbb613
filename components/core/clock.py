"""Seconds since this process started (interpreter start, imports and config included): how a run's fixed
cost is measured from inside it (bench/bench_eval.py prints it per phase)."""
from __future__ import annotations

import time


def process_age_seconds() -> float:
    import psutil

    return max(0.0, time.time() - psutil.Process().create_time())

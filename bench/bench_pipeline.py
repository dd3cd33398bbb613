"""Step cache: a second `slm run` with nothing changed vs the first (goal >= 10x faster).

Run: .venv/bin/python bench/bench_pipeline.py [overrides...]   e.g. finetune.max_steps=10

Both runs are whole `slm run` processes on the embedded defaults (offline ClearML sessions), into a fresh
output folder; the second finds every step's inputs and config unchanged and serves it from the cache.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed_run(out: Path, overrides: list[str]) -> float:
    cmd = [sys.executable, "-m", "pipelines.cli", "run", f"experiment.output_dir={out}", *overrides]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    overrides = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        first = timed_run(out, overrides)
        second = timed_run(out, overrides)
        statuses = {row["step"]: row["status"] for row in json.loads((out / "summary.json").read_text())}
    print("pipeline step cache: `slm run` twice, nothing changed in between")
    print(f"  first run:  {first:7.1f} s")
    print(f"  second run: {second:7.1f} s   steps: {statuses}")
    print(f"  speed-up: {first / second:.1f}x (goal >= 10x)")
    print(f"reproduce: .venv/bin/python bench/bench_pipeline.py {' '.join(overrides)}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())

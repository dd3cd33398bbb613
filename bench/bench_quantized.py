"""QLoRA vs LoRA, and 4-bit / 8-bit evals beside float32, on the demo data with the embedded SmolLM2-135M.

Run: .venv/bin/python bench/bench_quantized.py [--steps 12] [--skip-finetune] [--skip-eval]
     (~6 min on the 2-core CPU, idle)

Evals: `slm eval` on the 42 demo questions (no_context, greedy, 32 new tokens), once with full-precision
weights (float32 on CPU) and once each with `model.load_in_4bit=true` (NF4, double quantization) and
`model.load_in_8bit=true` (LLM.int8): token recall, answers identical to the full-precision run, model
size in memory, load and generation seconds, peak CPU memory.
Fine-tunes: `slm finetune` with finetune.method=lora and =qlora, the same data (the demo's train split),
rank, steps, learning rate, batch and seed: the logged loss at each step, seconds per step, adapter size,
peak CPU memory. Each run is its own process, so each peak is its own.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVALS = {"float32": [], "4-bit NF4": ["model.load_in_4bit=true"], "8-bit LLM.int8": ["model.load_in_8bit=true"]}
FINETUNE = ["finetune.learning_rate=1e-3", "finetune.batch_size=4", "finetune.logging_steps=1",
            "finetune.save_steps=1000", "finetune.eval_steps=1000", "prompt.system=Be brief."]


def slm(args: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", "pipelines.cli", *args, "--no-clearml", f"experiment.output_dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return proc


def evals(tmp: Path) -> None:
    print("| weights | token recall | identical to float32 | model_size_mb | load s | generation s | s/question "
          "| peak CPU MB |")
    print("|---|---|---|---|---|---|---|---|")
    reference = None
    for name, overrides in EVALS.items():
        out = tmp / name.split()[0]
        slm(["eval", "experiment.mode=no_context", *overrides], out)
        r = json.loads((out / "results.json").read_text())
        answers = [json.loads(line)["prediction"] for line in (out / "predictions.jsonl").open()]
        reference = reference or answers
        same = sum(a == b for a, b in zip(answers, reference))
        print(f"| {name} | {r['token_recall']:.4f} | {same}/{len(answers)} | {r['model_size_mb']:.1f} | "
              f"{r['load_seconds']:.1f} | {r['generation_seconds']:.1f} | {r['seconds_per_question']:.3f} | "
              f"{r['cpu_ram_used_mb']:.0f} |")


def finetunes(tmp: Path, steps: int) -> None:
    rows = {}
    for method in ("lora", "qlora"):
        out = tmp / method
        slm(["finetune", f"finetune.method={method}", f"finetune.max_steps={steps}", *FINETUNE], out)
        r = json.loads((out / "finetune" / "results.json").read_text())
        history = json.loads((out / "finetune" / "trainer_state.json").read_text())["log_history"]
        losses = [e["loss"] for e in history if "loss" in e]
        adapter = sum(f.stat().st_size for f in (out / "finetune" / "adapter").iterdir())
        rows[method] = (r, losses, adapter)
    print(f"| method | loss at steps 1..{steps} | s/step | tokens/s | adapter MB | peak CPU MB |")
    print("|---|---|---|---|---|---|")
    for method, (r, losses, adapter) in rows.items():
        curve = " ".join(f"{x:.2f}" for x in losses)
        print(f"| {method} | {curve} | {r['train_runtime'] / r['global_step']:.2f} | {r['tokens_per_second']:.1f} | "
              f"{adapter / 2**20:.2f} | {r['cpu_ram_used_mb']:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--skip-eval", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_eval:
            evals(Path(tmp))
        if not args.skip_finetune:
            finetunes(Path(tmp), args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())

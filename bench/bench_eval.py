"""Eval speed: whole-process `slm eval` vs the seed system's naive per-question generate loop.

Run: .venv/bin/python bench/bench_eval.py [--questions 64] [--data ../shared/data/nq_open/NQ-open.dev.jsonl]

Both run on the same first N NQ-open dev questions, closed book, with the embedded SmolLM2-135M model,
greedy decoding and 32 new tokens. The baseline loads the GGUF through `gguf_file=` in its own process
(load time included), renders the chat template and calls `generate` one question at a time. Ours is
the `slm eval` command as a user runs it (the converted checkpoint is cached, as after a first run).
Prints both wall times, the ratio (goal >= 8x), token recall of both, and where our time went.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "nq_open" / "NQ-open.dev.jsonl"

NAIVE_LOOP = r'''
import json, sys, time
start = time.perf_counter()
from transformers import AutoModelForCausalLM, AutoTokenizer
from components.config import ModelConfig
from components.models import packaged_gguf_path
gguf = packaged_gguf_path(ModelConfig())
tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
rows = [json.loads(l) for l in open(sys.argv[1])][: int(sys.argv[2])]
out = []
for row in rows:
    msgs = [{"role": "user", "content": "Answer the question with a short answer.\nQuestion: " + row["question"]}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    gen = model.generate(**ids, max_new_tokens=32, do_sample=False)
    out.append(tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
json.dump({"predictions": out, "seconds": time.perf_counter() - start}, open(sys.argv[3], "w"))
'''


def run_naive(data: Path, n: int, workdir: Path) -> tuple[float, list[str]]:
    out = workdir / "naive.json"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", NAIVE_LOOP, str(data), str(n), str(out)], cwd=REPO, check=True,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads(out.read_text())["predictions"]


def run_ours(data: Path, n: int, workdir: Path) -> tuple[float, dict]:
    out = workdir / "ours"
    cmd = [sys.executable, "-m", "pipelines.cli", "eval", "--no-clearml", "--no-cache", f"dataset.path={data}",
           f"experiment.max_samples={n}", f"experiment.output_dir={out}"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads((out / "results.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"skipped: {args.data} not found")
        return 0
    from components.metrics import token_recall

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        run_ours(args.data, 4, workdir)  # warm the converted-model cache and the OS file cache
        ours_seconds, results = run_ours(args.data, args.questions, workdir)
        naive_seconds, naive_predictions = run_naive(args.data, args.questions, workdir)
    golds = [json.loads(line)["answer"] for line in args.data.open()][: args.questions]
    naive_recall = sum(token_recall(p, g) for p, g in zip(naive_predictions, golds)) / len(golds)
    print(f"eval speed, {args.questions} NQ-open questions, no_context, {results['model']}, greedy, 32 new tokens")
    print(f"  naive per-question loop (GGUF load included): {naive_seconds:8.1f} s   token_recall {naive_recall:.4f}")
    print(f"  slm eval, whole process:                       {ours_seconds:8.1f} s   token_recall "
          f"{results['token_recall']:.4f}")
    print(f"  speed-up: {naive_seconds / ours_seconds:.1f}x (goal >= 8x), recall no worse: "
          f"{results['token_recall'] >= naive_recall - 1e-9}")
    timing = results.get("timing", {})
    other = ours_seconds - results["duration_seconds"]
    print("  where slm eval's time went:")
    print(f"    process start + imports + ingest (outside the eval step): {other:6.2f} s")
    for name, seconds in timing.items():
        print(f"    {name:<55} {seconds:6.2f} s")
    print(f"reproduce: .venv/bin/python bench/bench_eval.py --questions {args.questions} --data {args.data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

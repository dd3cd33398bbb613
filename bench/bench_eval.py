"""Eval speed: whole-process `slm eval` per backend vs a naive per-question HF `generate` loop and vs
llama.cpp used the simple way (one `create_chat_completion` per question), all in one run.

Run: .venv/bin/python bench/bench_eval.py [--mode no_context|oracle_context] [--questions N]
                                          [--backends hf,llama_cpp,llama_cpp:q8_0,llama_cpp:f32]

Workloads: `no_context` = the first 64 NQ-open dev questions, closed book; `oracle_context` = the first 48
questions of nq-open-oracle.jsonl.gz with their gold passage in the prompt. Everything uses the embedded
SmolLM2-135M, the same user messages (the project's prompt templates), greedy decoding and 32 new tokens.
- naive loop: loads the GGUF through transformers `gguf_file=` in its own process (load time included),
  renders the chat template and calls `generate` one question at a time;
- simple llama.cpp: `Llama(gguf)` on the same embedded file, one `create_chat_completion` per question
  with `stop=["\\n"]` (the project's stop rule), n_threads = the cores;
- `slm eval` as a user runs it, once per backend (converted models cached, as after a first run).
Prints wall times, ratios against both baselines, token recall of each, and where `slm eval`'s time went.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "nq_open"
WORKLOADS = {"no_context": (DATA / "NQ-open.dev.jsonl", 64), "oracle_context": (DATA / "nq-open-oracle.jsonl.gz", 48)}

# Shared by both baselines: the questions, answers and user messages `slm eval` would ask.
MESSAGES = r'''
import json, sys, time
from pathlib import Path
from components.core.config import PromptConfig
from components.stages.prompts import user_message
from components.data.readers import detect_format, read_records
data, n, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
records = [r for _, r in zip(range(n), read_records(data, detect_format(data)))]
def gold(r):
    return [p for p in r.passages if p.id in r.question.gold_passage_ids] if mode == "oracle_context" else []
messages = [user_message(r.question.question, gold(r), PromptConfig()) for r in records]
'''

NAIVE_LOOP = r'''
start = time.perf_counter()
from transformers import AutoModelForCausalLM, AutoTokenizer
from components.core.config import ModelConfig
from components.backends.models import packaged_gguf_path
gguf = packaged_gguf_path(ModelConfig())
tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
out = []
for m in messages:
    ids = tok.apply_chat_template([{"role": "user", "content": m}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    gen = model.generate(**ids, max_new_tokens=32, do_sample=False)
    out.append(tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
json.dump({"predictions": out, "seconds": time.perf_counter() - start}, open(sys.argv[4], "w"))
'''

SIMPLE_LLAMA_CPP = r'''
start = time.perf_counter()
import os
from llama_cpp import Llama
from components.core.config import ModelConfig
from components.backends.models import packaged_gguf_path
llm = Llama(str(packaged_gguf_path(ModelConfig())), n_ctx=4096, n_threads=len(os.sched_getaffinity(0)),
            verbose=False)
out = []
for m in messages:
    c = llm.create_chat_completion([{"role": "user", "content": m}], max_tokens=32, temperature=0.0, stop=["\n"])
    out.append(c["choices"][0]["message"]["content"].strip())
json.dump({"predictions": out, "seconds": time.perf_counter() - start}, open(sys.argv[4], "w"))
'''


def run_baseline(script: str, data: Path, n: int, mode: str, workdir: Path) -> tuple[float, list[str]]:
    out = workdir / "baseline.json"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", MESSAGES + script, str(data), str(n), mode, str(out)], cwd=REPO,
                   check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads(out.read_text())["predictions"]


def backend_overrides(spec: str) -> list[str]:
    """`llama_cpp:q8_0` -> generation.backend=llama_cpp generation.llama_cpp_weights=q8_0."""
    backend, _, weights = spec.partition(":")
    return [f"generation.backend={backend}"] + ([f"generation.llama_cpp_weights={weights}"] if weights else [])


def run_ours(spec: str, data: Path, n: int, mode: str, workdir: Path) -> tuple[float, dict]:
    out = workdir / spec.replace(":", "-")
    cmd = [sys.executable, "-m", "pipelines.cli", "eval", "--no-clearml", "--no-cache", f"dataset.path={data}",
           f"experiment.mode={mode}", f"experiment.max_samples={n}", f"experiment.output_dir={out}",
           *backend_overrides(spec)]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads((out / "results.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(WORKLOADS), default="no_context")
    parser.add_argument("--questions", type=int, default=0, help="default: 64 closed book, 48 oracle")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--backends", default="hf,llama_cpp,llama_cpp:q8_0,llama_cpp:f32")
    parser.add_argument("--skip-naive", action="store_true", help="leave out the (slow) naive HF loop")
    args = parser.parse_args()
    data = args.data or WORKLOADS[args.mode][0]
    n = args.questions or WORKLOADS[args.mode][1]
    if not data.is_file():
        print(f"skipped: {data} not found")
        return 0
    try:
        import llama_cpp  # noqa: F401
        has_llama = True
    except ImportError:
        has_llama = False
    specs = [s for s in args.backends.split(",") if has_llama or not s.startswith("llama_cpp")]
    from components.analysis.metrics import token_recall
    from components.data.readers import detect_format, read_records

    golds = [r.question.answers for _, r in zip(range(n), read_records(data, detect_format(data)))]
    rows: list[tuple[str, float, float]] = []  # name, seconds, token recall
    ours: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for spec in specs:  # warm the converted-model caches and the OS file cache
            run_ours(spec, data, 4, args.mode, workdir)
        for spec in specs:
            seconds, ours[spec] = run_ours(spec, data, n, args.mode, workdir)
            rows.append((f"slm eval, {spec}", seconds, ours[spec]["token_recall"]))
        baselines = {}
        if has_llama:
            baselines["simple llama.cpp"] = run_baseline(SIMPLE_LLAMA_CPP, data, n, args.mode, workdir)
        if not args.skip_naive:
            baselines["naive HF loop"] = run_baseline(NAIVE_LOOP, data, n, args.mode, workdir)
    for name, (seconds, predictions) in baselines.items():
        recall = sum(token_recall(p, g) for p, g in zip(predictions, golds)) / len(golds)
        rows.append((name, seconds, recall))

    print(f"eval speed, {n} questions of {data.name}, {args.mode}, embedded SmolLM2-135M, greedy, 32 new tokens, "
          f"{os.cpu_count()} cores")
    header = "".join(f" | vs {b}" for b in baselines)
    print(f"| run | whole process (s) | token recall{header} |")
    print("|---|---|---|" + "---|" * len(baselines))
    for name, seconds, recall in rows:
        ratios = "".join(f" | {baselines[b][0] / seconds:.2f}x" for b in baselines)
        print(f"| {name} | {seconds:.1f} | {recall:.4f}{ratios} |")
    naive_recall = next((r for name, _, r in rows if name == "naive HF loop"), None)
    if naive_recall is not None:
        for spec in specs:
            print(f"  {spec}: token recall no worse than the naive loop's: "
                  f"{ours[spec]['token_recall'] >= naive_recall - 1e-9}")
    print("where slm eval's time went (seconds):")
    for spec in specs:
        r = ours[spec]
        phases = ", ".join(f"{k.removesuffix('_seconds')} {v:.2f}" for k, v in r["timing"].items())
        print(f"  {spec}: eval step {r['duration_seconds']:.2f} ({phases})")
    print(f"reproduce: .venv/bin/python bench/bench_eval.py --mode {args.mode} --questions {n} "
          f"--backends {','.join(specs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

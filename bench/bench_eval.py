"""Eval speed: whole-process `slm eval` (the default and other backends) against the peers that run here,
all in one run: a naive per-question HF `generate` loop, llama.cpp used the simple way (one
`create_chat_completion` per question) and lm-evaluation-harness (when installed: `pip install -e '.[bench]'`).

Run: .venv/bin/python bench/bench_eval.py [--mode no_context|oracle_context] [--questions N]
                                          [--backends hf,llama_cpp,hf:float32,llama_cpp:f32]

Workloads: `no_context` = the first 64 NQ-open dev questions, closed book; `oracle_context` = the first 48
questions of nq-open-oracle.jsonl.gz with their gold passage in the prompt. Everything uses the embedded
SmolLM2-135M, the same user messages (the project's prompt templates), greedy decoding and 32 new tokens.
- `slm eval` as a user runs it, once per setting (converted models cached, as after a first run): `hf` is
  the default; `hf:float32` pins model.dtype; `llama_cpp` its default weights, `llama_cpp:f32` others;
- naive loop: loads the GGUF through transformers `gguf_file=` in its own process (load time included),
  renders the chat template and calls `generate` one question at a time (float32, transformers' default);
- simple llama.cpp: `Llama(gguf)` on the same embedded file, one `create_chat_completion` per question
  with `stop=["\\n"]` (the project's stop rule), n_threads = the cores;
- lm-evaluation-harness: see LM_EVAL below.
Prints wall times, ratios against every baseline, token recall of each; then where each `slm eval`'s time
went, from process start to its first batch (the fixed cost) and after; and the prefill rate in FLOP/s
(2 x the decoder's linear weights per prompt token) as a share of this machine's peak at the precision
the run used, measured on a large matmul in this process.
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

# lm-evaluation-harness (the `[bench]` extra): its HF model on the same plain checkpoint the hf backend loads
# (the cached conversion of the embedded GGUF), a generate_until task over the same user messages through
# the tokenizer's chat template, greedy, 32 new tokens, stop at a newline; batch size and dtype from the
# command line (batch 1, lm-eval's default, and 64, ours; float32, the checkpoint's, and bfloat16, our default's).
LM_EVAL = r'''
start = time.perf_counter()
import tempfile
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager
from components.core.config import ModelConfig
from components.backends.models import resolve_weights
tmp = Path(tempfile.mkdtemp())
with open(tmp / "questions.jsonl", "w") as f:
    for m in messages:
        f.write(json.dumps({"text": m, "target": ""}) + "\n")
(tmp / "slm_bench.yaml").write_text(f"""task: slm_bench
dataset_path: json
dataset_kwargs:
  data_files:
    test: {tmp / 'questions.jsonl'}
test_split: test
output_type: generate_until
doc_to_text: "{{{{text}}}}"
doc_to_target: "{{{{target}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 32
  do_sample: false
metric_list:
  - metric: exact_match
""")
results = simple_evaluate(model="hf", model_args={"pretrained": resolve_weights(ModelConfig()), "dtype": sys.argv[6]},
                          tasks=["slm_bench"], batch_size=int(sys.argv[5]), device="cpu", apply_chat_template=True,
                          log_samples=True, task_manager=TaskManager(include_path=str(tmp)), bootstrap_iters=0)
samples = sorted(results["samples"]["slm_bench"], key=lambda s: s["doc_id"])
out = [s["filtered_resps"][0].strip() for s in samples]
json.dump({"predictions": out, "seconds": time.perf_counter() - start}, open(sys.argv[4], "w"))
'''


def run_baseline(script: str, data: Path, n: int, mode: str, workdir: Path, *extra: str) -> tuple[float, list[str]]:
    out = workdir / "baseline.json"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", MESSAGES + script, str(data), str(n), mode, str(out), *extra], cwd=REPO,
                   check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads(out.read_text())["predictions"]


def backend_overrides(spec: str) -> list[str]:
    """`llama_cpp:f32` -> generation.backend=llama_cpp generation.llama_cpp_weights=f32;
    `hf:float32` -> generation.backend=hf model.dtype=float32."""
    backend, _, variant = spec.partition(":")
    if not variant:
        return [f"generation.backend={backend}"]
    key = "generation.llama_cpp_weights" if backend == "llama_cpp" else "model.dtype"
    return [f"generation.backend={backend}", f"{key}={variant}"]


def run_ours(spec: str, data: Path, n: int, mode: str, workdir: Path) -> tuple[float, dict]:
    out = workdir / spec.replace(":", "-")
    cmd = [sys.executable, "-m", "pipelines.cli", "eval", "--no-clearml", "--no-cache", f"dataset.path={data}",
           f"experiment.mode={mode}", f"experiment.max_samples={n}", f"experiment.output_dir={out}",
           *backend_overrides(spec)]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads((out / "results.json").read_text())


def matmul_peak(precision: str, size: int = 2048, repeats: int = 8) -> float:
    """FLOP/s of a large square matmul at `precision` (a torch dtype name), best of `repeats`."""
    import torch

    dtype = getattr(torch, precision, None)
    if not isinstance(dtype, torch.dtype):
        return 0.0
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def fixed_cost(r: dict) -> str:
    t = r["timing"]
    if "process_age_at_first_batch_seconds" not in t:
        return "no timeline recorded"
    before, first = t["process_age_at_eval_seconds"], t["process_age_at_first_batch_seconds"]
    prefill, decode = t.get("prefill_seconds", 0.0), t.get("decode_seconds", 0.0)
    rest = before + r["duration_seconds"] - first - prefill - decode  # scoring, writing the outputs
    return (f"first batch at {first:.2f} s = start, imports, config, ingest {before:.2f} + model load "
            f"{t['load_model_seconds']:.2f} + tokenize {t['tokenize_seconds']:.2f} + shared head "
            f"{t.get('shared_prefix_seconds', 0):.2f}; then prefill {prefill:.2f}, decode {decode:.2f}, "
            f"the rest of the eval {rest:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(WORKLOADS), default="no_context")
    parser.add_argument("--questions", type=int, default=0, help="default: 64 closed book, 48 oracle")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--backends", default="hf,hf:float32,llama_cpp,llama_cpp:f32")
    parser.add_argument("--skip-naive", action="store_true", help="leave out the (slow) naive HF loop")
    parser.add_argument("--skip-lm-eval", action="store_true", help="leave out lm-evaluation-harness")
    parser.add_argument("--lm-eval-runs", default="1:float32,64:float32,64:bfloat16",
                        help="lm-evaluation-harness runs as batch:dtype; batch 1 is its default, 64 our batch size")
    args = parser.parse_args()
    lm_eval_runs = [(size, dtype or "float32") for size, _, dtype in
                    (spec.partition(":") for spec in args.lm_eval_runs.split(","))]
    if not all(size.isdigit() and int(size) > 0 and dtype in ("float32", "bfloat16", "float16")
               for size, dtype in lm_eval_runs):
        parser.error(f"--lm-eval-runs: {args.lm_eval_runs!r} is not batch:dtype[,...] "
                     "(a positive batch size; float32, bfloat16 or float16)")
    data = args.data or WORKLOADS[args.mode][0]
    n = args.questions or WORKLOADS[args.mode][1]
    if not data.is_file():
        print(f"skipped: {data} not found")
        return 0
    from components.analysis.metrics import token_recall
    from components.backends.base import installed
    from components.core.config import ModelConfig
    from components.data.readers import detect_format, read_records
    from components.fleet.model_shapes import model_shape

    has_llama = installed("llama_cpp")
    specs = [s for s in args.backends.split(",") if has_llama or not s.startswith("llama_cpp")]

    golds = [r.question.answers for _, r in zip(range(n), read_records(data, detect_format(data)))]
    rows: list[tuple[str, float, float]] = []  # name, seconds, token recall
    ours: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for spec in specs:  # warm the converted-model caches and the OS file cache
            run_ours(spec, data, 4, args.mode, workdir)
        for spec in specs:
            seconds, ours[spec] = run_ours(spec, data, n, args.mode, workdir)
            rows.append((f"slm eval, {spec}" + (" (the default)" if spec == "hf" else ""), seconds,
                         ours[spec]["token_recall"]))
        baselines = {}
        if has_llama:
            baselines["simple llama.cpp"] = run_baseline(SIMPLE_LLAMA_CPP, data, n, args.mode, workdir)
        if installed("lm_eval") and not args.skip_lm_eval:
            for size, dtype in lm_eval_runs:
                baselines[f"lm-eval-harness, batch {size}, {dtype}"] = run_baseline(
                    LM_EVAL, data, n, args.mode, workdir, size, dtype)
        if not args.skip_naive:
            baselines["naive HF loop"] = run_baseline(NAIVE_LOOP, data, n, args.mode, workdir)
    for name, (seconds, predictions) in baselines.items():
        recall = sum(token_recall(p, g) for p, g in zip(predictions, golds)) / len(golds)
        rows.append((name, seconds, recall))

    print(f"eval speed, {n} questions of {data.name}, {args.mode}, embedded SmolLM2-135M, greedy, 32 new tokens, "
          f"{os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    if not installed("lm_eval"):
        print("(lm-evaluation-harness not installed: pip install -e '.[bench]' adds it)")
    header = "".join(f" | vs {b}" for b in baselines)
    print(f"| run | whole process (s) | token recall{header} |")
    print("|---|---|---|" + "---|" * len(baselines))
    for name, seconds, recall in rows:
        ratios = "".join(f" | {baselines[b][0] / seconds:.2f}x" for b in baselines)
        print(f"| {name} | {seconds:.1f} | {recall:.4f}{ratios} |")
    print("where slm eval's time went (seconds, from process start):")
    for spec in specs:
        print(f"  {spec} ({ours[spec].get('precision', '?')}): {fixed_cost(ours[spec])}")
    flop_per_token = 2 * model_shape(ModelConfig()).linear_params()
    print(f"prefill rate (tokens past the shared head; {flop_per_token / 1e6:.0f} MFLOP per token in the "
          "decoder's linear layers) against a 2048^3 matmul at the same precision, in this process:")
    peaks: dict[str, float] = {}
    for spec in specs:
        r = ours[spec]
        precision = r.get("precision", "?")
        if precision not in peaks:
            peaks[precision] = matmul_peak(precision)
        rate = r.get("prefill_tokens_per_second", 0.0) * flop_per_token
        share = (f"{rate / peaks[precision]:.0%} of {peaks[precision] / 1e9:.0f} GFLOP/s" if peaks[precision]
                 else "no torch matmul at this precision to compare with")
        print(f"  {spec}: {r.get('prefill_tokens_per_second', 0.0):.0f} tokens/s = {rate / 1e9:.0f} GFLOP/s, "
              f"{share} ({precision})")
    print(f"reproduce: .venv/bin/python bench/bench_eval.py --mode {args.mode} --questions {n} "
          f"--backends {','.join(specs)} --lm-eval-runs {args.lm_eval_runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

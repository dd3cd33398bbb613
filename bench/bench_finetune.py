"""LoRA fine-tune speed: the project's finetune stage vs two plain HF Trainer baselines on the same data.

Run: .venv/bin/python bench/bench_finetune.py [--steps 12] [--mode no_context|oracle_context] [--arms abc]
                                             [--data FILE]   (~5.5 min on the 2-core CPU, idle)

All three arms train the embedded SmolLM2-135M with the project's LoRA (r=16, alpha 32, dropout 0.05,
all-linear), batch 8, the same number of steps, seed, learning-rate schedule and batch order (the
Trainer's length-grouped sampler with the same data seed), on the same encoded examples
(`components.stages.finetune.training_examples` over the NQ oracle file ingested into a temp dir). Only the
way a batch is built differs:
  (a) seed-004 way: every example padded to max_length (256), HF DataCollatorForSeq2Seq(padding="max_length");
  (b) HF dynamic padding (DataCollatorForSeq2Seq(padding=True)) + group_by_length;
  (c) ours: `components.stages.finetune.run_finetune`, exactly as the stage runs it (eval and checkpoints at
      step 20 included; their time is not training time and is left out of every arm's rate).
Each arm runs in its own process (clean peak memory). Throughput = non-padding example tokens / seconds
of the training steps (on_step_begin..on_step_end), step 1 left out as warm-up. MFU = 4 * N * tokens/s
over the fp32 matmul peak measured here (N = base model parameters, the tied LM head counted once; 4N per
token = forward 2N + backward through activations 2N, no weight gradients for a frozen base).
`positions fed` = input positions the model actually computed per second (padding included, a shared
prompt prefix once): 4 * N * that / peak is the hardware-side utilisation.
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
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "nq_open" / "nq-open-oracle.jsonl.gz"
ARMS = {"a": "(a) pad to max_length (seed-004)", "b": "(b) HF dynamic pad + group_by_length",
        "c": "(c) ours: components.stages.finetune"}
GOALS = {"a": 5.0, "b": 1.3}  # ours >= 5x (a), >= 1.3x (b)
LOSS_TOLERANCE = 0.02
LOGGING_STEPS = 4  # the loss compared is the one logged at the last step: the mean of its last 4 steps


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def matmul_peak_gflops(n: int = 2048, reps: int = 8, rounds: int = 3) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, (time.perf_counter() - start) / reps)
    return 2 * n ** 3 / best / 1e9


# ---- one arm, in its own process ----------------------------------------------------------------------

def run_arm(arm: str, ingest_dir: Path, steps: int, mode: str, out_dir: Path) -> dict:
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback

    from components.stages.collators import IGNORE_INDEX
    from components.stages.finetune import (build_lora_model, run_finetune, training_arguments,
                                     training_examples)
    from components.core.memory import cpu_peak_mb
    from components.core.overrides import build_config

    timings: list[tuple[float, int]] = []
    extra: dict = {}

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = (time.perf_counter(), state.num_input_tokens_seen)

        def on_step_end(self, args, state, control, **kwargs):
            timings.append((time.perf_counter() - self.start[0], state.num_input_tokens_seen - self.start[1]))
            if state.global_step >= state.max_steps:
                control.should_log = True  # every arm logs its last step (ours does anyway)

        def on_train_end(self, args, state, control, model=None, **kwargs):
            # Trainer's total_flos = 6 * non-embedding params * input positions fed (padding included)
            extra["positions_fed"] = state.total_flos / (6 * model.num_parameters(exclude_embeddings=True))
            trainable, total = model.get_nb_trainable_parameters()
            extra["base_params"] = total - trainable
            extra["losses"] = [(e["step"], e["loss"]) for e in state.log_history if "loss" in e]

    overrides = [f"finetune.mode={mode}", f"finetune.max_steps={steps}", "finetune.batch_size=8", "finetune.r=16",
                 "finetune.target_modules=all-linear", "finetune.seed=0", f"finetune.logging_steps={LOGGING_STEPS}"]
    started = time.perf_counter()
    if arm == "c":
        cfg = build_config(overrides)
        results = run_finetune(cfg, ingest_dir, out_dir / "ours", callbacks=[StepTimer()], resume=False)
        extra["stage_tokens_per_second"] = results["tokens_per_second"]
    else:
        cfg = build_config(overrides + ["finetune.save_steps=100000"])
        model, lm = build_lora_model(cfg)
        train, _ = training_examples(cfg, lm.tokenizer, ingest_dir)
        padding = {"padding": "max_length", "max_length": cfg.finetune.max_length} if arm == "a" else {"padding": True}
        collator = DataCollatorForSeq2Seq(lm.tokenizer, label_pad_token_id=IGNORE_INDEX, **padding)
        args = training_arguments(cfg, out_dir / f"ckpt-{arm}", "cpu" if not torch.cuda.is_available() else "cuda",
                                  has_eval=False, report_to=[])
        args.include_num_input_tokens_seen = "non_padding"  # attention_mask.sum(): the example tokens
        Trainer(model=model, args=args, train_dataset=train, data_collator=collator,
                callbacks=[StepTimer()]).train()
    steady = timings[1:] or timings
    seconds, tokens = sum(t for t, _ in steady), sum(n for _, n in steady)
    all_tokens = sum(n for _, n in timings)
    return {"arm": arm, "steps": len(timings), "tokens_per_second": tokens / seconds,
            "step_seconds": seconds / len(steady), "tokens_per_step": all_tokens / len(timings),
            "fed_per_token": extra["positions_fed"] / all_tokens, "final_loss": extra["losses"][-1][1],
            "final_step": extra["losses"][-1][0], "losses": extra["losses"], "base_params": extra["base_params"],
            "cpu_peak_mb": cpu_peak_mb(), "gpu_peak_mb": (torch.cuda.max_memory_allocated() / 2 ** 20
                                                          if torch.cuda.is_available() else None),
            "threads": torch.get_num_threads(), "process_seconds": time.perf_counter() - started,
            "stage_tokens_per_second": extra.get("stage_tokens_per_second")}


# ---- driver -------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)  # (a) costs ~17 s a step here
    parser.add_argument("--mode", default="no_context", choices=["no_context", "oracle_context"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--arms", default="abc")
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm, write JSON to --result
    parser.add_argument("--ingest", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        result = run_arm(args.arm, args.ingest, args.steps, args.mode, args.result.parent)
        args.result.write_text(json.dumps(result))
        return 0
    if not args.data.is_file():
        print(f"skipped: {args.data} not found")
        return 0

    from components.core.config import DatasetConfig
    from components.stages.ingest import run_ingest

    wall = time.perf_counter()
    print(f"LoRA fine-tune speed, {args.mode}, SmolLM2-135M (embedded), r=16 all-linear, batch 8, "
          f"{args.steps} steps, seed 0; load average at start: {loadavg()}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        tmp = Path(tmp)
        manifest = run_ingest(DatasetConfig(path=str(args.data), test_fraction=0.2), tmp / "ingest")
        print(f"data: {args.data.name}, {manifest['num_train']} training questions "
              f"(test split {manifest['num_test']}, held-out eval for ours: first 32)")
        peak_start = matmul_peak_gflops()
        for arm in args.arms:
            result_file = tmp / f"{arm}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--arm", arm, "--ingest", str(tmp / "ingest"),
                   "--steps", str(args.steps), "--mode", args.mode, "--result", str(result_file)]
            proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if proc.returncode:
                print(f"{ARMS[arm]} failed:\n{proc.stderr[-3000:]}")
                return 1
            results[arm] = json.loads(result_file.read_text())

        peak_end = matmul_peak_gflops()  # taken twice, around the arms: a noisy neighbour lowers one of them
    import torch

    peak = max(peak_start, peak_end)
    print(f"machine peak (fp32 2048x2048 matmul, best of 3x8, {torch.get_num_threads()} threads, before/after the "
          f"arms): {peak_start:.1f} / {peak_end:.1f} GFLOP/s, using {peak:.1f}")
    n = next(iter(results.values()))["base_params"]
    print(f"\n{'arm':40} {'tok/s':>7} {'s/step':>7} {'tok/step':>8} {'fed/tok':>7} {'MFU':>6} {'HFU':>6} "
          f"{'peak MB':>8} {'loss@end':>9}")
    for arm, r in results.items():
        mfu = 4 * n * r["tokens_per_second"] / (peak * 1e9)
        hfu = mfu * r["fed_per_token"]
        print(f"{ARMS[arm]:40} {r['tokens_per_second']:7.1f} {r['step_seconds']:7.2f} {r['tokens_per_step']:8.1f} "
              f"{r['fed_per_token']:7.2f} {mfu:6.1%} {hfu:6.1%} {r['cpu_peak_mb']:8.0f} "
              f"{r['final_loss']:9.4f}")
    print(f"(tok/s: non-padding example tokens per second of training steps, step 1 left out; fed/tok: input "
          f"positions computed per example token; MFU = 4*N*tok/s / peak, HFU = 4*N*fed/s / peak, "
          f"N = {n / 1e6:.1f}M; peak MB: process peak RSS (ru_maxrss); loss@end: logged training loss at "
          f"step {next(iter(results.values()))['final_step']} = mean of the steps since the previous log, every "
          f"{LOGGING_STEPS})")
    if "c" in results and results["c"]["stage_tokens_per_second"] is not None:
        print(f"ours as the stage itself reports it (results.json tokens_per_second, all steps): "
              f"{results['c']['stage_tokens_per_second']:.1f} tok/s")
    for arm, r in results.items():
        print(f"loss curve {arm}: " + ", ".join(f"{s}:{v:.4f}" for s, v in r["losses"]))

    if "c" in results:
        ours = results["c"]
        print("\ngoals:")
        for arm, goal in GOALS.items():
            if arm not in results:
                continue
            base = results[arm]
            ratio = ours["tokens_per_second"] / base["tokens_per_second"]
            loss_diff = (ours["final_loss"] - base["final_loss"]) / base["final_loss"]
            same = abs(loss_diff) <= LOSS_TOLERANCE
            print(f"  ours vs {ARMS[arm]}: {ratio:5.2f}x (goal >= {goal}x: {'met' if ratio >= goal else 'NOT met'}); "
                  f"final loss {ours['final_loss']:.4f} vs {base['final_loss']:.4f} ({loss_diff:+.2%}, within "
                  f"{LOSS_TOLERANCE:.0%}: {'yes' if same else 'NO'})")
    print(f"\nthreads per arm: {results[next(iter(results))]['threads']}; load average at end: {loadavg()}; "
          f"whole script {time.perf_counter() - wall:.0f} s")
    print(f"reproduce: cd {REPO} && .venv/bin/python bench/bench_finetune.py --steps {args.steps} "
          f"--mode {args.mode} --data {args.data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

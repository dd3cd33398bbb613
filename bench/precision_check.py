"""Are the fast CPU defaults held to the reference? Token recall of each candidate setting on the 2,655 NQ
questions with gold passages (closed book and oracle context) against the hf backend at float32.

A candidate passes a mode when its token recall lies inside the reference's 95% bootstrap CI and the 95%
paired-bootstrap CI of (candidate - reference), over the same questions, contains 0. Candidates:
- `hf auto`: `model.dtype=auto` (bfloat16 where the CPU has native bf16, else float32);
- `llama_cpp auto`: `generation.backend=llama_cpp` with its default weights (q8_0 for the embedded Q4_1);
- more with `--settings name=override,override;...`.
Each run is `slm eval` in its own process; finished runs are kept under --out and reused (the full set
takes about an hour on 2 cores). Threads: OMP_NUM_THREADS as set (use 1 beside other work).

Run: .venv/bin/python bench/precision_check.py [--questions 2655] [--modes no_context,oracle_context]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "nq_open" / "nq-open-oracle.jsonl.gz"
REFERENCE = ("hf float32", ["generation.backend=hf", "model.dtype=float32"])
CANDIDATES = {
    "hf auto": ["generation.backend=hf", "model.dtype=auto"],
    "llama_cpp auto": ["generation.backend=llama_cpp", "generation.llama_cpp_weights=auto"],
}


def run(name: str, overrides: list[str], mode: str, n: int, out: Path) -> tuple[dict, list[dict]]:
    folder = out / f"{mode}-{n}-{name.replace(' ', '_')}"
    if not (folder / "results.json").is_file():
        cmd = [sys.executable, "-m", "pipelines.cli", "eval", "--no-clearml", "--no-cache", f"dataset.path={DATA}",
               f"experiment.mode={mode}", f"experiment.max_samples={n}", f"experiment.output_dir={folder}",
               *overrides]
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").open()]
    return json.loads((folder / "results.json").read_text()), rows


def parse_settings(text: str) -> dict[str, list[str]]:
    """`name=a.b=1,c.d=2;other=...` -> {name: [a.b=1, c.d=2], ...}."""
    settings = {}
    for item in filter(None, text.split(";")):
        name, _, overrides = item.partition("=")
        settings[name.strip()] = [o.strip() for o in overrides.split(",") if o.strip()]
    return settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=2655)
    parser.add_argument("--modes", default="no_context,oracle_context")
    parser.add_argument("--settings", default="", help="extra candidates: name=override,override;...")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "precision_check")
    parser.add_argument("--samples", type=int, default=1000, help="bootstrap resamples")
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"skipped: {DATA} not found")
        return 0
    from components.analysis.stats import mean_ci, paired_difference_ci

    candidates = {**CANDIDATES, **parse_settings(args.settings)}
    print(f"token recall on {args.questions} questions of {DATA.name} (95% bootstrap CIs, {args.samples} "
          f"resamples), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print("| mode | setting | precision | token recall | 95% CI | minus reference [paired 95% CI] | identical "
          "answers | inside the reference CI | paired CI holds 0 |")
    print("|---|---|---|---|---|---|---|---|---|")
    verdicts = []
    for mode in args.modes.split(","):
        ref_results, ref_rows = run(REFERENCE[0], REFERENCE[1], mode, args.questions, args.out)
        ref = [r["token_recall"] for r in ref_rows]
        low, high = mean_ci(ref, args.samples)
        print(f"| {mode} | {REFERENCE[0]} (reference) | {ref_results.get('precision', '?')} | "
              f"{ref_results['token_recall']:.4f} | [{low:.4f}, {high:.4f}] | | | | |", flush=True)
        for name, overrides in candidates.items():
            results, rows = run(name, overrides, mode, args.questions, args.out)
            assert [r["id"] for r in rows] == [r["id"] for r in ref_rows], "the runs answered other questions"
            recall = [r["token_recall"] for r in rows]
            d_low, d_high = paired_difference_ci(recall, ref, args.samples)
            mean = results["token_recall"]
            own_low, own_high = mean_ci(recall, args.samples)
            inside, holds_zero = low <= mean <= high, d_low <= 0 <= d_high
            same = sum(a["prediction"] == b["prediction"] for a, b in zip(rows, ref_rows))
            verdicts.append(inside and holds_zero)
            print(f"| {mode} | {name} | {results.get('precision', '?')} | {mean:.4f} | "
                  f"[{own_low:.4f}, {own_high:.4f}] | "
                  f"{mean - ref_results['token_recall']:+.4f} [{d_low:+.4f}, {d_high:+.4f}] | "
                  f"{same}/{len(rows)} | {'yes' if inside else 'NO'} | {'yes' if holds_zero else 'NO'} |", flush=True)
    print(f"every candidate held to the reference: {all(verdicts)}")
    print(f"reproduce: .venv/bin/python bench/precision_check.py --questions {args.questions} --modes {args.modes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

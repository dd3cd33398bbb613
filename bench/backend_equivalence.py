"""Do the backends answer alike? Token recall and the share of answers identical to the hf backend's.

Runs `slm eval` once per backend setting on the same questions and prompts (greedy, 32 new tokens) and
compares predictions question by question. Also recomputes recall with each backend's answers cut the
same way, so a difference can only come from the tokens a backend chose.

Run: .venv/bin/python bench/backend_equivalence.py [--questions 512] [--oracle-questions 200]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "nq_open"
SETTINGS = {  # name -> overrides
    "hf": ["generation.backend=hf"],
    "llama_cpp as_is": ["generation.backend=llama_cpp", "generation.llama_cpp_weights=as_is"],
    "llama_cpp q8_0": ["generation.backend=llama_cpp", "generation.llama_cpp_weights=q8_0"],
    "llama_cpp f32": ["generation.backend=llama_cpp", "generation.llama_cpp_weights=f32"],
}


def workloads(args) -> dict[str, list[str]]:
    return {
        "demo, no_context (42)": ["experiment.mode=no_context"],
        "demo, oracle_context (42)": ["experiment.mode=oracle_context"],
        f"NQ-open closed book ({args.questions})": [f"dataset.path={DATA / 'NQ-open.dev.jsonl'}",
                                                     f"experiment.max_samples={args.questions}"],
        f"NQ oracle context ({args.oracle_questions})": [f"dataset.path={DATA / 'nq-open-oracle.jsonl.gz'}",
                                                         "experiment.mode=oracle_context",
                                                         f"experiment.max_samples={args.oracle_questions}"],
    }


def run(overrides: list[str], out: Path) -> tuple[dict, list[dict]]:
    cmd = [sys.executable, "-m", "pipelines.cli", "eval", "--no-clearml", f"experiment.output_dir={out}",
           *overrides]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").open()]
    return json.loads((out / "results.json").read_text()), rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=512)
    parser.add_argument("--oracle-questions", type=int, default=200)
    args = parser.parse_args()
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("skipped: llama-cpp-python is not installed (pip install -e '.[cpu]')")
        return 0
    print("| workload | backend | token recall | identical to hf | recall of the differing answers (hf -> it) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for w, (workload, overrides) in enumerate(workloads(args).items()):
            if "dataset.path" in overrides[0] and not DATA.is_dir():
                print(f"| {workload} | skipped: {DATA} not found | | | |")
                continue
            reference = None
            for s, (name, setting) in enumerate(SETTINGS.items()):
                results, rows = run(overrides + setting, Path(tmp) / f"{w}-{s}")
                if reference is None:
                    reference = rows
                same = [a["prediction"] == b["prediction"] for a, b in zip(reference, rows)]
                differ = [i for i, eq in enumerate(same) if not eq]
                before = sum(reference[i]["token_recall"] for i in differ) / max(len(differ), 1)
                after = sum(rows[i]["token_recall"] for i in differ) / max(len(differ), 1)
                print(f"| {workload} | {name} | {results['token_recall']:.4f} | {sum(same)}/{len(rows)} "
                      f"({sum(same) / len(rows):.0%}) | {before:.3f} -> {after:.3f} ({len(differ)}) |", flush=True)
    print(f"reproduce: .venv/bin/python bench/backend_equivalence.py --questions {args.questions} "
          f"--oracle-questions {args.oracle_questions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

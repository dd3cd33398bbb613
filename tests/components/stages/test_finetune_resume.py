"""Which checkpoints a fine-tune started again resumes: its own run's (same config, data and code); another
run's, or its own from before a code change, are cleared so it trains afresh."""
from __future__ import annotations

from components.core.overrides import build_config
from components.stages import finetune
from components.stages.finetune import _prepare_checkpoints, run_fingerprint

TRAIN = [{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5]}]


def _checkpoint(folder):
    (folder / "checkpoint-4").mkdir(parents=True)
    (folder / "checkpoint-4" / "trainer_state.json").write_text("{}")


def test_the_same_run_resumes_and_a_code_change_trains_afresh(tmp_path, monkeypatch):
    cfg = build_config([])
    checkpoints = tmp_path / "checkpoints"
    assert not _prepare_checkpoints(checkpoints, run_fingerprint(cfg, TRAIN, []), resume=True)  # nothing yet
    _checkpoint(checkpoints)
    assert _prepare_checkpoints(checkpoints, run_fingerprint(cfg, TRAIN, []), resume=True)
    assert not _prepare_checkpoints(checkpoints, run_fingerprint(cfg, TRAIN, []), resume=False)  # asked not to
    assert not (checkpoints / "checkpoint-4").exists()

    _checkpoint(checkpoints)
    _prepare_checkpoints(checkpoints, run_fingerprint(cfg, TRAIN, []), resume=True)
    monkeypatch.setattr(finetune, "code_version", lambda entry: "a-later-checkout")  # e.g. a collator fix
    assert not _prepare_checkpoints(checkpoints, run_fingerprint(cfg, TRAIN, []), resume=True)
    assert not (checkpoints / "checkpoint-4").exists()


def test_the_fingerprint_follows_config_and_data():
    cfg = build_config([])
    base = run_fingerprint(cfg, TRAIN, [])
    assert base == run_fingerprint(build_config([]), TRAIN, [])
    assert base != run_fingerprint(build_config(["finetune.learning_rate=0.001"]), TRAIN, [])
    assert base != run_fingerprint(cfg, TRAIN[:1], []) != run_fingerprint(cfg, TRAIN, TRAIN[:1])

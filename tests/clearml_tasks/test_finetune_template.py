"""The finetune template's checkpoint kept for the next attempt (clearml_tasks/finetune.py): after each save
the newest checkpoint and the fingerprint of what it was trained on go to the tracker, in the folder layout
run_finetune resumes from; a kept folder is restored only where this disk holds no checkpoint."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from clearml_tasks._tracker import ClearMLTracker, NullTracker
from clearml_tasks.finetune import CHECKPOINT_ARTIFACT, KeepCheckpoint


class Keeping(NullTracker):
    def __init__(self):
        self.kept = []

    def keep_progress(self, name, path, metadata):
        self.kept.append((name, metadata, sorted(str(p.relative_to(path)) for p in Path(path).rglob("*"))))


def test_the_newest_checkpoint_and_its_fingerprint_are_kept_after_each_save(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for step in (3, 6):
        (checkpoints / f"checkpoint-{step}").mkdir(parents=True)
        (checkpoints / f"checkpoint-{step}" / "adapter_model.safetensors").write_text(str(step))
    (checkpoints / "fingerprint.json").write_text(json.dumps({"fingerprint": "abc"}))
    tracker = Keeping()
    callback = KeepCheckpoint(tracker, checkpoints)
    callback.on_save(None, SimpleNamespace(global_step=6), None)
    callback.on_save(None, SimpleNamespace(global_step=9), None)  # no such folder: nothing to keep
    assert tracker.kept == [(CHECKPOINT_ARTIFACT, {"global_step": 6},
                             ["checkpoint-6", "checkpoint-6/adapter_model.safetensors", "fingerprint.json"])]


def test_a_kept_checkpoint_folder_is_restored_only_where_none_is(tmp_path, monkeypatch):
    kept = tmp_path / "downloaded" / "checkpoints"
    (kept / "checkpoint-6").mkdir(parents=True)
    (kept / "fingerprint.json").write_text("{}")
    tracker = ClearMLTracker.__new__(ClearMLTracker)
    tracker.session_dir = None
    tracker.task = SimpleNamespace(running_locally=lambda: False,
                                   artifacts={CHECKPOINT_ARTIFACT: SimpleNamespace(get_local_copy=lambda: str(kept),
                                                                                   url="http://files/x")})
    target = tmp_path / "out" / "checkpoints"
    target.mkdir(parents=True)
    (target / "fingerprint.json").write_text("{}")  # written by an attempt that died before its first save
    assert tracker.restore_progress(CHECKPOINT_ARTIFACT, target)
    assert (target / "checkpoint-6").is_dir()
    assert not tracker.restore_progress(CHECKPOINT_ARTIFACT, target)  # this disk has one now

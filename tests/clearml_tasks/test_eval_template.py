"""The eval template's progress (clearml_tasks/eval.py): a point per finished batch, the batches a resumed run
reused included (the attempt that did them may have died before its reports left), the partial file kept
after each new batch, an earlier attempt's restored first, and dropped once the eval completed."""
from __future__ import annotations

from pathlib import Path

from clearml_tasks import eval as eval_template
from clearml_tasks._tracker import NullTracker


class Recorder(NullTracker):
    def __init__(self, restored: bool):
        self.restored, self.calls = restored, []

    def restore_progress(self, name, path):
        self.calls.append(("restore", name))
        return self.restored

    def report_scalar(self, title, series, value, iteration):
        self.calls.append(("scalar", iteration))

    def keep_progress(self, name, path, metadata):
        self.calls.append(("keep", metadata["batches_done"]))

    def drop_progress(self, name):
        self.calls.append(("drop", name))


def test_a_resumed_eval_reports_every_batch_and_keeps_only_new_ones(monkeypatch, tmp_path, capsys):
    def resumed_run(cfg, mode, ingest, index, output_dir, progress=None, keep_progress=None):
        for done in (5, 6):  # batches 1-4 reused from the partial file, 5 and 6 generated
            keep_progress(Path(output_dir) / "predictions.partial.jsonl", done, 6)
        return {"resumed_batches": 4, "num_batches": 6}

    monkeypatch.setattr(eval_template, "run_eval", resumed_run)
    monkeypatch.setattr(eval_template, "report_eval", lambda results, output_dir, tracker: results)
    tracker = Recorder(restored=True)
    from components.core.config import AppConfig

    eval_template.body(AppConfig(), {"ingest": tmp_path}, tmp_path, tracker)
    assert tracker.calls == [("restore", "predictions.partial"), *[("scalar", i) for i in range(1, 6)],
                             ("keep", 5), ("scalar", 6), ("keep", 6), ("drop", "predictions.partial")]
    out = capsys.readouterr().out
    assert "found predictions.partial.jsonl of an earlier attempt" in out
    assert "resumed: reused 4 of 6 batches from predictions.partial.jsonl" in out

"""The resume log of a long generation run: `predictions.partial.jsonl`, a header with the run's
fingerprint, then one line per finished batch, appended and fsynced as it finishes.

A run started again with the same fingerprint skips the batches the log holds (a line torn by a kill
and everything after it are redone); under another fingerprint the log starts over. The final outputs
are written elsewhere, by rename, when the run completes, and the log is then deleted.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from components.core.fileio import write_jsonl

PARTIAL_FILE = "predictions.partial.jsonl"


def read_finished(path: Path, fingerprint: str) -> dict[int, list[dict]]:
    """Finished batches (batch index -> rows) of an earlier run with the same fingerprint."""
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        return {}
    if header.get("plan") != fingerprint:
        return {}
    done: dict[int, list[dict]] = {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            break  # a batch cut short by a kill: it and anything after it is redone
        done[entry["batch"]] = entry["rows"]
    return done


class ResumeLog:
    """`with ResumeLog(path, fingerprint, num_batches) as log:` — `log.done` holds what an earlier run
    finished; `log.append(b, rows)` records batch b durably."""

    def __init__(self, path: Path, fingerprint: str, num_batches: int):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.num_batches = num_batches
        self.done = read_finished(self.path, fingerprint)
        self._file = None

    def __enter__(self) -> "ResumeLog":
        # Rewritten as header + intact finished batches (dropping a torn tail), then opened to append.
        entries = [{"plan": self.fingerprint, "num_batches": self.num_batches}] + [
            {"batch": b, "rows": rows} for b, rows in sorted(self.done.items())]
        write_jsonl(self.path, entries)
        self._file = open(self.path, "a", encoding="utf-8")
        return self

    def append(self, batch: int, rows: list[dict]) -> None:
        self._file.write(json.dumps({"batch": batch, "rows": rows}, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def __exit__(self, *exc) -> None:
        self._file.close()

    def remove(self) -> None:
        """The run completed: its final outputs replace the log."""
        self.path.unlink(missing_ok=True)

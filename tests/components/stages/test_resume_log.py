"""The resume log: a header with the run's fingerprint, one durable line per finished batch; reused only
under the same fingerprint, a torn tail dropped, removed once the run completes."""
from __future__ import annotations

import json

from components.stages.resume_log import PARTIAL_FILE, ResumeLog, read_finished

ROWS = {0: [{"id": "q1", "prediction": "Paris"}], 1: [{"id": "q2", "prediction": "Tokyo"}, {"id": "q3"}]}


def write_run(path, fingerprint="plan-a", batches=(0, 1), num_batches=3) -> None:
    with ResumeLog(path, fingerprint, num_batches) as log:
        assert log.done == {}
        for b in batches:
            log.append(b, ROWS[b])


def test_a_run_writes_header_then_one_line_per_batch(tmp_path):
    path = tmp_path / PARTIAL_FILE
    write_run(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"plan": "plan-a", "num_batches": 3}
    assert [json.loads(line) for line in lines[1:]] == [{"batch": 0, "rows": ROWS[0]}, {"batch": 1, "rows": ROWS[1]}]
    assert read_finished(path, "plan-a") == ROWS


def test_a_restart_with_the_same_fingerprint_keeps_and_extends_the_log(tmp_path):
    path = tmp_path / PARTIAL_FILE
    write_run(path, batches=(0,))
    with ResumeLog(path, "plan-a", 3) as log:
        assert log.done == {0: ROWS[0]}
        log.append(1, ROWS[1])
    assert read_finished(path, "plan-a") == ROWS


def test_another_fingerprint_starts_over(tmp_path):
    path = tmp_path / PARTIAL_FILE
    write_run(path)
    assert read_finished(path, "plan-b") == {}
    with ResumeLog(path, "plan-b", 2) as log:
        assert log.done == {}
    assert path.read_text(encoding="utf-8").splitlines() == [json.dumps({"plan": "plan-b", "num_batches": 2})]


def test_a_torn_line_and_everything_after_it_are_dropped(tmp_path):
    path = tmp_path / PARTIAL_FILE
    write_run(path, batches=(0,))
    intact = path.read_text(encoding="utf-8")
    path.write_text(intact + '{"batch": 1, "ro' + "\n" + json.dumps({"batch": 2, "rows": []}) + "\n")
    assert read_finished(path, "plan-a") == {0: ROWS[0]}
    with ResumeLog(path, "plan-a", 3):
        pass
    assert path.read_text(encoding="utf-8") == intact  # rewritten without the torn tail


def test_missing_or_unreadable_logs_hold_nothing(tmp_path):
    assert read_finished(tmp_path / "none.jsonl", "plan-a") == {}
    path = tmp_path / PARTIAL_FILE
    path.write_text("not json\n" + json.dumps({"batch": 0, "rows": ROWS[0]}) + "\n")
    assert read_finished(path, "plan-a") == {}


def test_each_append_is_on_disk_before_the_next_batch(tmp_path):
    path = tmp_path / PARTIAL_FILE
    with ResumeLog(path, "plan-a", 3) as log:
        log.append(0, ROWS[0])
        assert read_finished(path, "plan-a") == {0: ROWS[0]}  # readable while the run goes on


def test_remove_deletes_the_log_and_tolerates_its_absence(tmp_path):
    path = tmp_path / PARTIAL_FILE
    write_run(path)
    log = ResumeLog(path, "plan-a", 3)
    assert log.done == ROWS
    log.remove()
    assert not path.exists()
    log.remove()

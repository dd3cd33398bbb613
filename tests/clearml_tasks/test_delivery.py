"""Nothing reported is lost to an unreachable server (clearml_tasks/_delivery.py): what the server lacks of
what a stage reported is found and named, and uploads are retried with backoff for a bounded time."""
from __future__ import annotations

import pytest

from clearml_tasks._delivery import Sent, describe, missing, patiently


def test_what_the_server_lacks_is_found_by_title_series_and_iteration():
    sent = Sent(scalars={("progress", "batches_done", 1): 1, ("progress", "batches_done", 2): 2,
                         ("loss", "train", 5): 0.3},
                single_values={"token_recall": 0.5, "num_examples": 16},
                tables={("Final Metrics", "Summary"): [["metric", "value"]]})
    server_scalars = {"progress": {"batches_done": {"x": [1.0], "y": [1.0]}}}
    gap = missing(sent, server_scalars, {"token_recall": 0.5}, [{"metric": "Other", "variant": "Summary"}])
    assert set(gap.scalars) == {("progress", "batches_done", 2), ("loss", "train", 5)}
    assert gap.single_values == {"num_examples": 16} and set(gap.tables) == {("Final Metrics", "Summary")}
    assert describe(gap) == "2 scalar points; single values num_examples; tables Final Metrics"
    everything = missing(sent, {"progress": {"batches_done": {"x": [1, 2]}}, "loss": {"train": {"x": [5]}}},
                         {"token_recall": 0.5, "num_examples": 16}, [{"metric": "Final Metrics", "variant": "Summary"}])
    assert not everything and describe(everything) == ""


def test_an_upload_is_retried_with_backoff_until_it_works():
    clock, waits, tries = [0.0], [], iter([ConnectionError("refused"), False, ConnectionError("reset"), "ok"])

    def upload():
        outcome = next(tries)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def sleep(s):
        waits.append(s)
        clock[0] += s

    assert patiently(upload, "uploading artifact 'output'", 600, sleep, lambda: clock[0]) == "ok"
    assert waits == [5.0, 10.0, 20.0]


def test_an_upload_that_never_works_fails_after_the_patience_with_its_error():
    clock, waits = [0.0], []

    def sleep(s):
        waits.append(s)
        clock[0] += s

    def refused():
        raise ConnectionError("connection refused")

    with pytest.raises(ConnectionError, match="refused"):
        patiently(refused, "uploading", 600, sleep, lambda: clock[0])
    assert sum(waits) <= 600 and waits[:5] == [5.0, 10.0, 20.0, 40.0, 60.0] and max(waits) == 60.0

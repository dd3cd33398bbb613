"""Nothing a stage reports is lost when the server is out of reach for a while.

What the ClearML SDK (2.1.12) does when the API or file server does not answer:
- metrics, tables, console lines: queued and sent by a reporter thread whose HTTP session retries a refused
  connection for hours, so a short outage only delays them; but a request cut in flight is not retried,
  and its batch is dropped with a log line (`send(..., raise_on_errors=False)`).
- an artifact with `wait_on_upload=True`: 3 attempts in a row, then an exception; a minute without the
  file server loses it.

So the tracker (clearml_tasks._tracker) records what it reported (`Sent`), and before closing the task
compares it with what the server holds and sends what is missing again (`missing`); uploads are retried
with backoff for `UPLOAD_PATIENCE_S` (`patiently`). Both loops are bounded: after them the stage fails,
naming what did not arrive, rather than completing without it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

UPLOAD_PATIENCE_S = 600.0  # 10 min of retries: a restarted or briefly unreachable server is back by then
RESEND_ROUNDS = 3

T = TypeVar("T")
log = logging.getLogger(__name__)


def patiently(action: Callable[[], T], what: str, patience_s: float = UPLOAD_PATIENCE_S,
              sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> T:
    """`action()` until it returns something other than False without raising, waiting 5, 10, 20, 40, 60,
    60 ... s between tries for up to `patience_s`; then the last error is raised."""
    deadline, wait = clock() + patience_s, 5.0
    while True:
        try:
            result = action()
            if result is not False:
                return result
            error: Exception = RuntimeError(f"{what}: the upload reported failure")
        except Exception as e:  # a refused connection, a reset, a 5xx: all worth another try
            error = e
        if clock() + wait > deadline:
            raise error
        log.warning("%s failed (%s); trying again in %.0f s", what, error, wait)
        sleep(wait)
        wait = min(wait * 2, 60.0)


@dataclass
class Sent:
    """What a stage reported: scalars by (title, series, iteration), single values, tables by (title, series)."""
    scalars: dict[tuple[str, str, int], float] = field(default_factory=dict)
    single_values: dict[str, float] = field(default_factory=dict)
    tables: dict[tuple[str, str], list] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.scalars or self.single_values or self.tables)


def missing(sent: Sent, scalars: dict, single_values: dict, plots: list[dict]) -> Sent:
    """What `sent` holds that the server's answers do not: `scalars` as `Task.get_reported_scalars()`
    ({title: {series: {"x": [...], "y": [...]}}}), `single_values` as `get_reported_single_values()`,
    `plots` as `get_reported_plots()` (a table is a plot event with its title as metric, series as variant)."""
    seen_plots = {(p.get("metric"), p.get("variant")) for p in plots}
    return Sent(
        scalars={key: value for key, value in sent.scalars.items()
                 if key[2] not in set((scalars.get(key[0], {}).get(key[1]) or {}).get("x") or [])},
        single_values={name: value for name, value in sent.single_values.items() if name not in single_values},
        tables={key: table for key, table in sent.tables.items() if key not in seen_plots})


def describe(gap: Sent) -> str:
    parts = [f"{len(gap.scalars)} scalar points" if gap.scalars else "",
             f"single values {', '.join(sorted(gap.single_values))}" if gap.single_values else "",
             f"tables {', '.join(t for t, _ in gap.tables)}" if gap.tables else ""]
    return "; ".join(p for p in parts if p)

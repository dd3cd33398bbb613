"""Each MemoryLog reports its own step's peak: a spike before the log started is not in it, one during it is."""
from __future__ import annotations

import sys

import pytest

from components.core.memory import MemoryLog

SPIKE_MB = 160


def _spike() -> None:
    buffer = b"x" * (SPIKE_MB * 1024 * 1024)  # written, so every page is resident
    del buffer


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the peak reset is Linux's clear_refs")
def test_a_log_reports_the_peak_of_its_own_step():
    first = MemoryLog()
    baseline = first.peak_usage()["cpu_ram_used_mb"]
    _spike()  # the first step's spike
    assert first.own_peak and first.peak_usage()["cpu_ram_scope"] == "step"
    assert first.peak_usage()["cpu_ram_used_mb"] >= baseline + SPIKE_MB * 0.9
    second = MemoryLog()  # the next step in the same process starts afresh
    assert second.peak_usage()["cpu_ram_used_mb"] < baseline + SPIKE_MB * 0.5
    _spike()
    assert second.peak_usage()["cpu_ram_used_mb"] >= baseline + SPIKE_MB * 0.9

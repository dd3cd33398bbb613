"""Memory figures: each MemoryLog reports its own step's peak (a spike before the log started is not in it,
one during it is); the child processes a backend keeps the model in (vLLM's engine and workers) count, a
real child holding ~200 MB showing in the snapshot while it lives and in the peak after it ends; and on a
machine without a GPU there are no energy figures at all."""
from __future__ import annotations

import mmap
import subprocess
import sys

import pytest

from components.core.memory import MemoryLog

HOLD_MB = 200
SPIKE_MB = 160
CHILD = f"import sys; b = bytearray({HOLD_MB} * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); " \
        "print('ready', flush=True); sys.stdin.read()"


def test_child_processes_count_in_the_snapshot_and_in_the_peak():
    log = MemoryLog()
    alone = log.record("alone")
    assert alone["cpu_ram_children_mb"] == 0.0
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"  # its pages are touched: resident
        holding = log.record("child holds the model")
        assert holding["cpu_ram_children_mb"] >= HOLD_MB
        assert holding["cpu_ram_used_mb"] < alone["cpu_ram_used_mb"] + HOLD_MB / 2, "the own RSS stays the own"
    finally:
        child.communicate("")
    peak = log.peak_usage()  # the child has ended: its high-water mark stays in the peak
    assert peak["cpu_ram_children_mb"] >= HOLD_MB
    assert peak["cpu_ram_used_mb"] >= alone["cpu_ram_peak_mb"] + HOLD_MB
    assert log.to_dict()["detailed_log"][1]["operation"] == "child holds the model"


def _spike() -> None:
    """A fresh anonymous mapping, every page written, then unmapped. Not a Python object: malloc may hand a
    large buffer back from pages already resident (a long test process's heap), which would raise no peak."""
    size = SPIKE_MB * 1024 * 1024
    with mmap.mmap(-1, size) as pages:
        for offset in range(0, size, mmap.PAGESIZE):
            pages[offset] = 1


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


def test_no_gpu_means_no_energy_figures():
    log = MemoryLog()
    log.record("work")
    assert log.energy() == {} and "energy" not in log.to_dict()

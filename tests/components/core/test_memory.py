"""Memory figures count the child processes a backend keeps the model in (vLLM's engine and workers): a
real child process holding ~200 MB shows in the snapshot while it lives and in the peak after it ends."""
from __future__ import annotations

import subprocess
import sys

from components.core.memory import MemoryLog

HOLD_MB = 200
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

"""GPU energy of one step: NVML's total-energy counter (millijoules since the driver loaded; Volta and
newer) read when the step starts and when it ends, per GPU the step can see; where a GPU does not support
the counter, its power draw (milliwatts) sampled by a background thread and integrated over time, and
the result says which. No GPU (or no NVML): no figures at all, never zeros.

The GPUs a step uses are those visible to it: CUDA_VISIBLE_DEVICES when set, else every NVML device (in a
container started with `--gpus device=N` that is one GPU, index 0)."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

SAMPLE_SECONDS = 0.5


def visible_indices(nvml, count: int) -> list[int]:
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return list(range(count))
    return [int(i) for i in listed.split(",") if i.strip().isdigit() and int(i) < count]


@dataclass
class _Gpu:
    index: int
    handle: Any
    counter_start_mj: int | None  # None: the counter is unsupported here
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds, watts)


class GpuEnergy:
    """`start()` at the beginning of the step's work, `stop()` at its end -> the figures (or {})."""

    def __init__(self, nvml: Any = None, sample_seconds: float = SAMPLE_SECONDS):
        self._nvml = nvml
        self._sample_seconds = sample_seconds
        self._gpus: list[_Gpu] = []
        self._started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "GpuEnergy":
        nvml = self._nvml
        try:
            if nvml is None:
                import pynvml as nvml
            nvml.nvmlInit()
            indices = visible_indices(nvml, nvml.nvmlDeviceGetCount())
        except Exception:  # no driver, no library: a machine without a GPU
            return self
        self._nvml = nvml
        for i in indices:
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            try:
                start = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            except Exception:  # NVMLError_NotSupported on pre-Volta GPUs and some vGPUs
                start = None
            self._gpus.append(_Gpu(i, handle, start))
        self._started = time.monotonic()
        if any(g.counter_start_mj is None for g in self._gpus):
            self._thread = threading.Thread(target=self._sample, daemon=True, name="gpu-power")
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self._sample_seconds):
            self._read_power()

    def _read_power(self) -> None:
        now = time.monotonic() - self._started
        for gpu in self._gpus:
            if gpu.counter_start_mj is None:
                try:
                    gpu.samples.append((now, self._nvml.nvmlDeviceGetPowerUsage(gpu.handle) / 1000.0))
                except Exception:
                    pass

    def stop(self) -> dict:
        """gpu_energy_joules and gpu_mean_power_watts (all visible GPUs together), their source, and the
        same per GPU; {} without a GPU."""
        if not self._gpus:
            return {}
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
            self._read_power()
        seconds = max(time.monotonic() - self._started, 1e-9)
        per_gpu = []
        for gpu in self._gpus:
            if gpu.counter_start_mj is not None:
                joules = (int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle)) - gpu.counter_start_mj) / 1000
                source = "energy_counter"
            else:
                joules = _integrate(gpu.samples)
                source = "sampled_power"
            per_gpu.append({"gpu": gpu.index, "energy_joules": round(joules, 3),
                            "mean_power_watts": round(joules / seconds, 3), "source": source})
        total = sum(g["energy_joules"] for g in per_gpu)
        sources = sorted({g["source"] for g in per_gpu})
        return {"gpu_energy_joules": round(total, 3), "gpu_mean_power_watts": round(total / seconds, 3),
                "gpu_energy_source": "+".join(sources), "gpu_energy_per_gpu": per_gpu}


def _integrate(samples: list[tuple[float, float]]) -> float:
    """Trapezoid rule over (seconds, watts) samples; a single sample counts for nothing."""
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(samples, samples[1:]))

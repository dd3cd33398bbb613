"""Memory per operation: CPU RSS (psutil), torch.cuda allocator figures and the device total (pynvml).

`memory_usage.json` = {"detailed_log": [one snapshot per operation], "peak_usage": {...}, and on a GPU
"energy": {...}}. The CPU peak is the process's high-water mark, so a spike between two snapshots is not
missed. A MemoryLog resets that mark when it starts (Linux: `/proc/self/clear_refs`; CUDA: the
allocator's peak), so when several steps share a process (`slm run`) each reports its own peak, not the
largest of every step before it; `peak_usage["cpu_ram_scope"]` says which one a figure is ("step", or
"process" where no reset was possible). The energy counter starts with the log (components.core.energy).

A backend may hold the model in child processes (vLLM's engine and worker processes hold the weights and
the KV cache): their memory is counted too, as `cpu_ram_children_mb` / `gpu_ram_children_mb` in each
snapshot and inside the peaks (`cpu_ram_used_mb` = this process's peak + the children's high-water marks).
"""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from components.core.energy import GpuEnergy

MB = 1024 * 1024


def _cpu_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MB


def cpu_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _children():
    import psutil

    return psutil.Process().children(recursive=True)


def _high_water_mb(process) -> float:
    """A process's peak RSS: VmHWM on Linux, else its RSS now."""
    try:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return process.memory_info().rss / MB


def children_cpu_mb() -> tuple[float, float]:
    """(RSS now, sum of high-water marks) of this process's child processes, in MB (0, 0 without any)."""
    import psutil

    now = peak = 0.0
    for child in _children():
        try:
            now += child.memory_info().rss / MB
            peak += _high_water_mb(child)
        except psutil.Error:  # it ended between listing and reading
            continue
    return now, peak


def reset_peaks() -> bool:
    """Start the process's CPU (and CUDA) memory high-water marks afresh; False where the OS cannot."""
    if _cuda_ready():
        import torch

        torch.cuda.reset_peak_memory_stats()
    try:
        with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak RSS (Linux 4.0+)
            f.write("5")
        return True
    except OSError:
        return False


def _cuda_ready() -> bool:
    torch = sys.modules.get("torch")  # never import torch just to learn there is no GPU
    return bool(torch is not None and torch.cuda.is_available())


def gpu_snapshot() -> dict[str, float]:
    """GPU figures in MB (zeros without a GPU): allocated, peak allocated, reserved, device used (NVML), and
    what child processes hold on the device (NVML)."""
    if not _cuda_ready():
        return {"gpu_ram_used_mb": 0.0, "gpu_ram_peak_mb": 0.0, "reserved_gpu_ram_mb": 0.0,
                "gpu_device_used_mb": 0.0, "gpu_ram_children_mb": 0.0}
    import torch

    return {"gpu_ram_used_mb": torch.cuda.memory_allocated() / MB,
            "gpu_ram_peak_mb": torch.cuda.max_memory_allocated() / MB,
            "reserved_gpu_ram_mb": torch.cuda.memory_reserved() / MB,
            "gpu_device_used_mb": _nvml_used_mb(), "gpu_ram_children_mb": _nvml_children_mb()}


def _nvml_handle():
    import pynvml
    import torch

    pynvml.nvmlInit()
    return pynvml, pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())


def _nvml_used_mb() -> float:
    try:
        pynvml, handle = _nvml_handle()
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / MB
    except Exception:  # NVML missing in a container is not worth failing a run for
        return 0.0


def _nvml_children_mb() -> float:
    """Device memory of this process's children as NVML sees it (0 where NVML cannot tell: in a container
    NVML may list host process ids, or none)."""
    try:
        pids = {child.pid for child in _children()}
        if not pids:
            return 0.0
        pynvml, handle = _nvml_handle()
        return sum((p.usedGpuMemory or 0) for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                   if p.pid in pids) / MB
    except Exception:
        return 0.0


@dataclass
class MemoryLog:
    started: float = field(default_factory=time.perf_counter)
    detailed_log: list[dict] = field(default_factory=list)
    own_peak: bool = field(default_factory=reset_peaks)  # the marks were reset when this log started
    children_peak_mb: float = 0.0  # the largest sum of child processes' high-water marks seen
    gpu_children_peak_mb: float = 0.0
    gpu_energy: GpuEnergy = field(default_factory=lambda: GpuEnergy().start())  # from the step's start
    _energy: dict | None = None

    def record(self, operation: str) -> dict:
        children_now, children_peak = children_cpu_mb()
        gpu = gpu_snapshot()
        self.children_peak_mb = max(self.children_peak_mb, children_peak)
        self.gpu_children_peak_mb = max(self.gpu_children_peak_mb, gpu["gpu_ram_children_mb"])
        entry = {"operation": operation, "elapsed_seconds": round(time.perf_counter() - self.started, 3),
                 "cpu_ram_used_mb": round(_cpu_rss_mb(), 1), "cpu_ram_peak_mb": round(cpu_peak_mb(), 1),
                 "cpu_ram_children_mb": round(children_now, 1),
                 **{k: round(v, 1) for k, v in gpu.items()}}
        self.detailed_log.append(entry)
        return entry

    def peak_usage(self) -> dict[str, float]:
        gpu = gpu_snapshot()
        self.children_peak_mb = max(self.children_peak_mb, children_cpu_mb()[1])
        self.gpu_children_peak_mb = max(self.gpu_children_peak_mb, gpu["gpu_ram_children_mb"])
        logged = self.detailed_log or [{}]
        # ru_maxrss and psutil's rss are sampled differently; the peak is at least any snapshot taken.
        own_peak = max([cpu_peak_mb()] + [e.get("cpu_ram_used_mb", 0.0) for e in logged])
        gpu_children = self.gpu_children_peak_mb
        return {"cpu_ram_used_mb": round(own_peak + self.children_peak_mb, 1),
                "cpu_ram_children_mb": round(self.children_peak_mb, 1),
                "gpu_ram_used_mb": round(max([e.get("gpu_ram_used_mb", 0.0) for e in logged]
                                             + [gpu["gpu_ram_used_mb"]]) + gpu_children, 1),
                "gpu_ram_peak_mb": round(gpu["gpu_ram_peak_mb"] + gpu_children, 1),
                "reserved_gpu_ram_mb": round(max([e.get("reserved_gpu_ram_mb", 0.0) for e in logged]
                                                 + [gpu["reserved_gpu_ram_mb"]]), 1),
                "gpu_ram_children_mb": round(gpu_children, 1),
                "cpu_ram_scope": "step" if self.own_peak else "process"}

    def energy(self) -> dict:
        """The step's GPU energy and mean power (components.core.energy), read once at its end; {} without
        a GPU."""
        if self._energy is None:
            self._energy = self.gpu_energy.stop()
        return self._energy

    def to_dict(self) -> dict:
        energy = self.energy()
        return {"detailed_log": self.detailed_log, "peak_usage": self.peak_usage(),
                **({"energy": energy} if energy else {})}

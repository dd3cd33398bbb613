"""Memory per operation: CPU RSS (psutil), torch.cuda allocator figures and the device total (pynvml).

`memory_usage.json` = {"detailed_log": [one snapshot per operation], "peak_usage": {...}}. The CPU peak
is the process's high-water mark, so a spike between two snapshots is not missed. A MemoryLog resets that
mark when it starts (Linux: `/proc/self/clear_refs`; CUDA: the allocator's peak), so when several steps
share a process (`slm run`) each reports its own peak, not the largest of every step before it;
`peak_usage["cpu_ram_scope"]` says which one a figure is ("step", or "process" where no reset was possible).
"""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field

MB = 1024 * 1024


def _cpu_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MB


def cpu_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


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
    """GPU figures in MB (zeros without a GPU): allocated, peak allocated, reserved, device used (NVML)."""
    if not _cuda_ready():
        return {"gpu_ram_used_mb": 0.0, "gpu_ram_peak_mb": 0.0, "reserved_gpu_ram_mb": 0.0,
                "gpu_device_used_mb": 0.0}
    import torch

    return {"gpu_ram_used_mb": torch.cuda.memory_allocated() / MB,
            "gpu_ram_peak_mb": torch.cuda.max_memory_allocated() / MB,
            "reserved_gpu_ram_mb": torch.cuda.memory_reserved() / MB,
            "gpu_device_used_mb": _nvml_used_mb()}


def _nvml_used_mb() -> float:
    try:
        import pynvml

        pynvml.nvmlInit()
        import torch

        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / MB
    except Exception:  # NVML missing in a container is not worth failing a run for
        return 0.0


@dataclass
class MemoryLog:
    started: float = field(default_factory=time.perf_counter)
    detailed_log: list[dict] = field(default_factory=list)
    own_peak: bool = field(default_factory=reset_peaks)  # the marks were reset when this log started

    def record(self, operation: str) -> dict:
        entry = {"operation": operation, "elapsed_seconds": round(time.perf_counter() - self.started, 3),
                 "cpu_ram_used_mb": round(_cpu_rss_mb(), 1), "cpu_ram_peak_mb": round(cpu_peak_mb(), 1),
                 **{k: round(v, 1) for k, v in gpu_snapshot().items()}}
        self.detailed_log.append(entry)
        return entry

    def peak_usage(self) -> dict[str, float]:
        gpu = gpu_snapshot()
        logged = self.detailed_log or [{}]
        # ru_maxrss and psutil's rss are sampled differently; the peak is at least any snapshot taken.
        cpu_peak = max([cpu_peak_mb()] + [e.get("cpu_ram_used_mb", 0.0) for e in logged])
        return {"cpu_ram_used_mb": round(cpu_peak, 1),
                "gpu_ram_used_mb": round(max([e.get("gpu_ram_used_mb", 0.0) for e in logged]
                                             + [gpu["gpu_ram_used_mb"]]), 1),
                "gpu_ram_peak_mb": round(gpu["gpu_ram_peak_mb"], 1),
                "reserved_gpu_ram_mb": round(max([e.get("reserved_gpu_ram_mb", 0.0) for e in logged]
                                                 + [gpu["reserved_gpu_ram_mb"]]), 1),
                "cpu_ram_scope": "step" if self.own_peak else "process"}

    def to_dict(self) -> dict:
        return {"detailed_log": self.detailed_log, "peak_usage": self.peak_usage()}

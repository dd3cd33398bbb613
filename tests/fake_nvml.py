"""A stand-in for the pynvml module: GPUs with a name, total memory, an optional MIG layout, an energy
counter (millijoules) that may be unsupported, and a power draw (milliwatts)."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

GIB = 1024 ** 3


class NVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    name: str
    memory_gib: float
    mig_gib: list[float] = field(default_factory=list)  # MIG devices; empty: MIG off
    energy_mj: int | None = 0  # None: the counter is not supported
    power_mw: int = 100_000


class FakeNvml:
    NVML_DEVICE_MIG_ENABLE = 1
    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu], missing: bool = False):
        self.gpus, self.missing, self.shutdowns = gpus, missing, 0

    def nvmlInit(self):
        if self.missing:
            raise NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.gpus[i]

    def nvmlDeviceGetName(self, handle):
        return handle.name.encode()

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(total=int(handle.memory_gib * GIB))

    def nvmlDeviceGetMigMode(self, handle):
        return (1 if handle.mig_gib else 0, 0)

    def nvmlDeviceGetMaxMigDeviceCount(self, handle):
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle, m):
        if m >= len(handle.mig_gib):
            raise NVMLError("Not Found")
        return FakeGpu(f"{handle.name} MIG", handle.mig_gib[m])

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if handle.energy_mj is None:
            raise NVMLError("Not Supported")
        return handle.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle):
        return handle.power_mw

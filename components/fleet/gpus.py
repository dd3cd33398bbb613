"""This host's GPUs as NVML reports them (nvidia-ml-py): what `slm fleet agents` turns into one agent per
GPU. A GPU in MIG mode is listed as its MIG devices, each an agent of its own (clearml-agent's
`--gpus <gpu>.<mig>`)."""
from __future__ import annotations

from dataclasses import dataclass

from components.core.errors import UserError

GIB = 1024 ** 3


@dataclass(frozen=True)
class Gpu:
    index: str  # "0", or "0.1" for MIG device 1 of GPU 0 (clearml-agent's --gpus syntax)
    name: str
    memory_gb: float  # GiB, as nvidia-smi reports (MiB / 1024)
    mig: bool = False


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_gpus(nvml=None) -> list[Gpu]:
    """Every GPU (or MIG device) of this host; `nvml` is the pynvml module (a fake in tests)."""
    if nvml is None:
        import pynvml as nvml
    try:
        nvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound / DriverNotLoaded: no NVIDIA driver here
        raise UserError(f"no NVIDIA GPU is visible here (NVML: {e}); run `slm fleet agents` on the GPU host") from None
    gpus: list[Gpu] = []
    try:
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            name = _text(nvml.nvmlDeviceGetName(handle))
            try:
                mig_on = nvml.nvmlDeviceGetMigMode(handle)[0] == nvml.NVML_DEVICE_MIG_ENABLE
            except nvml.NVMLError:  # not a MIG-capable GPU
                mig_on = False
            if not mig_on:
                gpus.append(Gpu(str(i), name, nvml.nvmlDeviceGetMemoryInfo(handle).total / GIB))
                continue
            for m in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
                try:
                    mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, m)
                except nvml.NVMLError:  # an empty slot
                    continue
                gpus.append(Gpu(f"{i}.{m}", f"{name} MIG", nvml.nvmlDeviceGetMemoryInfo(mig).total / GIB, True))
    finally:
        nvml.nvmlShutdown()
    return gpus

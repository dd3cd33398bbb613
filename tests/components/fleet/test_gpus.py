"""This host's GPUs through NVML (a fake pynvml): memory in GiB, MIG devices listed as agents of their own,
and one line where no driver is present."""
from __future__ import annotations

import pytest

from components.core.errors import UserError
from components.fleet.gpus import Gpu, read_gpus
from fake_nvml import FakeGpu, FakeNvml


def test_gpus_and_mig_devices_are_listed_with_their_memory():
    nvml = FakeNvml([FakeGpu("NVIDIA H100 80GB HBM3", 79.6), FakeGpu("NVIDIA A100 80GB", 80.0, mig_gib=[19.5, 9.75])])
    assert read_gpus(nvml) == [Gpu("0", "NVIDIA H100 80GB HBM3", pytest.approx(79.6)),
                               Gpu("1.0", "NVIDIA A100 80GB MIG", pytest.approx(19.5), True),
                               Gpu("1.1", "NVIDIA A100 80GB MIG", pytest.approx(9.75), True)]
    assert nvml.shutdowns == 1


def test_no_driver_is_one_line():
    with pytest.raises(UserError, match="no NVIDIA GPU is visible here"):
        read_gpus(FakeNvml([], missing=True))

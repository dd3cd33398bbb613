"""GPU energy of a step from NVML (a fake pynvml): the energy counter's difference, sampled power where the
counter is unsupported (and the result says which), only the visible GPUs, and nothing at all without a GPU."""
from __future__ import annotations

import time

import pytest

from components.core.energy import GpuEnergy
from fake_nvml import FakeGpu, FakeNvml


def test_energy_is_the_counter_difference_of_each_visible_gpu(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = [FakeGpu("A", 80, energy_mj=1_000_000), FakeGpu("B", 80, energy_mj=5_000)]
    meter = GpuEnergy(FakeNvml(gpus)).start()
    gpus[0].energy_mj += 120_000  # 120 J
    gpus[1].energy_mj += 30_500
    result = meter.stop()
    assert result["gpu_energy_joules"] == pytest.approx(150.5)
    assert result["gpu_energy_source"] == "energy_counter"
    assert [g["energy_joules"] for g in result["gpu_energy_per_gpu"]] == [120.0, 30.5]
    assert result["gpu_mean_power_watts"] > 0


def test_only_the_gpus_the_step_sees_count(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    gpus = [FakeGpu("A", 80), FakeGpu("B", 80)]
    meter = GpuEnergy(FakeNvml(gpus)).start()
    gpus[0].energy_mj += 999_000
    gpus[1].energy_mj += 2_000
    assert meter.stop()["gpu_energy_joules"] == pytest.approx(2.0)


def test_without_the_counter_power_is_sampled_and_integrated(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    meter = GpuEnergy(FakeNvml([FakeGpu("old", 16, energy_mj=None, power_mw=200_000)]), sample_seconds=0.02).start()
    time.sleep(0.3)
    result = meter.stop()
    assert result["gpu_energy_source"] == "sampled_power"
    assert result["gpu_mean_power_watts"] == pytest.approx(200, rel=0.35)  # 200 W, give or take the edges


def test_no_gpu_means_no_figures_not_zeros():
    assert GpuEnergy(FakeNvml([], missing=True)).start().stop() == {}
    assert GpuEnergy(FakeNvml([])).start().stop() == {}

"""model.dtype=auto per device and purpose (components.backends.models): bfloat16 on CUDA; on CPU
bfloat16 for inference only where the CPU has native bf16 (else float32), float32 for CPU training and
for bitsandbytes' CPU compute; an explicit dtype always wins. The precision a model runs in is named in
results (real loads: tests/e2e/test_eval_real.py)."""
from __future__ import annotations

import pytest
import torch

from components.backends import models
from components.core.config import ModelConfig


@pytest.mark.parametrize("native, device, cpu_bf16, expected", [
    (True, "cpu", True, torch.bfloat16),  # the hf backend's inference on a bf16 CPU
    (False, "cpu", True, torch.float32),
    (True, "cpu", False, torch.float32),  # training, 4-bit compute, vLLM's CPU build
    (True, "cuda", False, torch.bfloat16),
    (False, "cuda", True, torch.bfloat16),
])
def test_auto_dtype(monkeypatch, native, device, cpu_bf16, expected):
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: native)
    assert models.resolve_dtype(ModelConfig(), device, cpu_bf16) == expected


def test_an_explicit_dtype_wins(monkeypatch):
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    assert models.resolve_dtype(ModelConfig(dtype="float32"), "cpu") == torch.float32
    assert models.resolve_dtype(ModelConfig(dtype="bfloat16"), "cpu") == torch.bfloat16


def test_4bit_compute_stays_float32_on_a_bf16_cpu(monkeypatch):
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(models, "check_bitsandbytes", lambda key, device: None)
    quant = models.quantization_config(ModelConfig(load_in_4bit=True), "cpu")
    assert quant.bnb_4bit_compute_dtype == torch.float32


def test_native_bf16_is_read_from_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert models.cpu_has_native_bf16()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not models.cpu_has_native_bf16()


def test_precision_names_weights_and_compute():
    model = torch.nn.Linear(2, 2).to(torch.bfloat16)
    model.dtype = torch.bfloat16  # what a transformers model reports
    assert models.precision_name(model) == "bfloat16"
    assert models.precision_name(model, "nf4") == "nf4/bfloat16"

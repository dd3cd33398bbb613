"""4/8-bit loading (components.backends.models): bitsandbytes is asked whether it runs on the device, the
compute dtype follows the device, a load bitsandbytes refuses is one line naming the setting, and the CPU
note and LLM.int8's per-layer warning each come once. Fast: no model is quantised here (the real loads,
answers and sizes: tests/e2e/test_quantized_real.py)."""
from __future__ import annotations

import logging

import pytest
import torch

from components.backends import models
from components.core.config import ModelConfig
from components.core.errors import UserError
from components.stages import finetune
from components.core.overrides import build_config


@pytest.fixture
def fresh_notes(monkeypatch):
    """As in a new process: nothing said yet, LLM.int8's logger without the once-filter."""
    monkeypatch.setattr(models, "_SAID", set())
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    monkeypatch.setattr(logger, "filters", [f for f in logger.filters if not isinstance(f, models._OnceFilter)])


@pytest.mark.parametrize("device, dtype", [("cpu", torch.float32), ("cuda", torch.bfloat16)])
def test_4bit_is_nf4_with_double_quant_computing_in_the_devices_dtype(device, dtype, fresh_notes):
    quant = models.quantization_config(ModelConfig(load_in_4bit=True), device)
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    assert quant.bnb_4bit_compute_dtype == dtype
    assert models.quantization_config(ModelConfig(load_in_4bit=True, dtype="float16"), device) \
        .bnb_4bit_compute_dtype == torch.float16, "an explicit model.dtype wins"
    assert models.quantization_config(ModelConfig(load_in_8bit=True), device).load_in_8bit
    assert models.quantization_config(ModelConfig(), device) is None


def test_a_device_bitsandbytes_does_not_support_is_one_line_naming_the_setting(monkeypatch, fresh_notes):
    import bitsandbytes

    monkeypatch.setattr(bitsandbytes, "supported_torch_devices", {"cuda"})
    with pytest.raises(UserError) as e:
        models.quantization_config(ModelConfig(load_in_8bit=True), "cpu")
    assert str(e.value).startswith("model.load_in_8bit: the installed bitsandbytes ") and "\n" not in str(e.value)
    assert "does not run on cpu (it supports cuda)" in str(e.value)
    with pytest.raises(UserError, match=r"^finetune\.method=qlora: the installed bitsandbytes .* does not run on cpu"):
        finetune._check_method(build_config(["finetune.method=qlora"]), "cpu")
    finetune._check_method(build_config(["finetune.method=lora"]), "cpu")  # LoRA needs no bitsandbytes


def test_bitsandbytes_missing_names_the_package(monkeypatch, fresh_notes):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"^model\.load_in_4bit needs bitsandbytes: pip install bitsandbytes==0\.50\.2"):
        models.quantization_config(ModelConfig(load_in_4bit=True), "cpu")


def test_a_load_bitsandbytes_refuses_is_one_line(monkeypatch, fresh_notes):
    from transformers import AutoModelForCausalLM

    def refuse(*args, **kwargs):
        assert kwargs["device_map"] == {"": "cpu"} and kwargs["quantization_config"].load_in_4bit
        raise RuntimeError("None of the available devices are supported\nby the bitsandbytes version")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(models, "resolve_weights", lambda cfg: "local-checkpoint")
    monkeypatch.setattr(models, "load_tokenizer", lambda source, cfg: object())
    with pytest.raises(UserError) as e:
        models.load_model(ModelConfig(load_in_4bit=True, device="cpu"))
    assert str(e.value) == ("model.load_in_4bit: bitsandbytes cannot load 'local-checkpoint' on cpu (None of the "
                            "available devices are supported)")


def test_cpu_says_once_that_it_is_slow_and_int8_warns_once(capsys, fresh_notes):
    models.quantization_config(ModelConfig(load_in_4bit=True), "cpu")
    models.quantization_config(ModelConfig(load_in_8bit=True), "cpu")
    models.quantization_config(ModelConfig(load_in_4bit=True), "cuda")
    err = capsys.readouterr().err
    assert err.count("note: ") == 1 and "model.load_in_4bit on CPU" in err and "slower than float32" in err

    logger = logging.getLogger("bitsandbytes.autograd._functions")
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger.addHandler(handler)
    try:
        for _ in range(3):
            logger.warning("MatMul8bitLt: inputs will be cast from %s to float16 during quantization", torch.float32)
        logger.warning("something else")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in seen] == [
        "MatMul8bitLt: inputs will be cast from torch.float32 to float16 during quantization", "something else"]

"""The Hugging Face backend on a tiny random Llama: loading (with a peft adapter or a one-line error),
the prepared shared prefix, answers equal to the decoder's, and adapters merged or kept."""
from __future__ import annotations

import copy

import pytest
import torch

from components.backends import hf
from components.backends.base import MODEL_FEATURES
from components.backends.decoding import decode
from components.backends.generation import to_answers
from components.backends.hf import HFGenerator
from components.backends.models import LoadedModel
from components.core.config import GenerationConfig, ModelConfig
from components.core.errors import UserError

PREFIX = [5, 6, 7, 8, 9]
PROMPTS = [PREFIX + [11, 12, 13], PREFIX + [14], PREFIX + [15, 16, 17, 18]]
GEN = GenerationConfig(max_new_tokens=6, stop_strings=[])


class CharTokenizer:
    eos_token_id, pad_token_id = 1, 0

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(ord("A") + i) for i in ids if not (skip_special_tokens and i in (0, 1)))


@pytest.fixture(scope="module")
def base_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).double().eval()


def loaded(model, source: str = "tiny") -> LoadedModel:
    return LoadedModel(model=copy.deepcopy(model), tokenizer=CharTokenizer(), device="cpu", model_size_bytes=1234,
                       source=source)


def test_what_the_backend_says_about_itself(base_model):
    import transformers

    generator = HFGenerator(loaded(base_model))
    assert (generator.backend, generator.source, generator.model_size_bytes) == ("hf", "tiny", 1234)
    assert generator.backend_version == f"transformers {transformers.__version__}"
    assert isinstance(generator.tokenizer, CharTokenizer)
    assert generator.applies == frozenset(MODEL_FEATURES)  # the reference honours every model setting
    assert HFGenerator.auto_applies(ModelConfig()) is True


def test_answers_are_the_decoders_with_or_without_the_prepared_prefix(base_model):
    generator = HFGenerator(loaded(base_model))
    expected = to_answers(generator.tokenizer, decode(generator.lm.model, generator.tokenizer, PROMPTS, GEN, "cpu"),
                          GEN, 0.0)
    unprepared = generator.generate(PROMPTS, GEN)
    generator.prepare(PROMPTS)
    assert generator.prefix.ids == PREFIX  # the head all prompts share, prefilled once
    timings: dict = {}
    prepared = generator.generate(PROMPTS, GEN, timings=timings)
    for got in (unprepared, prepared):
        assert [(g.text, g.new_tokens, g.hit_max_new_tokens) for g in got] == \
            [(e.text, e.new_tokens, e.hit_max_new_tokens) for e in expected]
        assert all(g.seconds > 0 for g in got) and len({g.seconds for g in got}) == 1  # the batch's time, shared
    assert timings["prefill_seconds"] > 0
    # a batch that does not start with the prepared head is decoded without it, not refused
    other = [[30, 31, 32], [30, 33]]
    fresh = HFGenerator(loaded(base_model))
    assert [g.text for g in generator.generate(other, GEN)] == [g.text for g in fresh.generate(other, GEN)]


def test_load_without_an_adapter_and_with_a_folder_that_is_not_one(base_model, monkeypatch, tmp_path):
    monkeypatch.setattr(hf, "load_model", lambda cfg: loaded(base_model, source=cfg.path))
    generator = HFGenerator.load(ModelConfig(path="org/tiny"), GEN)
    assert isinstance(generator, HFGenerator) and generator.source == "org/tiny"
    with pytest.raises(UserError, match=rf"^model.adapter: {tmp_path} is not a peft adapter folder"):
        HFGenerator.load(ModelConfig(path="org/tiny", adapter=str(tmp_path)), GEN)


@pytest.fixture(scope="module")
def adapter_dir(base_model, tmp_path_factory):
    """A LoRA adapter with non-zero weights (the default init would leave the model unchanged)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    peft_model = get_peft_model(copy.deepcopy(base_model),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    folder = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(folder)
    return folder


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([PROMPTS[0]])).logits


def test_an_adapter_is_merged_unless_the_base_is_quantized(base_model, adapter_dir):
    from peft import PeftModel

    merged = HFGenerator(loaded(base_model)).with_adapter(adapter_dir, quantized=False)
    kept = HFGenerator(loaded(base_model)).with_adapter(adapter_dir, quantized=True)
    assert not isinstance(merged.lm.model, PeftModel) and isinstance(kept.lm.model, PeftModel)
    assert merged.source == kept.source == f"tiny+{adapter_dir}"
    assert not merged.lm.model.training and not kept.lm.model.training
    torch.testing.assert_close(_logits(merged.lm.model), _logits(kept.lm.model))  # merging changes no output
    assert not torch.allclose(_logits(merged.lm.model), _logits(base_model))  # the adapter does


def test_an_adapter_stays_beside_a_bf16_base(base_model, adapter_dir):
    """Merging into bf16 weights would round most of a LoRA update away: beside it, in float32."""
    from peft import PeftModel

    bf16 = copy.deepcopy(base_model).to(torch.bfloat16)
    tuned = HFGenerator(loaded(bf16)).with_adapter(adapter_dir, quantized=False)
    assert isinstance(tuned.lm.model, PeftModel)
    lora = [p for n, p in tuned.lm.model.named_parameters() if "lora_" in n]
    assert lora and all(p.dtype == torch.float32 for p in lora)


def test_load_puts_the_adapter_on_the_loaded_model(base_model, adapter_dir, monkeypatch):
    monkeypatch.setattr(hf, "load_model", lambda cfg: loaded(base_model))
    generator = HFGenerator.load(ModelConfig(adapter=str(adapter_dir)), GEN)
    assert generator.source == f"tiny+{adapter_dir}"
    reference = HFGenerator(loaded(base_model)).with_adapter(adapter_dir, quantized=False)
    torch.testing.assert_close(_logits(generator.lm.model), _logits(reference.lm.model))

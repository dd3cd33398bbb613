"""Finetune stage with the real embedded model: loss on answers only, a short LoRA run that learns, a
reloadable adapter that changes the model, resume after a crash (QLoRA: tests/e2e/test_qlora_real.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from components.stages.collators import IGNORE_INDEX, PaddingCollator
from components.core.config import AppConfig, ModelConfig
from components.core.errors import UserError
from components.stages.finetune import TRAINER_STATE_FILE, encode_example, merge_adapter, run_finetune, training_examples
from components.backends.models import load_model, load_tokenizer, resolve_weights
from components.core.overrides import build_config
from components.core.outputs import ADAPTER_DIR, CHECKPOINT_DIR, RESULTS_FILE
from components.data.schema import Question
from components.stages.stage_inputs import stage_prompts
from helpers import write_ingest_dir

# A short system message replaces the chat template's 21-token default: shorter examples, faster steps.
TRAIN_ARGS = ["finetune.learning_rate=1e-3", "finetune.batch_size=4", "finetune.warmup_ratio=0.1",
              "prompt.system=Be brief."]


@pytest.fixture(scope="module")
def ingest_dir(tmp_path_factory) -> Path:
    return write_ingest_dir(tmp_path_factory.mktemp("ingest"))


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_weights(ModelConfig()), ModelConfig())


@pytest.fixture(scope="module")
def trained(ingest_dir, tmp_path_factory) -> tuple[AppConfig, Path, dict]:
    """One short LoRA run shared by the tests that inspect its outputs."""
    cfg = build_config(TRAIN_ARGS + ["finetune.max_steps=12", "finetune.logging_steps=2",
                                     "finetune.save_steps=6", "finetune.eval_steps=6"])
    out = tmp_path_factory.mktemp("finetune")
    return cfg, out, run_finetune(cfg, ingest_dir, out)


def test_labels_ignore_the_prompt_and_truncation_cuts_its_left_end(tokenizer):
    example = encode_example(tokenizer, "Question: capital of France?\nAnswer:", "Paris", max_length=64)
    prompt_ids = tokenizer("Question: capital of France?\nAnswer:", add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer("Paris" + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    assert answer_ids[-1] == tokenizer.eos_token_id
    assert example["input_ids"] == prompt_ids + answer_ids
    assert example["labels"] == [IGNORE_INDEX] * len(prompt_ids) + answer_ids

    short = encode_example(tokenizer, "Question: capital of France?\nAnswer:", "Paris", max_length=5)
    assert len(short["input_ids"]) == 5
    assert short["input_ids"] == (prompt_ids + answer_ids)[-5:]  # the prompt's left end went
    assert short["labels"][-len(answer_ids):] == answer_ids


def test_collator_pads_each_batch_to_its_longest_example():
    pad = 2  # the pad token is EOS here, so labels must never be derived from input_ids
    batch = PaddingCollator(pad_token_id=pad)([
        {"input_ids": [5, 6, 7, 2], "labels": [-100, -100, 7, 2]},
        {"input_ids": [8, 2], "labels": [-100, 2]},
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 2], [8, 2, pad, pad]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 7, 2], [-100, 2, -100, -100]]  # EOS keeps its label
    padded = PaddingCollator(pad_token_id=pad, pad_to_multiple_of=8)([{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}])
    assert padded["input_ids"].shape == (1, 8)


def test_training_examples_use_the_eval_prompt_of_the_mode(ingest_dir, tokenizer):
    cfg = build_config(["finetune.mode=oracle_context"])
    train, eval_set = training_examples(cfg, tokenizer, ingest_dir)
    assert (len(train), len(eval_set)) == (16, 4)
    france = Question("q0", "What is the capital of France?", ["Paris"], ["p0"])
    (prompt,) = stage_prompts(cfg, tokenizer, "oracle_context", [france], ingest_dir, "finetune.mode")
    assert "Paris is the capital of France." in prompt  # the gold passage is the context
    text = tokenizer.decode(train[0]["input_ids"])
    assert text.startswith(prompt) and text.endswith("Paris" + tokenizer.eos_token)
    with pytest.raises(UserError, match="retriever_context"):
        training_examples(build_config(["finetune.mode=retriever_context"]), tokenizer, ingest_dir)


def test_short_lora_run_learns_and_writes_its_outputs(trained):
    cfg, out, results = trained
    assert results["train_loss_last"] < results["train_loss_first"]
    assert results["global_step"] == 12 and results["resumed_from_step"] == 0
    assert results["num_train_examples"] == 16 and results["num_eval_examples"] == 4
    assert results["eval_loss"] is not None and results["tokens_per_second"] > 0
    assert results["samples_per_second"] > 0 and results["cpu_ram_used_mb"] > 0
    assert 0 < results["trainable_params"] < results["total_params"]
    assert json.loads((out / RESULTS_FILE).read_text())["train_loss_last"] == results["train_loss_last"]

    history = json.loads((out / TRAINER_STATE_FILE).read_text())["log_history"]
    train_logs = [e for e in history if "loss" in e]
    assert [e["step"] for e in train_logs] == [1, 2, 4, 6, 8, 10, 12]  # first step and every 2nd
    for entry in train_logs:
        assert {"learning_rate", "grad_norm", "epoch", "tokens_per_second", "samples_per_second",
                "cpu_ram_peak_mb"} <= entry.keys()
    assert [e["step"] for e in history if "eval_loss" in e] == [6, 12]
    assert (out / ADAPTER_DIR / "adapter_config.json").is_file()
    assert (out / ADAPTER_DIR / "adapter_model.safetensors").stat().st_size > 0
    checkpoints = sorted(p.name for p in (out / CHECKPOINT_DIR).glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-12", "checkpoint-6"]
    for plot in results["plots"]:
        assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _answer_loss(model, examples: list[dict]) -> float:
    batch = PaddingCollator(pad_token_id=2)(examples)
    with torch.no_grad():
        return model(**batch).loss.item()


def test_saved_adapter_reloads_and_changes_the_model(trained, ingest_dir):
    from peft import PeftModel

    from components.backends.models import peft_wrapping

    cfg, out, _ = trained
    lm = load_model(cfg.model, training=True)  # what the fine-tune trained on
    train = training_examples(cfg, lm.tokenizer, ingest_dir)[0][:8]
    prompt = {"input_ids": torch.tensor([train[0]["input_ids"][:-2]])}
    with torch.no_grad():
        base_logits = lm.model(**prompt).logits[0, -1]
    base_loss = _answer_loss(lm.model, train)
    with peft_wrapping():  # as the project loads adapters: without peft's deprecation warning
        tuned = PeftModel.from_pretrained(lm.model, str(out / ADAPTER_DIR)).eval()
    with torch.no_grad():
        tuned_logits = tuned(**prompt).logits[0, -1]
    assert (tuned_logits - base_logits).abs().max() > 1.0
    assert _answer_loss(tuned, train) < 0.5 * base_loss  # it learned the training answers


def test_merge_writes_a_plain_bf16_checkpoint(trained, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg, out, _ = trained
    merged_dir = merge_adapter(cfg, out / ADAPTER_DIR, tmp_path / "merged", tokenizer)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    base = AutoModelForCausalLM.from_pretrained(resolve_weights(cfg.model))
    assert merged.dtype == torch.bfloat16 and not any("lora" in k for k in merged.state_dict())
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q_proj].float(), base.state_dict()[q_proj].to(torch.bfloat16).float())


class StopAtCheckpoint(Exception):
    pass


def _crash_after_checkpoint(step: int):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise StopAtCheckpoint

    return Crash()


def test_interrupted_run_resumes_from_its_checkpoint_through_the_stage_entry(ingest_dir, tmp_path):
    from clearml_tasks.finetune import body
    from clearml_tasks._tracker import NullTracker

    class Recorder(NullTracker):
        def __init__(self):
            self.scalars, self.images, self.artifacts = [], [], {}

        def report_scalar(self, title, series, value, iteration):
            self.scalars.append((title, series, iteration))

        def report_image(self, title, path):
            self.images.append(Path(path))

        def upload_artifact(self, name, obj):
            self.artifacts[name] = Path(obj)

        def register_model(self, name, folder, config, tags, comment):
            self.model = (name, Path(folder), config, tags)
            return "model-1"

    from clearml_tasks._inputs import with_labels

    # as run_stage hands it to the entry: the labels filled from the paths (model.name follows model.path)
    cfg = with_labels(build_config(TRAIN_ARGS + ["finetune.max_steps=4", "finetune.save_steps=2",
                                                 "finetune.logging_steps=1", "finetune.eval_steps=100"]))
    with pytest.raises(StopAtCheckpoint):
        run_finetune(cfg, ingest_dir, tmp_path, callbacks=[_crash_after_checkpoint(2)])
    assert (tmp_path / CHECKPOINT_DIR / "checkpoint-2").is_dir()
    assert not (tmp_path / RESULTS_FILE).exists() and not (tmp_path / ADAPTER_DIR).exists()

    tracker = Recorder()
    results = body(cfg, {"ingest": ingest_dir}, tmp_path, tracker)
    assert results["resumed_from_step"] == 2 and results["global_step"] == 4
    history = json.loads((tmp_path / TRAINER_STATE_FILE).read_text())["log_history"]
    assert [e["step"] for e in history if "loss" in e] == [1, 2, 3, 4]  # steps 1-2 from the first run
    # The entry reported only the resumed steps, one graph per quantity, train and eval series.
    assert {i for t, s, i in tracker.scalars if (t, s) == ("loss", "train")} == {3, 4}
    assert [i for t, s, i in tracker.scalars if t == "epoch"] == [3, 4]  # not again from the eval log
    assert {("learning_rate", "train"), ("grad_norm", "train"), ("epoch", "train"),
            ("tokens_per_second", "train"), ("loss", "eval")} <= {(t, s) for t, s, _ in tracker.scalars}
    assert tracker.images == []  # the curves are SCALARS; the PNGs are files (artifacts), not debug images
    assert {"trainer_state", "results", "training_loss", "learning_rate"} <= tracker.artifacts.keys()
    name, folder, config, tags = tracker.model  # the adapter is a registered model, not an artifact
    assert folder == tmp_path / ADAPTER_DIR and (folder / "adapter_config.json").is_file()
    assert config["base_model"] == "smollm2_135m_gguf" and config["r"] == 16 and "lora" in tags
    assert results["model_id"] == "model-1" and results["model_dir"] == str(folder)
    assert all(p.exists() for p in tracker.artifacts.values())


@pytest.mark.gpu
def test_qlora_trains_a_4bit_base_on_cuda(ingest_dir, tmp_path):
    cfg = build_config(TRAIN_ARGS + ["finetune.method=qlora", "finetune.max_steps=4", "finetune.save_steps=4"])
    results = run_finetune(cfg, ingest_dir, tmp_path)
    assert results["global_step"] == 4 and results["gpu_ram_peak_mb"] > 0
    assert (tmp_path / ADAPTER_DIR / "adapter_model.safetensors").is_file()

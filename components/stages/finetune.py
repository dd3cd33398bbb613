"""The finetune stage: a LoRA or QLoRA (LoRA over a 4-bit NF4 base) adapter trained on the training split.

Each example is the chat prompt eval renders for `finetune.mode` followed by the first gold answer + EOS;
the loss is on the answer tokens only. Batches are grouped by length and built by `PackingCollator`: the
prompt prefix all examples of a batch share is computed once (examples never attend to each other), no
compute goes to padding where that is cheaper, and the LM head runs only where the loss needs it.

Output folder:
  checkpoints/          Trainer checkpoints (the last two) + fingerprint.json of what they were trained on
  adapter/              the final adapter, peft format (PeftModel.from_pretrained reads it)
  merged/               only with finetune.merge: the adapter merged into a bf16 copy of the base
  trainer_state.json    the Trainer's state (log_history holds every logged step)
  training_loss.png, learning_rate.png
  results.json          written last: its presence means the run completed
A run started again with the same config, data and code (components.core.code_version) resumes from the last
checkpoint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import torch
from transformers import PrinterCallback, TrainerCallback

from components.analysis import plots
from components.data import schema
from components.stages.collators import EXAMPLE_TOKENS, IGNORE_INDEX, PackingCollator, attention_pair_cost
from components.core.code_version import code_version
from components.core.config import AppConfig
from components.core.errors import UserError
from components.core.fileio import atomic_path, ordinary_modes, write_json
from components.core.outputs import ADAPTER_DIR, CHECKPOINT_DIR, RESULTS_FILE, clear_outputs
from components.core.memory import MemoryLog, cpu_peak_mb, gpu_snapshot
from components.backends.models import (check_bitsandbytes, load_model, peft_wrapping, resolve_device,
                                         resolve_weights)
from components.stages.prompts import training_text
from components.core.provenance import stamp
from components.data.schema import Question
from components.stages.stage_inputs import read_questions, stage_prompts
from components.stages.training_log import TrainingProgress

MERGED_DIR = "merged"
TRAINER_STATE_FILE = "trainer_state.json"
FINGERPRINT_FILE = "fingerprint.json"
LOSS_PLOT, LR_PLOT = "training_loss.png", "learning_rate.png"
MAX_EVAL_EXAMPLES = 32  # the held-out loss is a health signal; more examples only cost time


def encode_example(tokenizer, prompt: str, answer: str, max_length: int) -> dict[str, list[int]]:
    """input_ids = prompt + answer + EOS, labels = IGNORE_INDEX on the prompt; over-long prompts lose
    their left end (the question and the answer cue sit at the right end)."""
    prompt_text, completion_text = training_text(tokenizer, prompt, answer)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"][:max_length]
    room = max_length - len(completion_ids)
    prompt_ids = prompt_ids[max(0, len(prompt_ids) - room):] if room > 0 else []
    return {"input_ids": prompt_ids + completion_ids,
            "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids}


def _trainer_class():
    from transformers import Trainer

    class FinetuneTrainer(Trainer):
        """Counts each batch's example tokens as the collator reports them: the Trainer's own count reads the
        attention mask, which in a packed batch is a 4D pair mask, and would miss the shared prefix's reuse."""

        def training_step(self, model, inputs, num_items_in_batch=None):
            self.state.num_input_tokens_seen += int(inputs.pop(EXAMPLE_TOKENS, 0))
            return super().training_step(model, inputs, num_items_in_batch)

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            inputs = {k: v for k, v in inputs.items() if k != EXAMPLE_TOKENS}
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    return FinetuneTrainer


class ThroughputCallback(TrainerCallback):
    """Adds to every training log: non-padding tokens/s and samples/s over the compute time of the steps
    since the previous log (eval and checkpoint time excluded), and peak memory. Also makes sure the
    last step is logged, so the loss curve ends where training ended."""

    def __init__(self, samples_per_step: int):
        self.samples_per_step = samples_per_step
        self.session_seconds = self.session_tokens = self.session_steps = 0
        self._interval = [0.0, 0, 0]  # seconds, tokens, steps since the last log
        self._step_start = (0.0, 0)

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_start = (time.perf_counter(), state.num_input_tokens_seen)

    def on_step_end(self, args, state, control, **kwargs):
        seconds = time.perf_counter() - self._step_start[0]
        tokens = state.num_input_tokens_seen - self._step_start[1]
        for i, value in enumerate((seconds, tokens, 1)):
            self._interval[i] += value
        self.session_seconds += seconds
        self.session_tokens += tokens
        self.session_steps += 1
        if state.global_step >= state.max_steps:
            control.should_log = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:
            return
        extra = {"num_input_tokens_seen": state.num_input_tokens_seen, **self.rates(*self._interval),
                 **peak_memory()}
        logs.update(extra)
        state.log_history[-1].update(extra)  # the Trainer appended a copy before calling us
        self._interval = [0.0, 0, 0]

    def rates(self, seconds: float, tokens: int, steps: int) -> dict[str, float]:
        if not seconds:
            return {"tokens_per_second": 0.0, "samples_per_second": 0.0}
        return {"tokens_per_second": round(tokens / seconds, 2),
                "samples_per_second": round(steps * self.samples_per_step / seconds, 3)}

    def session_rates(self) -> dict[str, float]:
        """Over every step this process trained (a resumed run: the steps after the checkpoint)."""
        return self.rates(self.session_seconds, self.session_tokens, self.session_steps)


class ReadableCheckpoints(TrainerCallback):
    """Each checkpoint's files get the mode a plain write gives (safetensors writes its own 0o600)."""

    def on_save(self, args, state, control, **kwargs):
        ordinary_modes(Path(args.output_dir) / f"checkpoint-{state.global_step}")


def peak_memory() -> dict[str, float]:
    peak = {"cpu_ram_peak_mb": round(cpu_peak_mb(), 1)}
    if torch.cuda.is_available():
        peak["gpu_ram_peak_mb"] = round(gpu_snapshot()["gpu_ram_peak_mb"], 1)
    return peak


def _check_method(cfg: AppConfig, device: str) -> None:
    """QLoRA runs wherever the installed bitsandbytes runs 4-bit (CUDA, and CPU for checks)."""
    if cfg.finetune.method == "qlora":
        check_bitsandbytes("finetune.method=qlora", device)


def _target_modules(value: str) -> str | list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    return value.strip() if names == ["all-linear"] else names


def build_lora_model(cfg: AppConfig):
    """The base model wrapped with a fresh LoRA adapter (4-bit base for QLoRA); returns (peft model, lm)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    ft = cfg.finetune
    qlora = ft.method == "qlora"
    model_cfg = dataclasses.replace(cfg.model, load_in_4bit=qlora, load_in_8bit=False)
    lm = load_model(model_cfg, training=True)
    model = lm.model
    model.config.use_cache = False  # the KV cache is useless in training and warns with checkpointing
    if qlora:
        # QLoRA's recipe: norms and embeddings in float32, gradient checkpointing. Non-reentrant checkpointing
        # is what torch asks for (reentrant warns and needs the inputs to require grad).
        model = prepare_model_for_kbit_training(model, gradient_checkpointing_kwargs={"use_reentrant": False})
    set_seed(ft.seed)  # the adapter's random init
    lora = LoraConfig(r=ft.r, lora_alpha=ft.alpha, lora_dropout=ft.dropout,
                      target_modules=_target_modules(ft.target_modules), task_type="CAUSAL_LM")
    try:
        with peft_wrapping():
            return get_peft_model(model, lora), lm
    except ValueError as e:
        raise UserError(f"finetune.target_modules={ft.target_modules!r}: {e}") from None


def training_examples(cfg: AppConfig, tokenizer, ingest_dir: Path) -> tuple[list[dict], list[dict]]:
    """(train, eval) encoded examples: eval is test.jsonl's head, or else the last 10% of train."""
    ingest_dir = Path(ingest_dir)
    train_q = read_questions(ingest_dir, "train")
    if not train_q:
        raise UserError(f"{ingest_dir / schema.TRAIN_FILE}: no training questions")
    has_test = (ingest_dir / schema.TEST_FILE).is_file()
    eval_q = read_questions(ingest_dir, "test")[:MAX_EVAL_EXAMPLES] if has_test else []
    if not eval_q and len(train_q) >= 2:
        held_out = max(1, len(train_q) // 10)
        train_q, eval_q = train_q[:-held_out], train_q[-held_out:]

    def encode(questions: list[Question]) -> list[dict]:
        prompts = stage_prompts(cfg, tokenizer, cfg.finetune.mode, questions, ingest_dir, "finetune.mode")
        return [encode_example(tokenizer, p, q.answers[0], cfg.finetune.max_length)
                for p, q in zip(prompts, questions)]

    return encode(train_q), encode(eval_q) if eval_q else []


def run_fingerprint(cfg: AppConfig, train: list[dict], eval_set: list[dict]) -> str:
    """What a checkpoint depends on; a checkpoint from another config, data or code is never resumed (a run
    the step cache starts again after a code change trains afresh rather than resuming its last step)."""
    payload = json.dumps({"finetune": dataclasses.asdict(cfg.finetune), "model": dataclasses.asdict(cfg.model),
                          "code": code_version(__name__),
                          "train": [e["input_ids"] for e in train], "eval": [e["input_ids"] for e in eval_set]},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _prepare_checkpoints(checkpoint_dir: Path, fingerprint: str, resume: bool) -> bool:
    """Keep the checkpoints only when resuming the same run; returns whether there is one to resume."""
    from transformers.trainer_utils import get_last_checkpoint

    marker = checkpoint_dir / FINGERPRINT_FILE
    same_run = marker.is_file() and json.loads(marker.read_text()).get("fingerprint") == fingerprint
    if checkpoint_dir.is_dir() and not (resume and same_run):
        shutil.rmtree(checkpoint_dir)
    write_json(marker, {"fingerprint": fingerprint})
    return get_last_checkpoint(str(checkpoint_dir)) is not None


def training_arguments(cfg: AppConfig, checkpoint_dir: Path, device: str, has_eval: bool,
                       report_to: list[str]):
    from transformers import SchedulerType, TrainingArguments

    ft = cfg.finetune
    schedulers = [s.value for s in SchedulerType]
    if ft.lr_scheduler not in schedulers:
        raise UserError(f"invalid value for finetune.lr_scheduler: {ft.lr_scheduler!r} "
                        f"(expected one of {', '.join(schedulers)})")
    cuda = device == "cuda"
    return TrainingArguments(
        output_dir=str(checkpoint_dir), report_to=report_to, seed=ft.seed, data_seed=ft.seed,
        learning_rate=ft.learning_rate, lr_scheduler_type=ft.lr_scheduler, warmup_steps=ft.warmup_ratio,
        num_train_epochs=ft.num_epochs, max_steps=ft.max_steps,
        per_device_train_batch_size=ft.batch_size, per_device_eval_batch_size=ft.batch_size,
        gradient_accumulation_steps=ft.gradient_accumulation_steps,
        train_sampling_strategy="group_by_length" if ft.group_by_length else "random",
        logging_steps=ft.logging_steps, logging_first_step=True,
        save_strategy="steps", save_steps=ft.save_steps, save_total_limit=2,
        eval_strategy="steps" if has_eval else "no", eval_steps=ft.eval_steps, prediction_loss_only=True,
        # FinetuneTrainer counts the example tokens itself (the Trainer would read a packed batch's 4D mask)
        include_num_input_tokens_seen="no", remove_unused_columns=False,
        disable_tqdm=True,  # its bar and raw log dicts give way to training_log.TrainingProgress
        bf16=cuda and torch.cuda.is_bf16_supported(), use_cpu=not cuda, dataloader_pin_memory=cuda)


def merge_adapter(cfg: AppConfig, adapter_dir: Path, merged_dir: Path, tokenizer) -> Path:
    """The adapter merged into a bf16 copy of the base (never into a 4-bit one: that merge is lossy)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(resolve_weights(cfg.model), dtype=torch.bfloat16,
                                                trust_remote_code=cfg.model.trust_remote_code)
    with peft_wrapping():
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    return _save_dir(merged_dir, lambda tmp: (merged.save_pretrained(tmp), tokenizer.save_pretrained(tmp)))


def _save_dir(final: Path, save) -> Path:
    """Save a folder under a temporary name and rename it into place when complete."""
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    ordinary_modes(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def training_summary(trainer, output, throughput: ThroughputCallback, model) -> dict:
    """Loss endpoints as logged, speed of this session's steps, parameter counts."""
    history = trainer.state.log_history
    losses = [float(e["loss"]) for e in history if "loss" in e]
    eval_losses = [float(e["eval_loss"]) for e in history if "eval_loss" in e]
    trainable, total = model.get_nb_trainable_parameters()
    return {"train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None,
            "train_loss_mean": output.training_loss, "eval_loss": eval_losses[-1] if eval_losses else None,
            "global_step": trainer.state.global_step, "epoch": trainer.state.epoch,
            "resumed_from_step": trainer.state.global_step - throughput.session_steps,
            "train_runtime": output.metrics["train_runtime"], **throughput.session_rates(),
            "trainable_params": trainable, "total_params": total,
            "trainable_percent": round(100 * trainable / total, 4)}


def run_finetune(cfg: AppConfig, ingest_dir: Path, output_dir: Path, callbacks: list | None = None,
                 resume: bool = True, report_to: list[str] | None = None, progress: Callable | None = None) -> dict:
    """Train the adapter and write the outputs; returns the results dict.

    `callbacks` are extra TrainerCallbacks (they see the throughput figures in the logs); `report_to`
    names Trainer integrations (none by default: the stage entry reports through its tracker);
    `progress(total, desc, unit=...)` makes the console's bar over the steps (components.core.console).
    """
    started = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    clear_outputs(output_dir, (RESULTS_FILE, TRAINER_STATE_FILE, LOSS_PLOT, LR_PLOT, ADAPTER_DIR, MERGED_DIR))
    device = resolve_device(cfg.model)
    _check_method(cfg, device)
    memory = MemoryLog()
    model, lm = build_lora_model(cfg)
    memory.record("load model")
    train, eval_set = training_examples(cfg, lm.tokenizer, ingest_dir)
    checkpoint_dir = output_dir / CHECKPOINT_DIR
    can_resume = _prepare_checkpoints(checkpoint_dir, run_fingerprint(cfg, train, eval_set), resume)
    args = training_arguments(cfg, checkpoint_dir, device, bool(eval_set), list(report_to or []))
    throughput = ThroughputCallback(cfg.finetune.batch_size * cfg.finetune.gradient_accumulation_steps)
    collator = PackingCollator(lm.tokenizer.pad_token_id, 8 if device == "cuda" else 1,
                               pack=model.config._attn_implementation == "sdpa", pair_cost=attention_pair_cost(model))
    console = [TrainingProgress(progress)] if progress else []
    trainer = _trainer_class()(model=model, args=args, train_dataset=train, eval_dataset=eval_set or None,
                               data_collator=collator,
                               callbacks=[throughput, ReadableCheckpoints(), *console, *(callbacks or [])])
    trainer.remove_callback(PrinterCallback)  # the raw log dicts (disable_tqdm makes it the Trainer's console)
    output = trainer.train(resume_from_checkpoint=True if can_resume else None)
    memory.record("train")

    adapter_dir = _save_dir(output_dir / ADAPTER_DIR, model.save_pretrained)
    with atomic_path(output_dir / TRAINER_STATE_FILE) as tmp:
        trainer.state.save_to_json(str(tmp))
    if cfg.finetune.merge:
        merge_adapter(cfg, adapter_dir, output_dir / MERGED_DIR, lm.tokenizer)
    plot_paths = [plots.training_loss(trainer.state.log_history, output_dir / LOSS_PLOT),
                  plots.learning_rate(trainer.state.log_history, output_dir / LR_PLOT)]
    results = {
        "method": cfg.finetune.method, "mode": cfg.finetune.mode, "model": cfg.model.name,
        **training_summary(trainer, output, throughput, model), **memory.peak_usage(), **memory.energy(),
        "num_train_examples": len(train), "num_eval_examples": len(eval_set),
        "duration_seconds": round(time.perf_counter() - started, 3),
        "adapter_dir": str(adapter_dir), "plots": [str(p) for p in plot_paths],
        "meta": {**stamp(__name__), "config": cfg.to_dict()},
    }
    write_json(output_dir / RESULTS_FILE, results)  # last: its presence means the run completed
    return results

"""The benchmark stage: the base model against base + the fine-tuned adapter on held-out questions.

Both models answer the same prompts (test split, `benchmark.mode`) with the same explicit decoding and
the same fixed batch plan, on the same base weights: as `model` says, or 4-bit NF4 when the adapter was
trained by QLoRA on a 4-bit base (the finetune step's results say so) and `model` asks for no quantization,
so that a QLoRA run compares the 4-bit base with the 4-bit base + adapter, as it was trained.

Per question: Token F1 and Exact Match (SQuAD normalisation, max over gold answers), Key Info (numbers
and key terms of the reference, the first gold answer; a part the reference lacks is left out, never
counted as 1.0), Length Ratio, generation time. Per model: means with 95% bootstrap CIs; tuned minus base:
the mean difference with a paired bootstrap CI (the same resampled questions for both models).

Output folder: benchmark_results.json (= results.json), predictions_base.jsonl, predictions_tuned.jsonl,
the plots, report.md.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from components.analysis import plots
from components.core.config import AppConfig, GenerationConfig, ModelConfig
from components.core.errors import UserError
from components.core.fileio import read_json, write_json, write_jsonl, write_text
from components.backends.generation import Generated
from components.backends.base import Generator, generate_all, load_generator
from components.core.memory import MemoryLog
from components.analysis.metrics import BENCHMARK_QUALITY_METRICS, exact_match, key_info, length_ratio, token_f1
from components.core.outputs import ADAPTER_DIR, MB, RESULTS_FILE, clear_outputs
from components.core.provenance import stamp
from components.analysis.stats import BOOTSTRAP_SEED, summary
from components.data.schema import Question
from components.stages.stage_inputs import select_questions, stage_prompts

BENCHMARK_FILE = "benchmark_results.json"
REPORT_FILE = "report.md"
MODELS = ("base", "tuned")
PREDICTION_FILES = {m: f"predictions_{m}.jsonl" for m in MODELS}
PLOT_FILES = {"bars": "metrics_base_vs_tuned.png", "f1": "token_f1_hist.png", "key_info": "key_info_hist.png",
              "time": "generation_time_hist.png"}
# Per-question values averaged per model; None values (a Key Info part the reference lacks) are left out.
METRICS = ("token_f1", "exact_match", "key_info", "key_info_numbers", "key_info_terms", "length_ratio",
           "pred_ref_word_ratio", "hit_max_new_tokens", "seconds", "tokens_per_second")
QUALITY_METRICS = BENCHMARK_QUALITY_METRICS
BASE_WEIGHTS = {"none": "as loaded (no quantization)", "4bit": "4-bit NF4 (bitsandbytes)",
                "8bit": "8-bit LLM.int8 (bitsandbytes)"}


def generation_config(cfg: AppConfig) -> GenerationConfig:
    """Decoding from the benchmark section's sampling fields: greedy unless do_sample; the answer ends at a
    newline (GenerationConfig's default stop string)."""
    return GenerationConfig(**cfg.benchmark.sampling())


def finetune_method(finetune_dir: Path) -> str | None:
    """lora or qlora, as the finetune step that trained the adapter recorded (None: an adapter from elsewhere)."""
    results = Path(finetune_dir) / RESULTS_FILE
    return read_json(results).get("method") if results.is_file() else None


def base_model(cfg: AppConfig, method: str | None) -> ModelConfig:
    """The base both arms run: `cfg.model`, loaded 4-bit when the adapter is QLoRA's and nothing else was asked."""
    if method == "qlora" and not (cfg.model.load_in_4bit or cfg.model.load_in_8bit):
        return dataclasses.replace(cfg.model, load_in_4bit=True)
    return cfg.model


def quantization(model: ModelConfig) -> str:
    return "4bit" if model.load_in_4bit else "8bit" if model.load_in_8bit else "none"


def score_row(q: Question, gen: Generated) -> dict:
    reference = q.answers[0]
    ref_words, pred_words = len(reference.split()), len(gen.text.split())
    return {"id": q.id, "question": q.question, "answers": q.answers, "reference": reference,
            "prediction": gen.text, "token_f1": token_f1(gen.text, q.answers),
            "exact_match": exact_match(gen.text, q.answers), **key_info(gen.text, reference),
            "length_ratio": length_ratio(gen.text, reference),
            "pred_ref_word_ratio": pred_words / ref_words if ref_words else None,
            "hit_max_new_tokens": float(gen.hit_max_new_tokens), "new_tokens": gen.new_tokens,
            "seconds": round(gen.seconds, 4),
            "tokens_per_second": round(gen.new_tokens / gen.seconds, 2) if gen.seconds else 0.0}


def aggregate(rows: list[dict], samples: int) -> dict[str, dict]:
    return {m: summary([r[m] for r in rows if r[m] is not None], samples) for m in METRICS}


def paired_deltas(base: list[dict], tuned: list[dict], samples: int) -> dict[str, dict]:
    """tuned - base per metric, over the questions where both have a value (Key Info parts are None for
    the same questions in both: it depends on the reference only)."""
    out = {}
    for m in METRICS:
        diffs = [t[m] - b[m] for b, t in zip(base, tuned) if b[m] is not None and t[m] is not None]
        out[m] = summary(diffs, samples)
    return out


def flat_metrics(summary: dict) -> dict[str, float | None]:
    """`<metric>_base`, `<metric>_tuned`, `<metric>_delta` means: the numbers a tracker's table shows."""
    return {f"{m}_{which}": summary[which][m]["mean"] for m in METRICS for which in (*MODELS, "delta")}


def write_plots(summary: dict, rows: dict[str, list[dict]], output_dir: Path) -> list[Path]:
    def values(model: str, metric: str) -> list[float]:
        return [r[metric] for r in rows[model] if r[metric] is not None]

    return [
        plots.metric_bars({m: summary[m] for m in MODELS}, QUALITY_METRICS, output_dir / PLOT_FILES["bars"]),
        plots.histograms({m: values(m, "token_f1") for m in MODELS}, output_dir / PLOT_FILES["f1"],
                         "Token F1 per question", "token F1", bins=[i / 10 for i in range(11)]),
        plots.histograms({m: values(m, "key_info") for m in MODELS}, output_dir / PLOT_FILES["key_info"],
                         "Key Info per question", "key info", bins=[i / 10 for i in range(11)]),
        plots.histograms({m: values(m, "seconds") for m in MODELS}, output_dir / PLOT_FILES["time"],
                         "Generation time per question", "seconds (batch time / batch size)", bins=15),
    ]


def figures(summary: dict, rows: dict[str, list[dict]]) -> dict[str, dict]:
    """write_plots' charts as interactive figures (components.analysis.figures), for the ClearML UI's PLOTS."""
    from components.analysis import figures as fig

    def values(model: str, metric: str) -> list[float]:
        return [r[metric] for r in rows[model] if r[metric] is not None]

    return {
        "base vs tuned": fig.metric_bars({m: summary[m] for m in MODELS}, QUALITY_METRICS, "Base vs tuned"),
        "token F1 per question": fig.histograms({m: values(m, "token_f1") for m in MODELS},
                                                "Token F1 per question", "token F1", bin_size=0.1),
        "key info per question": fig.histograms({m: values(m, "key_info") for m in MODELS},
                                                "Key Info per question", "key info", bin_size=0.1),
        "generation time per question": fig.histograms({m: values(m, "seconds") for m in MODELS},
                                                       "Generation time per question",
                                                       "seconds (batch time / batch size)")}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ci(s: dict) -> str:
    return f"{_fmt(s['mean'])} [{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}]"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_report(cfg: AppConfig, results: dict, rows: dict[str, list[dict]], num_examples: int = 5) -> str:
    """A short experiment report in Markdown, plots linked by relative path."""
    s, b = results["summary"], cfg.benchmark
    decoding = "greedy" if not b.do_sample else \
        f"sampling (temperature {b.temperature}, top_p {b.top_p}, top_k {b.top_k}, seed {b.seed})"
    lines = [f"# Benchmark: {cfg.model.name} base vs + LoRA adapter", "",
             f"- Held-out questions: {results['num_examples']} (test split), prompt mode `{b.mode}`",
             f"- Decoding: {decoding}, max_new_tokens {b.max_new_tokens}, answer cut at the first newline",
             f"- Adapter: `{results['adapter_dir']}` ({results['finetune_method'] or 'method unknown'}); base "
             f"weights: {BASE_WEIGHTS[results['quantization']]}, the same for both models",
             f"- 95% CIs: percentile bootstrap over questions, {b.bootstrap_samples} resamples "
             "(the delta's CI is paired)", "",
             "| metric | base | tuned | tuned - base |", "|---|---|---|---|"]
    lines += [f"| {m} | {_ci(s['base'][m])} | {_ci(s['tuned'][m])} | {_ci(s['delta'][m])} |" for m in METRICS]
    lines += ["", "Key Info averages the reference's numbers and key terms that the answer contains; a part "
              "the reference has none of is left out (n counts the questions that have it).", "",
              f"Generation: base {results['generation_seconds_base']:.1f} s, tuned "
              f"{results['generation_seconds_tuned']:.1f} s; peak CPU RAM {results['cpu_ram_used_mb']:.0f} MB.", ""]
    lines += [f"![{name}]({file})" for name, file in PLOT_FILES.items()]
    lines += ["", "## Examples", "", "| question | reference | base | tuned |", "|---|---|---|---|"]
    lines += [f"| {_cell(bq['question'])} | {_cell(bq['reference'])} | {_cell(bq['prediction'])} | "
              f"{_cell(tq['prediction'])} |" for bq, tq in zip(rows["base"][:num_examples], rows["tuned"])]
    return "\n".join(lines) + "\n"


def run_benchmark(cfg: AppConfig, ingest_dir: Path, finetune_dir: Path, output_dir: Path,
                  generator: Generator | None = None, progress: Callable | None = None) -> dict:
    """`generator` (default: a private copy of `cfg.model`) answers as the base model, then
    `generator.with_adapter(...)` as the tuned one. `progress(total, desc)` makes a bar per model
    (components.core.console.progress_bar)."""
    started = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    clear_outputs(output_dir, (BENCHMARK_FILE, RESULTS_FILE, REPORT_FILE, *PREDICTION_FILES.values(),
                               *PLOT_FILES.values()))
    adapter_dir = Path(finetune_dir) / ADAPTER_DIR
    if not (adapter_dir / "adapter_config.json").is_file():
        raise UserError(f"{adapter_dir}: no adapter (run the finetune stage first)")
    questions = select_questions(ingest_dir, "test", cfg.benchmark.max_samples)
    memory = MemoryLog()
    method = finetune_method(finetune_dir)
    model = base_model(cfg, method)
    generator = generator or load_generator(model)  # a private copy: the adapter is injected into it
    memory.record("load model")
    prompts = stage_prompts(cfg, generator.tokenizer, cfg.benchmark.mode, questions, ingest_dir,
                            "benchmark.mode")
    gen = generation_config(cfg)
    rows: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {}
    for which in MODELS:
        if which == "tuned":
            generator = generator.with_adapter(adapter_dir, model.load_in_4bit or model.load_in_8bit)
        t0 = time.perf_counter()
        bar = progress(len(prompts), f"benchmark {which}") if progress else None
        outputs = generate_all(generator, prompts, gen, answered=bar.update if bar else None)
        if bar is not None:
            bar.close()
        seconds[which] = time.perf_counter() - t0
        rows[which] = [score_row(q, out) for q, out in zip(questions, outputs)]
        memory.record(f"generate {which}")

    samples = cfg.benchmark.bootstrap_samples
    summary = {"base": aggregate(rows["base"], samples), "tuned": aggregate(rows["tuned"], samples),
               "delta": paired_deltas(rows["base"], rows["tuned"], samples)}
    results = {
        **flat_metrics(summary), "num_examples": len(questions), "mode": cfg.benchmark.mode,
        "model": cfg.model.name, "adapter_dir": str(adapter_dir), "quantization": quantization(model),
        "finetune_method": method,
        "model_size_mb": round(generator.model_size_bytes / MB, 2), "backend": generator.backend,
        "backend_version": generator.backend_version, "precision": generator.precision,
        **{f"generation_seconds_{m}": round(seconds[m], 3) for m in MODELS},
        **{f"generated_tokens_per_second_{m}": round(sum(r["new_tokens"] for r in rows[m]) / seconds[m], 2)
           if seconds[m] else 0.0 for m in MODELS},
        **memory.peak_usage(), **memory.energy(), "duration_seconds": round(time.perf_counter() - started, 3),
        "summary": summary,
    }
    plot_paths = write_plots(summary, rows, output_dir)
    results["plots"] = [str(p) for p in plot_paths]
    results["meta"] = {**stamp(__name__), "config": cfg.to_dict(), "bootstrap_seed": BOOTSTRAP_SEED}
    for which in MODELS:
        write_jsonl(output_dir / PREDICTION_FILES[which], rows[which])
    write_text(output_dir / REPORT_FILE, render_report(cfg, results, rows))
    write_json(output_dir / BENCHMARK_FILE, results)
    write_json(output_dir / RESULTS_FILE, results)  # last: its presence means the run completed
    return results

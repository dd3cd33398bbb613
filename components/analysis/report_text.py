"""The report page's explaining parts: what was run (metadata at the top), the run's fine-tune and
benchmark results, and what every figure means (metrics, CIs, right/wrong, the split, the costs)."""
from __future__ import annotations

import html
import json

from components.analysis.rag_split import DEFINITIONS, GROUPS

esc = html.escape
BENCHMARK_METRICS = ("token_f1", "exact_match", "key_info", "key_info_numbers", "key_info_terms", "length_ratio")
FINETUNE_FIELDS = (("method", "method"), ("mode", "prompt mode"), ("global_step", "optimizer steps"),
                   ("num_train_examples", "training examples"), ("train_loss_first", "first training loss"),
                   ("train_loss_last", "last training loss"), ("eval_loss", "eval loss"),
                   ("trainable_params", "trainable parameters"), ("duration_seconds", "duration (s)"))


def _setting(v) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4f}".rstrip("0").rstrip(".")
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return v if isinstance(v, str) else json.dumps(v)


def _link(item: dict) -> str:
    return f'<a href="{esc(item["url"])}">{esc(item["name"])}</a>' if item.get("url") else esc(item["name"])


def meta_table(info: dict, extras: dict) -> str:
    dates = info["date_first"] if info["date_first"] == info["date_last"] else \
        f"{info['date_first']} … {info['date_last']}"
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    datasets = "; ".join(f"{esc(name)} ({d['questions']} questions evaluated, <code>{esc(str(d['path']))}</code>)"
                         for name, d in info["datasets"].items())
    settings = "<br>".join(f"<code>{esc(k)}={esc(' | '.join(_setting(v) for v in values))}</code>"
                           for k, values in info["settings"].items()) or "none (every setting at its default)"
    codes = info.get("code_versions", [])
    code = f' · code {esc(", ".join(codes))}' if codes else ""
    if len(codes) > 1:
        code += f' <strong>({len(codes)} code versions: these evals were not all made by the same code)</strong>'
    rows = [("date of the evals", esc(dates)),
            ("commit", esc(", ".join(c[:12] for c in info["commits"]) or "unknown") + code
             + (f' <span class="muted">({esc(versions)})</span>' if versions else "")),
            ("model(s)", esc(", ".join(info["models"]))), ("dataset(s)", datasets),
            ("settings that differ from the defaults", settings)]
    steps = extras.get("steps") or []
    if steps:
        rows.append(("steps", " · ".join(_link(s) for s in steps)))
    body = "".join(f'<tr><th>{label}</th><td>{value}</td></tr>' for label, value in rows)
    return f'<table class="meta" id="run-meta">{body}</table>'


def _ci(cell: dict | None) -> str:
    if not cell or cell.get("mean") is None:
        return "-"
    ci = "" if cell.get("ci_low") is None else f' <span class="ci">[{cell["ci_low"]:.3f}, {cell["ci_high"]:.3f}]</span>'
    return f"{cell['mean']:.3f}{ci}"


def _benchmark(item: dict) -> str:
    r = item["results"]
    summary = r.get("summary", {})
    rows = "".join(f'<tr><td>{esc(m)}</td><td class="num">{_ci(summary.get("base", {}).get(m))}</td>'
                   f'<td class="num">{_ci(summary.get("tuned", {}).get(m))}</td>'
                   f'<td class="num">{_ci(summary.get("delta", {}).get(m))}</td></tr>'
                   for m in BENCHMARK_METRICS if m in summary.get("base", {}))
    return (f"<h3>Benchmark {_link(item)}: {esc(str(r.get('model', '')))}, {r.get('num_examples', '?')} held-out "
            f"questions, {esc(str(r.get('mode', '')))}</h3><table class=\"benchmark\"><tr><th>metric</th><th>base</th>"
            f"<th>tuned</th><th>tuned - base (paired CI)</th></tr>{rows}</table>")


def _finetune(item: dict) -> str:
    r = item["results"]
    rows = "".join(f"<tr><th>{esc(label)}</th><td>{esc(_value(r[key]))}</td></tr>"
                   for key, label in FINETUNE_FIELDS if r.get(key) is not None)
    return f"<h3>Fine-tune {_link(item)}: {esc(str(r.get('model', '')))}</h3><table class=\"meta\">{rows}</table>"


def extras_section(extras: dict) -> str:
    """The run's fine-tune and benchmark results, when it had them."""
    parts = [_finetune(f) for f in extras.get("finetune") or []]
    parts += [_benchmark(b) for b in extras.get("benchmark") or []]
    if not parts:
        return ""
    return ('<section id="finetune-benchmark"><h2>Fine-tune and benchmark</h2><p class="muted">The LoRA adapter '
            "trained in this run, and the base model against base + adapter on the held-out questions (95% "
            f"bootstrap CIs; the difference is paired over the same questions).</p>{''.join(parts)}</section>")


def definitions(board: dict) -> str:
    samples, at = board["bootstrap_samples"], board["correct_at"]
    items = [
        ("token_recall", "share of the gold answer's tokens found in the answer: |Counter(gold) ∩ Counter(answer)| "
                         "/ |gold| after SQuAD normalisation (lowercase, no punctuation, no a/an/the), the best "
                         "over the gold answers (BERGEN, FlashRAG). The default ranking."),
        ("token_f1", "the SQuAD token F1 between answer and gold answer, the best over the gold answers."),
        ("exact_match", "1 when the normalised answer equals a normalised gold answer, else 0."),
        ("substring_match", "1 when a normalised gold answer occurs inside the normalised answer, else 0."),
        ("right / wrong", f"an answer is right when the chosen metric is at least {at} (exact and substring match "
                          "are 0 or 1; token recall and F1 count from half the gold tokens)."),
        ("95% CI", f"percentile bootstrap over the questions ({samples} resamples, fixed seed): the range the mean "
                   "would fall in if the questions were drawn again. Two systems whose intervals overlap may not "
                   "differ; to compare two systems on the same questions, read their paired difference, whose CI "
                   "resamples the same questions for both: above 0 is a real gain, spanning 0 cannot tell."),
        *((GROUPS[g], d) for g, d in (("gold_right", "the retriever brought the gold passage and the answer is "
                                                     "right."),
                                      ("gold_wrong", "the passage was there and the model still answered wrong: "
                                                     "a reading failure."),
                                      ("nogold_right", "right without the gold passage: the model knew it "
                                                       "(parametric) or another passage sufficed."),
                                      ("nogold_wrong", "the gold passage was not retrieved and the answer is "
                                                       "wrong: a retrieval failure."))),
        *((f"gold retrieved ({k})", v) for k, v in DEFINITIONS.items()),
        ("seconds per question", "the eval's generation time divided by its questions (model loading excluded)."),
        ("peak CPU RAM of this eval", "the process's resident-memory high-water mark during that eval, reset when "
                                      "the eval started, so evals sharing one process do not inherit each other's "
                                      "peak; marked \"process peak\" where the platform could not reset it."),
        ("peak GPU memory", "torch's allocator peak during that eval (0 without a GPU)."),
    ]
    body = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items)
    return f'<section id="definitions"><h2>Definitions</h2><dl class="defs">{body}</dl></section>'

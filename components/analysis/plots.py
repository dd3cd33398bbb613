"""PNG plots for the finetune, benchmark and report stages. Each function writes one file atomically and returns
its path.

matplotlib is imported inside the functions and only its object API is used (Figure + the Agg canvas):
no pyplot global state, no GUI backend, safe in a headless agent and in a process that plots repeatedly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from components.core.fileio import atomic_path

BASE_COLOR, TUNED_COLOR, SMOOTH_COLOR, EVAL_COLOR = "#7f7f7f", "#1f77b4", "#d62728", "#2ca02c"
MODEL_COLORS = {"base": BASE_COLOR, "tuned": TUNED_COLOR}


def ema(values: Sequence[float], weight: float = 0.6) -> list[float]:
    """TensorBoard-style exponential moving average, debiased so the first points are not pulled to 0."""
    smoothed, running = [], 0.0
    for t, value in enumerate(values, start=1):
        running = weight * running + (1 - weight) * value
        smoothed.append(running / (1 - weight ** t))
    return smoothed


def _new_figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def _series(log_history: Sequence[Mapping], key: str) -> tuple[list[int], list[float]]:
    points = [(int(e["step"]), float(e[key])) for e in log_history if key in e and "step" in e]
    return [s for s, _ in points], [v for _, v in points]


def training_loss(log_history: Sequence[Mapping], path: Path, weight: float = 0.6) -> Path:
    """Logged training loss (raw and EMA-smoothed) per optimizer step, eval loss as markers."""
    fig = _new_figure()
    ax = fig.add_subplot()
    steps, loss = _series(log_history, "loss")
    if steps:
        ax.plot(steps, loss, color=TUNED_COLOR, alpha=0.5, label="train loss (raw)")
        ax.plot(steps, ema(loss, weight), color=SMOOTH_COLOR, label=f"train loss (EMA {weight})")
    eval_steps, eval_loss = _series(log_history, "eval_loss")
    if eval_steps:
        ax.plot(eval_steps, eval_loss, "o--", color=EVAL_COLOR, label="eval loss")
    ax.set(title="Training loss", xlabel="optimizer step", ylabel="loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def learning_rate(log_history: Sequence[Mapping], path: Path) -> Path:
    fig = _new_figure()
    ax = fig.add_subplot()
    steps, lr = _series(log_history, "learning_rate")
    ax.plot(steps, lr, color=TUNED_COLOR, marker=".")
    ax.set(title="Learning rate", xlabel="optimizer step", ylabel="learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.grid(alpha=0.3)
    return _save(fig, path)


def metric_bars(summaries: Mapping[str, Mapping[str, Mapping]], metrics: Sequence[str], path: Path,
                title: str = "Base vs tuned", ylabel: str = "mean", size: tuple[float, float] | None = None) -> Path:
    """Grouped bars: one group per metric, one bar per model; error bars span the 95% bootstrap CI.

    `summaries[model][metric]` is {"mean", "ci_low", "ci_high"}; a metric without a mean is skipped. The
    legend sits beside the axes, never over the bars.
    """
    import numpy as np

    shown = [m for m in metrics if all(summaries[model].get(m, {}).get("mean") is not None for model in summaries)]
    fig = _new_figure(*(size or (max(8.0, 1.6 * len(shown) + 4), 4.8)))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(summaries))
    x = np.arange(len(shown))
    for i, (model, summary) in enumerate(summaries.items()):
        means = np.array([summary[m]["mean"] for m in shown], dtype=float)
        lows = np.array([_or(summary[m].get("ci_low"), summary[m]["mean"]) for m in shown], dtype=float)
        highs = np.array([_or(summary[m].get("ci_high"), summary[m]["mean"]) for m in shown], dtype=float)
        ax.bar(x + (i - (len(summaries) - 1) / 2) * width, means, width, label=model,
               color=MODEL_COLORS.get(model), yerr=[means - lows, highs - means], capsize=4)
    ax.set_xticks(x, shown, rotation=15 if max((len(m) for m in shown), default=0) > 12 else 0, ha="right")
    ax.set(title=f"{title} (95% bootstrap CI)", ylabel=ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=10, frameon=False)
    return _save(fig, path)


def _or(value, default):
    return default if value is None else value


def histograms(series: Mapping[str, Sequence[float]], path: Path, title: str, xlabel: str,
               bins: int | Sequence[float] = 10) -> Path:
    """Overlaid histograms, one per named series (e.g. base and tuned), on shared bins."""
    import numpy as np

    fig = _new_figure()
    ax = fig.add_subplot()
    values = [v for vs in series.values() for v in vs]
    edges = np.histogram_bin_edges(values, bins=bins) if values else bins
    for name, vs in series.items():
        ax.hist(list(vs), bins=edges, alpha=0.5, label=f"{name} (n={len(vs)})", color=MODEL_COLORS.get(name),
                edgecolor="black", linewidth=0.5)
    ax.set(title=title, xlabel=xlabel, ylabel="questions")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def quality_vs_cost(points: Sequence[tuple[str, Mapping, Mapping]], cost: str, metric: str, path: Path,
                    xlabel: str, markers: Mapping[str, str] | None = None,
                    size: tuple[float, float] = (10.0, 4.8)) -> Path:
    """One marker per (system, mode): x = a cost of that eval, y = the metric with its CI as a whisker;
    `markers` gives a point's marker by its label (e.g. one shape per mode). The legend sits beside the axes."""
    fig = _new_figure(*size)
    ax = fig.add_subplot()
    for label, costs, cell in points:
        if cell.get("mean") is None:
            continue
        low, high = _or(cell.get("ci_low"), cell["mean"]), _or(cell.get("ci_high"), cell["mean"])
        ax.errorbar([costs[cost]], [cell["mean"]], yerr=[[cell["mean"] - low], [high - cell["mean"]]],
                    fmt=(markers or {}).get(label, "o"), markersize=8, capsize=4, label=label)
    ax.set(title=f"{metric} vs {xlabel}", xlabel=xlabel, ylabel=f"{metric} (95% CI)")
    ax.grid(alpha=0.3)
    if points:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=10, frameon=False)
    return _save(fig, path)

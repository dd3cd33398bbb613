"""Interactive plots for the ClearML UI: the same charts as `plots.py`'s PNG files, as plotly figures written
as plain dicts (ClearML's `report_plotly` takes one; no plotly import here). A figure is hoverable and
zoomable in PLOTS, where a PNG under DEBUG SAMPLES is only a picture."""
from __future__ import annotations

from typing import Mapping, Sequence

from components.analysis.plots import MODEL_COLORS


def _whiskers(cells: Sequence[Mapping]) -> dict:
    """A plotly error bar from the 95% CI of each cell ({"mean", "ci_low", "ci_high"}); 0 where it has none."""
    def part(cell: Mapping, bound: str) -> float:
        value = cell.get(bound)
        return 0.0 if value is None else abs(value - cell["mean"])

    return {"type": "data", "symmetric": False, "array": [part(c, "ci_high") for c in cells],
            "arrayminus": [part(c, "ci_low") for c in cells], "visible": True}


def metric_bars(summaries: Mapping[str, Mapping[str, Mapping]], metrics: Sequence[str], title: str) -> dict:
    """Grouped bars: one group per metric, one bar per series (model, system), whiskers spanning the 95%
    bootstrap CI; `summaries[series][metric]` is {"mean", "ci_low", "ci_high"} (plots.metric_bars' input)."""
    shown = [m for m in metrics if all(summaries[s].get(m, {}).get("mean") is not None for s in summaries)]
    data = []
    for series, summary in summaries.items():
        cells = [summary[m] for m in shown]
        bar = {"type": "bar", "name": series, "x": list(shown), "y": [c["mean"] for c in cells],
               "error_y": _whiskers(cells)}
        if series in MODEL_COLORS:
            bar["marker"] = {"color": MODEL_COLORS[series]}
        data.append(bar)
    return {"data": data, "layout": {"title": f"{title} (95% bootstrap CI)", "barmode": "group",
                                     "yaxis": {"title": "mean"}}}


def histograms(series: Mapping[str, Sequence[float]], title: str, xaxis: str,
               bin_size: float | None = None) -> dict:
    """Overlaid histograms, one per named series (base and tuned), on shared bins of `bin_size`."""
    data = []
    for name, values in series.items():
        trace = {"type": "histogram", "name": f"{name} (n={len(values)})", "x": list(values), "opacity": 0.6}
        if bin_size:
            trace["xbins"] = {"start": 0, "size": bin_size}
        if name in MODEL_COLORS:
            trace["marker"] = {"color": MODEL_COLORS[name]}
        data.append(trace)
    return {"data": data, "layout": {"title": title, "barmode": "overlay", "xaxis": {"title": xaxis},
                                     "yaxis": {"title": "questions"}}}


def quality_vs_cost(points: Sequence[tuple[str, Mapping, Mapping]], cost: str, metric: str, xaxis: str) -> dict:
    """One marker per (label, costs, cell): x = a cost, y = the metric with its CI whisker (plots.quality_vs_cost)."""
    data = [{"type": "scatter", "mode": "markers", "name": label, "x": [costs.get(cost)], "y": [cell["mean"]],
             "error_y": _whiskers([cell])} for label, costs, cell in points if cell.get("mean") is not None]
    return {"data": data, "layout": {"title": f"{metric} vs {xaxis}", "xaxis": {"title": xaxis},
                                     "yaxis": {"title": f"{metric} (95% CI)"}}}

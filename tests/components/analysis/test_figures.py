"""Interactive plots for the ClearML UI, as plotly dicts: bars with CI whiskers, overlaid histograms,
quality vs cost (each mirrors a PNG of plots.py)."""
from __future__ import annotations

import json

from components.analysis import figures


def test_bars_have_one_trace_per_series_with_asymmetric_ci_whiskers():
    summaries = {"base": {"token_f1": {"mean": 0.4, "ci_low": 0.3, "ci_high": 0.45}, "exact_match": {"mean": None}},
                 "tuned": {"token_f1": {"mean": 0.5, "ci_low": None, "ci_high": None}, "exact_match": {"mean": 0.2}}}
    fig = figures.metric_bars(summaries, ["token_f1", "exact_match"], "Base vs tuned")
    base, tuned = fig["data"]
    assert base["x"] == ["token_f1"] and base["y"] == [0.4]  # a metric without a mean everywhere is left out
    assert base["error_y"]["array"] == [0.04999999999999999] and base["error_y"]["arrayminus"] == [0.10000000000000003]
    assert tuned["error_y"]["array"] == [0.0] and base["marker"]["color"] != tuned["marker"]["color"]
    assert fig["layout"]["barmode"] == "group" and "95% bootstrap CI" in fig["layout"]["title"]
    json.dumps(fig)  # what report_plotly sends


def test_histograms_overlay_series_on_shared_bins_and_scatter_has_whiskers():
    fig = figures.histograms({"base": [0.1, 0.5], "tuned": [0.9]}, "Token F1", "token F1", bin_size=0.1)
    assert [t["name"] for t in fig["data"]] == ["base (n=2)", "tuned (n=1)"]
    assert all(t["type"] == "histogram" and t["xbins"] == {"start": 0, "size": 0.1} for t in fig["data"])
    assert fig["layout"]["barmode"] == "overlay"
    points = [("demo / no_context", {"seconds_per_question": 0.2}, {"mean": 0.3, "ci_low": 0.2, "ci_high": 0.4}),
              ("empty", {"seconds_per_question": 0.1}, {"mean": None})]
    scatter = figures.quality_vs_cost(points, "seconds_per_question", "token_recall", "seconds per question")
    assert len(scatter["data"]) == 1 and scatter["data"][0]["x"] == [0.2] and scatter["data"][0]["y"] == [0.3]

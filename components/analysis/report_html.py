"""The leaderboard as one self-contained HTML page: the table (best per column in bold), the paired
differences and the plots embedded as data: URIs, so it opens in any browser with nothing to fetch.
Also the cell formatting the Markdown table shares."""
from __future__ import annotations

import base64
import html
from pathlib import Path


COSTS = ("model_size_mb", "cpu_ram_used_mb", "gpu_ram_peak_mb", "seconds_per_question")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def cell_text(cell: dict) -> str:
    return f"{_fmt(cell['mean'])} [{_fmt(cell['ci_low'])}, {_fmt(cell['ci_high'])}]"


def is_best(board: dict, mode: str, metric: str, cell: dict) -> bool:
    return cell["mean"] is not None and cell["mean"] == board["best"][f"{mode}/{metric}"]


# Marks the page once every plot has decoded, so a headless browser (the report's own test) can tell a
# page that renders from one with a broken image; no network, nothing else.
SELF_CHECK = ("<script>window.addEventListener('load', () => { const imgs = [...document.images]; "
              "document.body.dataset.imagesOk = imgs.filter(i => i.complete && i.naturalWidth > 0).length "
              "+ '/' + imgs.length; });</script>")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
td.best { font-weight: bold; background: #e8f4e8; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def render_html(board: dict, plot_paths: dict[str, Path]) -> str:
    metric, modes = board["metric"], board["modes"]
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in ["system", *modes, *COSTS])
    body = []
    for r in board["rows"]:
        cells = []
        for m in modes:
            cell = r["cells"].get(m, {}).get(metric)
            best = ' class="best"' if cell and is_best(board, m, metric, cell) else ""
            cells.append(f"<td{best}>{esc(cell_text(cell)) if cell else '-'}</td>")
        costs = "".join(f"<td>{esc(str(r['costs'][c]))}</td>" for c in COSTS)
        body.append(f"<tr><td>{esc(r['system'])}</td>{''.join(cells)}{costs}</tr>")
    diffs = [f"<tr><td>{esc(r['system'])}</td><td>{esc(name)}</td><td>{esc(cell_text(d))}</td><td>{d['n']}</td></tr>"
             for r in board["rows"] for name, d in r["differences"].items()]
    diff_table = ("<h2>Paired differences</h2><table id=\"differences\"><tr><th>system</th><th>difference</th>"
                  f"<th>{esc(metric)} [95% CI]</th><th>questions</th></tr>{''.join(diffs)}</table>") if diffs else ""
    figures = "".join(_img(p, name) for name, p in plot_paths.items())
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Leaderboard: {esc(metric)}"
            f"</title><style>{STYLE}</style></head><body><h1>Leaderboard: {esc(metric)}</h1>"
            f"<p>95% bootstrap confidence intervals ({board['bootstrap_samples']} resamples); best per column in "
            f"bold.</p><table id=\"leaderboard\"><tr>{head}</tr>{''.join(body)}</table>{diff_table}"
            f"<h2>Plots</h2>{figures}{SELF_CHECK}</body></html>\n")

"""The report as one self-contained HTML page: run metadata, the leaderboard, each eval's costs, the
retrieval-vs-reading split, the paired differences, the run's fine-tune and benchmark results, the plots,
a per-question drill-down and the definitions. Every metric's tables are in the page; a selector shows one
(the plots are drawn for the report's metric). Plots are data: URIs, the style and script are inline
(report_assets/), the per-question data is an embedded compressed block: it opens in any browser with
nothing to fetch."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from components.analysis.drilldown import encode
from components.analysis.leaderboard import COST_LABELS, EVAL_COSTS, cost_text, is_best, share_text
from components.analysis.rag_split import DEFINITIONS, GROUPS
from components.analysis.report_text import definitions, extras_section, meta_table

ASSETS = Path(__file__).parent / "report_assets"
esc = html.escape


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def _hidden(metric: str, board: dict) -> str:
    return f' data-metric="{esc(metric)}"' + ("" if metric == board["metric"] else " hidden")


def _num(cell: dict | None, link: dict | None = None, best: bool = False) -> str:
    if not cell or cell.get("mean") is None:
        return '<td class="num">-</td>'
    mean = f"{cell['mean']:.3f}"
    if link and link.get("url"):
        mean = f'<a href="{esc(link["url"])}" title="{esc(link["kind"])} of this eval">{mean}</a>'
    ci = "" if cell.get("ci_low") is None else f' <span class="ci">[{cell["ci_low"]:.3f}, {cell["ci_high"]:.3f}]</span>'
    return f'<td class="num{" best" if best else ""}">{mean}{ci}</td>'


def _leaderboard(board: dict) -> str:
    links = {e["name"]: e["link"] for e in board["evals"]}
    tables = []
    for metric in board["metrics"]:
        head = "".join(f"<th>{esc(m)}</th>" for m in board["modes"])
        body = []
        for r in board["rows"]:
            cells = []
            for m in board["modes"]:
                cell = r["cells"].get(m, {}).get(metric)
                cells.append(_num(cell, links.get(cell["eval"]) if cell else None,
                                  bool(cell) and is_best(board, m, metric, cell)))
            body.append(f"<tr><td>{esc(r['system'])}</td>{''.join(cells)}"
                        f"<td class=\"num\">{r['costs']['model_size_mb']}</td></tr>")
        tables.append(f'<table class="leaderboard"{_hidden(metric, board)}><tr><th>system</th>{head}'
                      f"<th>{COST_LABELS['model_size_mb']}</th></tr>{''.join(body)}</table>")
    return ('<section id="leaderboard"><h2>Leaderboard: <span class="metric-name">'
            f'{esc(board["metric"])}</span></h2><p class="muted">One row per system; each cell the mean over the '
            "questions with its 95% bootstrap CI, linked to the eval it came from. Best per column in bold "
            f"(when there is more than one system).</p>{''.join(tables)}</section>")


def _costs(board: dict) -> str:
    head = "".join(f"<th>{esc(COST_LABELS[c])}</th>" for c in EVAL_COSTS)
    rows = []
    for e in board["evals"]:
        link = f'<a href="{esc(e["link"]["url"])}">{esc(e["link"]["kind"])}</a>' if e["link"]["url"] else "-"
        scope = "" if e["cpu_ram_scope"] == "step" else " (process peak)"
        values = "".join(f'<td class="num">{cost_text(e["costs"][c])}{scope if c == "cpu_ram_used_mb" else ""}'
                         '</td>' for c in EVAL_COSTS)
        rows.append(f"<tr><td>{esc(e['label'])}</td><td class=\"num\">{e['n']}</td>{values}<td>{link}</td></tr>")
    return ('<section id="costs"><h2>Each eval\'s own costs</h2><table id="cost-table"><tr><th>eval</th>'
            f"<th>questions</th>{head}<th>ran as</th></tr>{''.join(rows)}</table></section>")


def _splitbar(split: dict) -> str:
    parts = "".join(f'<span class="g-{g}" style="width:{100 * (split["groups"][g]["share"] or 0):.2f}%" '
                    f'title="{esc(GROUPS[g])}"></span>' for g in GROUPS)
    return f'<div class="splitbar">{parts}</div>'


def _of(split: dict) -> str:
    """The questions split: `n`, or `n of total` when questions without a gold passage were left out."""
    return str(split["n"]) if split["n"] == split["n_total"] else f"{split['n']} of {split['n_total']}"


def _split(board: dict) -> str:
    evals = [e for e in board["evals"] if e.get("rag_split")]
    if not evals:
        return ""
    tables = []
    for metric in board["metrics"]:
        rows = []
        for e in evals:
            s = e["rag_split"][metric]
            if s is None:
                rows.append(f"<tr><td>{esc(e['label'])}</td><td colspan=\"{len(GROUPS) + 5}\">this eval's "
                            "predictions carry no passage flags (written before they existed): run it again</td></tr>")
                continue
            shares = "".join(f'<td class="num" data-group="{g}">{esc(share_text(s["groups"][g]))}'
                             f'<br><span class="muted">{s["groups"][g]["count"]} questions</span></td>' for g in GROUPS)
            helped = s.get("context_helped", "-"), s.get("context_hurt", "-")
            rows.append(f"<tr data-eval=\"{esc(e['name'])}\"><td>{esc(e['label'])}</td><td>{esc(s['definition'])}"
                        f"</td><td class=\"num\">{_of(s)}</td><td>{_splitbar(s)}</td>{shares}"
                        f'<td class="num">{helped[0]}</td><td class="num">{helped[1]}</td></tr>')
        head = "".join(f'<th><span class="sw g-{g}"></span>{esc(label)}</th>' for g, label in GROUPS.items())
        tables.append(f'<table class="split"{_hidden(metric, board)}><tr><th>eval</th><th>gold retrieved by</th>'
                      f"<th>questions</th><th>shares</th>{head}<th>context helped</th><th>context hurt</th></tr>"
                      f"{''.join(rows)}</table>")
    defs = " ".join(f"<b>{esc(k)}</b>: {esc(v)}." for k, v in DEFINITIONS.items())
    return ('<section id="rag-split"><h2>Retrieval vs reading</h2><p class="muted">Each question of a retriever '
            f"eval in one of four groups; right = <span class=\"metric-name\">{esc(board['metric'])}</span> &ge; "
            f"{board['correct_at']}; shares with 95% bootstrap CIs (they sum to 1). Context helped / hurt: right "
            f"with the passages and wrong without them (the same system's no_context answer), and the reverse. "
            f"{defs}</p>{''.join(tables)}</section>")


def _differences(board: dict) -> str:
    tables = []
    for metric in board["metrics"]:
        rows = [f"<tr><td>{esc(r['system'])}</td><td>{esc(name)}</td>{_num(d)}<td class=\"num\">{d['n']}</td></tr>"
                for r in board["rows"] for name, d in r["differences"][metric].items()]
        if rows:
            tables.append(f'<table class="differences"{_hidden(metric, board)}><tr><th>system</th><th>difference'
                          f"</th><th>{esc(metric)} [95% CI]</th><th>questions</th></tr>{''.join(rows)}</table>")
    if not tables:
        return ""
    return ('<section id="differences"><h2>Paired differences</h2><p class="muted">The same system\'s modes on '
            "the same questions: oracle - no_context is how much the right passage could help, retriever - "
            "no_context how much retrieval does help. A CI above 0 is a real gain; one that spans 0 cannot tell."
            f"</p>{''.join(tables)}</section>")


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}"></figure>'


def _plots(plot_paths: dict[str, Path], board: dict) -> str:
    note = (f'<p class="muted">Drawn for {esc(board["metric"])} (<code>slm report --metric NAME</code> draws them '
            "for another metric). Bars: one group per system, one bar per mode, whiskers the 95% CI. Scatter: one "
            "marker per eval (circle no_context, square oracle_context, triangle retriever_context).</p>")
    figures = "".join(_img(p, kind) for kind, p in plot_paths.items())
    return f'<section id="plots"><h2>Plots</h2>{note}{figures}</section>'


def _drilldown(drill: dict) -> str:
    outcomes = {"all": "all questions", "a_wrong_b_right": "wrong in A, right in B",
                "a_right_b_wrong": "right in A, wrong in B", "differ": "A and B differ", "both_wrong": "both wrong",
                "both_right": "both right"}
    sorts = {"order": "file order", "hardest": "fewest cells right first", "easiest": "most cells right first",
             "a_score": "A's score, low first", "b_score": "B's score, low first", "question": "question text"}
    options = lambda d: "".join(f'<option value="{k}">{esc(v)}</option>' for k, v in d.items())  # noqa: E731
    return ('<section id="questions"><h2>Questions</h2><p class="muted">Every question with its gold answers and '
            "each cell's answer, marked right or wrong by the chosen metric. Click a question to see every cell's "
            "answer side by side with the passages it saw. Pick two cells as A and B to filter by outcome and "
            "compare them.</p><div class=\"filters\">"
            '<label>find <input id="qfilter" type="search" placeholder="question, gold or answer text"></label>'
            '<label>A <select id="cell-a"></select></label><label>B <select id="cell-b"></select></label>'
            f'<label>show <select id="outcome">{options(outcomes)}</select></label>'
            f'<label>sort <select id="qsort">{options(sorts)}</select></label></div>'
            '<div id="compare"></div><div class="pager"><button id="prev" type="button">&larr; previous</button>'
            '<button id="next" type="button">next &rarr;</button><span id="qcount">loading…</span></div>'
            '<table id="qtable"><thead><tr></tr></thead><tbody></tbody></table><div id="detail" hidden></div>'
            f'<script type="application/octet-stream" id="drilldown-data">{encode(drill)}</script></section>')


def render_html(board: dict, plot_paths: dict[str, Path], drill: dict, info: dict, extras: dict) -> str:
    metric = board["metric"]
    selector = "".join(f'<option value="{esc(m)}"{" selected" if m == metric else ""}>{esc(m)}</option>'
                       for m in board["metrics"])
    sections = [_leaderboard(board), _costs(board), _split(board), _differences(board), extras_section(extras),
                _plots(plot_paths, board), _drilldown(drill), definitions(board)]
    nav = "".join(f'<a href="#{target}">{label}</a>' for target, label in (
        ("leaderboard", "leaderboard"), ("costs", "costs"), ("rag-split", "retrieval vs reading"),
        ("differences", "differences"), ("finetune-benchmark", "fine-tune & benchmark"), ("plots", "plots"),
        ("questions", "questions"), ("definitions", "definitions")) if f'id="{target}"' in "".join(sections))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Report: {esc(info["name"])}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_asset("report.css")}'
            f'</style></head><body><h1>Report: {esc(info["name"])}</h1>{meta_table(info, extras)}<nav>{nav}</nav>'
            f'<div class="controls"><label>metric <select id="metric">{selector}</select></label>'
            '<span class="muted">ranks the leaderboard, marks answers right or wrong and picks the plots</span>'
            f'</div>{"".join(sections)}<script>{_asset("report.js")}</script></body></html>\n')

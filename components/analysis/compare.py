"""Two runs diffed: the config difference, and per cell (system x mode) both runs have, the metric
difference B - A with a paired bootstrap CI over the questions both answered, and the questions gained
(wrong in A, right in B) and lost (right in A, wrong in B) with both answers.

Cells are matched on what their evals read: the same config first, then the same config apart from the
settings that changed outright between the runs (no value in common), then the mode alone (the runs differ
in the model), each only where it pairs one eval of A with one of B.
"""
from __future__ import annotations

import html

from components.analysis.evals import NOT_A_SYSTEM, EvalEntry, cell_labels, group_systems
from components.analysis.leaderboard import cell_text, difference
from components.analysis.rag_split import CORRECT_AT, is_right
from components.analysis.run_info import BOOKKEEPING, flat

esc = html.escape
SHOWN = 10  # gained / lost questions printed per cell (the files hold them all)


def config_difference(a: list[EvalEntry], b: list[EvalEntry]) -> dict[str, dict[str, list]]:
    """`section.field` -> {"A": values, "B": values} for every field whose values differ between the runs."""
    def values(entries: list[EvalEntry]) -> dict[str, list]:
        found: dict[str, list] = {}
        for e in entries:
            for key, value in flat(e.results.get("meta", {}).get("config", {})).items():
                if key not in (*BOOKKEEPING, *NOT_A_SYSTEM) and value not in found.setdefault(key, []):
                    found[key].append(value)
        return found

    va, vb = values(a), values(b)
    return {k: {"A": va.get(k, []), "B": vb.get(k, [])} for k in sorted(set(va) | set(vb))
            if sorted(map(repr, va.get(k, []))) != sorted(map(repr, vb.get(k, [])))}


def _match(a: list[EvalEntry], b: list[EvalEntry], differing: set[str]) -> list[tuple[EvalEntry, EvalEntry]]:
    """Pairs of evals that are the same cell in both runs, matched in rounds, each on a key that is unique
    on both sides: the whole config the eval reads; that config less the settings that changed between the
    runs; the mode alone."""
    def by_config(drop: set[str]):
        return lambda e: (e.mode, e.results.get("model"), e.results.get("dataset"),
                          repr(sorted((k, repr(v)) for k, v in e.config.items() if k not in drop)))

    pairs, left_a, left_b = [], list(a), list(b)
    for key in (by_config(set(NOT_A_SYSTEM)), by_config(set(NOT_A_SYSTEM) | differing), lambda e: e.mode):
        keys_a, keys_b = [key(e) for e in left_a], [key(e) for e in left_b]
        for ea, k in list(zip(left_a, keys_a)):
            if keys_a.count(k) == 1 and keys_b.count(k) == 1:
                eb = left_b[keys_b.index(k)]
                pairs.append((ea, eb))
                left_a.remove(ea)
                left_b.remove(eb)
                keys_b.remove(k)
    return sorted(pairs, key=lambda p: a.index(p[0]))


def _question(q: str, ra: dict, rb: dict, metric: str) -> dict:
    return {"id": q, "question": ra["question"], "answers": ra["answers"], "a": ra["prediction"],
            "b": rb["prediction"], "a_score": ra[metric], "b_score": rb[metric]}


def compare_runs(a: list[EvalEntry], b: list[EvalEntry], metric: str = "token_recall", samples: int = 1000,
                 names: tuple[str, str] = ("A", "B")) -> dict:
    group_systems(a), group_systems(b)  # two evals of one cell in a run are an error here too
    differing = config_difference(a, b)
    labels_a, labels_b = cell_labels(a), cell_labels(b)
    # what changed outright (no value in common), e.g. max_new_tokens 8 -> 3, but not top_k 1|3 -> 3
    changed = {k for k, v in differing.items() if not {repr(x) for x in v["A"]} & {repr(x) for x in v["B"]}}
    pairs = _match(a, b, changed)
    shared = []
    for ea, eb in pairs:
        label_a, label_b = labels_a[ea.name], labels_b[eb.name]
        rows_a, rows_b = {r["id"]: r for r in ea.rows}, {r["id"]: r for r in eb.rows}
        common = [q for q in rows_a if q in rows_b]
        right = {q: (is_right(rows_a[q][metric]), is_right(rows_b[q][metric])) for q in common}
        shared.append({
            "label": label_a if label_a == label_b else f"{label_a} vs {label_b}", "mode": ea.mode,
            "a_eval": ea.name, "b_eval": eb.name, "n": len(common),
            "a_mean": round(sum(rows_a[q][metric] for q in common) / len(common), 6) if common else None,
            "b_mean": round(sum(rows_b[q][metric] for q in common) / len(common), 6) if common else None,
            "difference": difference(eb.rows, ea.rows, metric, samples),
            "gained": [_question(q, rows_a[q], rows_b[q], metric) for q in common if right[q] == (False, True)],
            "lost": [_question(q, rows_a[q], rows_b[q], metric) for q in common if right[q] == (True, False)]})
    return {"metric": metric, "correct_at": CORRECT_AT, "names": list(names), "bootstrap_samples": samples,
            "config_difference": differing, "cells": shared,
            "only_in_a": [labels_a[e.name] for e in a if e not in [p[0] for p in pairs]],
            "only_in_b": [labels_b[e.name] for e in b if e not in [p[1] for p in pairs]]}


def _mean(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _values(values: list) -> str:
    return " | ".join(map(str, values)) if values else "(not set)"


def compare_markdown(diff: dict, shown: int | None = None) -> str:
    """The diff as Markdown; `shown` caps the gained/lost questions listed per cell (None: all)."""
    a, b = diff["names"]
    metric = diff["metric"]
    lines = [f"# {b} vs {a}: {metric} (B - A, paired bootstrap 95% CI over the shared questions)", "",
             f"A = {a}", f"B = {b}", "", "## Config difference", ""]
    if diff["config_difference"]:
        lines += ["| setting | A | B |", "|---|---|---|"]
        lines += [f"| {k} | {_values(v['A'])} | {_values(v['B'])} |" for k, v in diff["config_difference"].items()]
    else:
        lines.append("none: the runs have the same settings")
    lines += ["", "## Shared cells", "",
              "| cell | questions | A | B | B - A [95% CI] | gained | lost |", "|---|---|---|---|---|---|---|"]
    for c in diff["cells"]:
        lines.append(f"| {c['label']} | {c['n']} | {_mean(c['a_mean'])} | {_mean(c['b_mean'])} | "
                     f"{cell_text(c['difference'])} | {len(c['gained'])} | {len(c['lost'])} |")
    for which in ("only_in_a", "only_in_b"):
        if diff[which]:
            lines += ["", f"Only in {'A' if which == 'only_in_a' else 'B'}: {', '.join(diff[which])}"]
    right = f"right = {metric} >= {diff['correct_at']}"
    for c in diff["cells"]:
        for kind, title in (("gained", "wrong in A, right in B"), ("lost", "right in A, wrong in B")):
            items = c[kind][:shown] if shown is not None else c[kind]
            lines += ["", f"### {c['label']}: {kind} ({len(c[kind])}; {title}; {right})", ""]
            lines += [f"- `{q['id']}` {q['question']} — gold: {' | '.join(q['answers'])} — A: {q['a']!r} "
                      f"({q['a_score']:.2f}) — B: {q['b']!r} ({q['b_score']:.2f})" for q in items] or ["none"]
            if len(items) < len(c[kind]):
                lines.append(f"- … {len(c[kind]) - len(items)} more in compare.md")
    return "\n".join(lines) + "\n"


def compare_html(diff: dict) -> str:
    """The diff as a self-contained page (no script, no style sheet to fetch)."""
    a, b = diff["names"]
    config = "".join(f"<tr><td>{esc(k)}</td><td>{esc(_values(v['A']))}</td><td>{esc(_values(v['B']))}</td></tr>"
                     for k, v in diff["config_difference"].items()) or '<tr><td colspan="3">none</td></tr>'
    cells = "".join(f"<tr><td>{esc(c['label'])}</td><td>{c['n']}</td><td>{_mean(c['a_mean'])}</td>"
                    f"<td>{_mean(c['b_mean'])}</td><td>{esc(cell_text(c['difference']))}</td>"
                    f"<td>{len(c['gained'])}</td><td>{len(c['lost'])}</td></tr>" for c in diff["cells"])
    lists = []
    for c in diff["cells"]:
        for kind in ("gained", "lost"):
            rows = "".join(f"<tr><td>{esc(q['id'])}</td><td>{esc(q['question'])}</td>"
                           f"<td>{esc(' | '.join(q['answers']))}</td><td>{esc(q['a'])} ({q['a_score']:.2f})</td>"
                           f"<td>{esc(q['b'])} ({q['b_score']:.2f})</td></tr>" for q in c[kind])
            lists.append(f"<details><summary>{esc(c['label'])}: {kind} ({len(c[kind])})</summary><table "
                         f'class="{kind}"><tr><th>id</th><th>question</th><th>gold</th><th>A</th><th>B</th></tr>'
                         f"{rows}</table></details>")
    style = ("body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin:.8em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(b)} vs {esc(a)}</title>'
            f"<style>{style}</style></head><body><h1>{esc(b)} vs {esc(a)}</h1><p>A = {esc(a)}<br>B = {esc(b)}<br>"
            f"{esc(diff['metric'])}, B - A with a paired bootstrap 95% CI over the questions both answered; right = "
            f"{esc(diff['metric'])} &ge; {diff['correct_at']}.</p><h2>Config difference</h2><table id=\"config-diff\">"
            f"<tr><th>setting</th><th>A</th><th>B</th></tr>{config}</table><h2>Shared cells</h2><table id=\"cells\">"
            "<tr><th>cell</th><th>questions</th><th>A</th><th>B</th><th>B - A [95% CI]</th><th>gained</th><th>lost"
            f"</th></tr>{cells}</table><h2>Questions gained and lost</h2>{''.join(lists)}</body></html>\n")

"""The per-question data of the report's drill-down: one entry per question (text, gold answers, whether it
has a gold passage) and, per cell (eval), its answer, its score in every QA metric and the passages it saw
(title, rank, score, gold or not, holds an answer string or not).

Column-wise (cells x questions) so the repetition compresses; scores as integers in thousandths. The
page embeds it gzip-compressed and base64-encoded and the browser unpacks it with DecompressionStream:
a full NQ-open grid (3,610 questions x 6 cells) stays well under a megabyte and opens without a server.
"""
from __future__ import annotations

import base64
import gzip
import json

from components.analysis.evals import QUALITY, EvalEntry
from components.analysis.rag_split import CORRECT_AT, definition

GOLD_FLAG, ANSWER_FLAG = 1, 2  # bits of a passage's flags


def _passages(row: dict, titles: dict[str, int]) -> list[list]:
    flags = [(GOLD_FLAG if g else 0) | (ANSWER_FLAG if a else 0)
             for g, a in zip(row.get("context_is_gold", []), row.get("context_holds_answer", []))]
    names = row.get("context_titles") or [""] * len(row.get("context_ids", []))
    scores = row.get("context_scores") or [None] * len(names)
    # passage flags are missing in evals written before they existed: -1 = unknown
    return [[titles.setdefault(t, len(titles)), flags[i] if i < len(flags) else -1, scores[i]]
            for i, t in enumerate(names)]


def drilldown_data(evals: list[dict], entries: list[EvalEntry]) -> dict:
    """`evals`: the leaderboard's per-eval entries (label, link), in the order the cells are shown."""
    by_name = {e.name: e for e in entries}
    cells = [by_name[e["name"]] for e in evals]
    questions: dict[str, dict] = {}
    for e in cells:
        for r in e.rows:
            q = questions.setdefault(r["id"], {"q": r["question"], "gold": r["answers"], "has_gold": False})
            q["has_gold"] = q["has_gold"] or bool(r.get("has_gold_passage"))
    ids = list(questions)
    titles: dict[str, int] = {}
    answers, scores, passages = [], [], []
    for e in cells:
        rows = {r["id"]: r for r in e.rows}
        answers.append([rows[q]["prediction"] if q in rows else None for q in ids])
        scores.append([[round(rows[q][m] * 1000) if q in rows else None for q in ids] for m in QUALITY])
        passages.append(None if e.mode == "no_context" else
                        [_passages(rows[q], titles) if q in rows else None for q in ids])
    return {"metrics": list(QUALITY), "correct_at": CORRECT_AT,
            "cells": [{"name": info["name"], "label": info["label"], "mode": info["mode"],
                       "url": info["link"]["url"], "link_kind": info["link"]["kind"],
                       "split_definition": definition(by_name[info["name"]].rows)
                       if info["mode"] != "no_context" else None} for info in evals],
            "ids": ids, "questions": [questions[q]["q"] for q in ids], "gold": [questions[q]["gold"] for q in ids],
            "has_gold": [questions[q]["has_gold"] for q in ids], "titles": list(titles),
            "answers": answers, "scores": scores, "passages": passages}


def encode(data: dict) -> str:
    """gzip (fixed mtime: the same data gives the same page) + base64, for a <script> block."""
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def decode(text: str) -> dict:
    return json.loads(gzip.decompress(base64.b64decode(text)))

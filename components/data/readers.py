"""Readers that turn each supported QA file format into the normalised schema.

Every reader yields `Record`s (one question plus the passages that came with it) in file order and
streams its input, so multi-gigabyte files never sit in memory. Any file may be gzip-compressed (seen
from its first bytes, not its name). Bad input raises UserError naming `file:line` and what was expected.

Formats (`dataset.format`; `auto` detects them from the first non-blank line, see `detect_format`):

- nq_open: JSON lines `{"question": str, "answer": [str, ...]}`. Questions only, no passages.
- nq_merged: simplified-NQ JSON lines plus the NQ-open `question`/`answer` (`example_id`, `document_url`,
  `document_text`, `long_answer_candidates`, `annotations`). Passages are the top-level long-answer
  candidates with the HTML tag tokens dropped (empty ones skipped), titled from the URL's `title=`
  parameter or else the first `<H1>`. The gold passages are the annotated long answers; an annotation
  that points at a nested candidate (a table row) counts its top-level ancestor as gold, so every gold
  passage is one of the corpus passages and retrieval can find it.
- lost_in_middle: JSON lines `{"question", "answers": [..], "ctxs": [{"title", "text", "isgold"}, ..]}`;
  every ctx is a passage, those with `isgold` true are gold. `nq_annotated_gold` is ignored.
- simple_qa: CSV with `problem` and `answer` columns. An optional `documents` cell (a Python-literal list
  of page texts) is split into passages of `passage_words` words; an optional non-empty `long_answer`
  cell becomes a passage and the gold one. Titles stay empty: the `metadata` URLs do not line up with
  the documents.
- normalized (also the shipped demo data): JSON lines
  `{"id"?: str|int, "question": str, "answers": [str, ...],
    "passages"?: [{"title"?: str, "text": str, "gold"?: bool}, ...]}`;
  passages with `gold` true are the question's gold passages.

Question ids: `example_id` (nq_merged) or `id` (normalized) when present, else `q<line>` for JSON lines and
`q<row>` (1-based data row) for CSV. Duplicate ids are an error.
"""
from __future__ import annotations

import ast
import csv
import html
import json
from pathlib import Path
from typing import Callable, Iterator, NamedTuple
from urllib.parse import parse_qs, urlsplit

from components.data import record_fields as rf
from components.core.errors import UserError
from components.data.record_fields import Record
from components.data.schema import Passage, Question

CSV_FIELD_LIMIT = 2**31 - 1  # SimpleQA `documents` cells hold whole web pages


# ---------------------------------------------------------------- nq_open

def read_nq_open(path: Path, passage_words: int = 0) -> Iterator[Record]:
    for where, lineno, obj in rf.json_objects(path):
        question = Question(id=f"q{lineno}", question=rf.text(obj, "question", where),
                            answers=rf.answers(obj, "answer", where))
        yield Record(question, [], where)


# ---------------------------------------------------------------- nq_merged

class _Span(NamedTuple):
    start: int
    end: int
    top_level: bool


def _is_tag(token: str) -> bool:
    return len(token) > 2 and token.startswith("<") and token.endswith(">")


def _span_text(tokens: list[str], start: int, end: int) -> str:
    return " ".join(t for t in tokens[start:end] if t and not _is_tag(t))


def _nq_title(obj: dict, tokens: list[str]) -> str:
    url = obj.get("document_url")
    if isinstance(url, str):
        # NQ URLs carry HTML-escaped ampersands (`&amp;oldid=`); parse_qs also URL-decodes the value.
        titles = parse_qs(urlsplit(html.unescape(url)).query).get("title")
        if titles and titles[0].strip():
            return titles[0].replace("_", " ").strip()
    try:
        start = tokens.index("<H1>") + 1
        return _span_text(tokens, start, tokens.index("</H1>", start))
    except ValueError:  # no <H1> ... </H1> heading
        return ""


def _candidate_spans(obj: dict, where: str, num_tokens: int) -> list[_Span]:
    spans = []
    for i, c in enumerate(rf.list_of_objects(obj, "long_answer_candidates", where)):
        start, end = c.get("start_token"), c.get("end_token")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= num_tokens):
            raise UserError(f"{where}: long_answer_candidates[{i}] must have 0 <= start_token <= end_token "
                            f"<= {num_tokens} (the document's token count), got {start!r}, {end!r}")
        spans.append(_Span(start, end, bool(c.get("top_level", True))))
    return spans


def _annotated_candidates(obj: dict, where: str, num_candidates: int) -> list[int]:
    indexes = []
    for i, annotation in enumerate(rf.list_of_objects(obj, "annotations", where)):
        long_answer = annotation.get("long_answer") or {}
        index = long_answer.get("candidate_index", -1) if isinstance(long_answer, dict) else None
        if not isinstance(index, int) or index >= num_candidates:
            raise UserError(f"{where}: annotations[{i}].long_answer.candidate_index must be -1 or an index "
                            f"below {num_candidates} (the number of candidates), got {index!r}")
        if index >= 0:  # -1: this annotator found no long answer
            indexes.append(index)
    return indexes


def _top_level_ancestor(span: _Span, spans: list[_Span]) -> _Span:
    for outer in spans:
        if outer.top_level and outer.start <= span.start and span.end <= outer.end:
            return outer
    return span  # no enclosing top-level candidate: the nested span is its own passage


def _span_passage(tokens: list[str], span: _Span, title: str) -> Passage | None:
    text = _span_text(tokens, span.start, span.end)
    return rf.make_passage(title, text) if text else None


def _nq_merged_record(where: str, lineno: int, obj: dict) -> Record:
    question_text = rf.text(obj, "question", where)
    answers = rf.answers(obj, "answer", where)
    tokens = rf.text(obj, "document_text", where).split(" ")
    spans = _candidate_spans(obj, where, len(tokens))
    title = _nq_title(obj, tokens)
    passages: dict[_Span, Passage] = {}
    for span in spans:
        if span.top_level and (passage := _span_passage(tokens, span, title)):
            passages[span] = passage
    gold_ids = []
    for index in _annotated_candidates(obj, where, len(spans)):
        gold_span = _top_level_ancestor(spans[index], spans)
        if gold_span not in passages and (passage := _span_passage(tokens, gold_span, title)):
            passages[gold_span] = passage
        if gold_span in passages:  # a long answer made only of tags has no text to retrieve
            gold_ids.append(passages[gold_span].id)
    example_id = obj.get("example_id")
    question_id = f"q{lineno}" if example_id is None else str(example_id)
    question = Question(id=question_id, question=question_text, answers=answers,
                        gold_passage_ids=rf.unique(gold_ids))
    return Record(question, list(passages.values()), where)


def read_nq_merged(path: Path, passage_words: int = 0) -> Iterator[Record]:
    for where, lineno, obj in rf.json_objects(path):
        yield _nq_merged_record(where, lineno, obj)


# ---------------------------------------------------------------- lost_in_middle

def _lost_in_middle_record(where: str, lineno: int, obj: dict) -> Record:
    question_text = rf.text(obj, "question", where)
    answers = rf.answers(obj, "answers", where)
    passages, gold_ids = [], []
    for i, ctx in enumerate(rf.list_of_objects(obj, "ctxs", where)):
        ctx_where = f"{where}: ctxs[{i}]"
        title = ctx.get("title") or ""
        if not isinstance(title, str):
            raise UserError(f"{ctx_where}: field 'title' must be a string, got {rf.type_name(title)}")
        passage = rf.make_passage(title, rf.text(ctx, "text", ctx_where))
        passages.append(passage)
        if ctx.get("isgold") is True:
            gold_ids.append(passage.id)
    question = Question(id=f"q{lineno}", question=question_text, answers=answers,
                        gold_passage_ids=rf.unique(gold_ids))
    return Record(question, passages, where)


def read_lost_in_middle(path: Path, passage_words: int = 0) -> Iterator[Record]:
    for where, lineno, obj in rf.json_objects(path):
        yield _lost_in_middle_record(where, lineno, obj)


# ---------------------------------------------------------------- normalized

def _normalized_record(where: str, lineno: int, obj: dict) -> Record:
    raw_id = obj.get("id")
    if raw_id is not None and not isinstance(raw_id, (str, int)):
        raise UserError(f"{where}: field 'id' must be a string or integer, got {rf.type_name(raw_id)}")
    passages, gold_ids = [], []
    entries = rf.list_of_objects(obj, "passages", where) if "passages" in obj else []
    for i, entry in enumerate(entries):
        entry_where = f"{where}: passages[{i}]"
        title = entry.get("title", "")
        if not isinstance(title, str):
            raise UserError(f"{entry_where}: field 'title' must be a string, got {rf.type_name(title)}")
        passage = rf.make_passage(title, rf.text(entry, "text", entry_where))
        passages.append(passage)
        if entry.get("gold") is True:
            gold_ids.append(passage.id)
    question = Question(id=f"q{lineno}" if raw_id is None else str(raw_id),
                        question=rf.text(obj, "question", where), answers=rf.answers(obj, "answers", where),
                        gold_passage_ids=rf.unique(gold_ids))
    return Record(question, passages, where)


def read_normalized(path: Path, passage_words: int = 0) -> Iterator[Record]:
    for where, lineno, obj in rf.json_objects(path):
        yield _normalized_record(where, lineno, obj)


# ---------------------------------------------------------------- simple_qa

def split_words(text: str, passage_words: int) -> list[str]:
    """Cut a document into consecutive passages of at most `passage_words` whitespace words."""
    words = text.split()
    return [" ".join(words[i:i + passage_words]) for i in range(0, len(words), passage_words)]


def _parse_documents(cell: str, where: str) -> list[str]:
    if not cell.strip():
        return []
    try:
        documents = ast.literal_eval(cell)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        raise UserError(f"{where}: column 'documents' is not a Python-literal list of strings "
                        f"({type(e).__name__})") from None
    if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
        raise UserError(f"{where}: column 'documents' must be a list of strings, got {rf.type_name(documents)}")
    return documents


def _simple_qa_record(row: dict, where: str, row_number: int, passage_words: int) -> Record:
    question_text = rf.text(row, "problem", where)
    answer = rf.text(row, "answer", where)
    passages = [rf.make_passage("", chunk)
                for document in _parse_documents(row.get("documents") or "", where)
                for chunk in split_words(document, passage_words)]
    gold_ids = []
    long_answer = " ".join((row.get("long_answer") or "").split())  # same spacing as the document passages
    if long_answer:
        gold = rf.make_passage("", long_answer)
        passages.append(gold)
        gold_ids.append(gold.id)
    question = Question(id=f"q{row_number}", question=question_text, answers=[answer.strip()],
                        gold_passage_ids=gold_ids)
    return Record(question, passages, where)


def read_simple_qa(path: Path, passage_words: int = 100) -> Iterator[Record]:
    csv.field_size_limit(CSV_FIELD_LIMIT)
    lines = rf.numbered_lines(path)
    reader = csv.DictReader(lines)
    try:
        header = reader.fieldnames or []
        missing = [c for c in ("problem", "answer") if c not in header]
        if missing:
            raise UserError(f"{path}:1: CSV header must have columns 'problem' and 'answer' "
                            f"(missing {', '.join(missing)}; found {', '.join(header) or 'nothing'})")
        row_start = reader.line_num + 1
        for row_number, row in enumerate(reader, start=1):
            where = f"{path}:{row_start}"  # the line where the (possibly multi-line) row begins
            if None in row:
                raise UserError(f"{where}: row has more cells than the header's {len(header)} columns")
            yield _simple_qa_record(row, where, row_number, passage_words)
            row_start = reader.line_num + 1
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None


# ---------------------------------------------------------------- detection and dispatch

READERS: dict[str, Callable[[Path, int], Iterator[Record]]] = {
    "nq_open": read_nq_open,
    "nq_merged": read_nq_merged,
    "lost_in_middle": read_lost_in_middle,
    "simple_qa": read_simple_qa,
    "normalized": read_normalized,
}


def _first_nonblank_line(path: Path) -> tuple[int, str]:
    for lineno, line in enumerate(rf.numbered_lines(path), start=1):
        if line.strip():
            return lineno, line
    raise UserError(f"{path}: empty file (expected JSON lines or a CSV with a header)")


def _json_format(obj: dict, where: str) -> str:
    # Most specific keys first: lost-in-the-middle and merged NQ lines also carry question/answer(s).
    for key, fmt in (("ctxs", "lost_in_middle"), ("document_text", "nq_merged"),
                     ("answers", "normalized"), ("answer", "nq_open")):
        if key in obj:
            return fmt
    raise UserError(f"{where}: cannot detect the format from keys {sorted(obj)[:8]} (expected 'answer' "
                    f"(NQ-open), 'answers' (normalized), 'ctxs' (lost-in-the-middle) or 'document_text' "
                    f"(merged NQ))")


def detect_format(path: Path) -> str:
    """The dataset format, from the first non-blank line of the (possibly gzipped) content."""
    path = Path(path)
    lineno, line = _first_nonblank_line(path)
    where = f"{path}:{lineno}"
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: invalid JSON ({e.msg})") from None
        return _json_format(obj, where)
    if stripped.startswith("["):
        raise UserError(f"{where}: expected one JSON object per line (JSON lines), not a JSON array")
    header = next(csv.reader([stripped]))
    if "problem" in header and "answer" in header:
        return "simple_qa"
    raise UserError(f"{where}: cannot detect the format: expected a JSON object per line or a CSV header "
                    f"with columns 'problem' and 'answer', got {stripped[:60]!r}")


def read_records(path: Path, fmt: str, passage_words: int = 100) -> Iterator[Record]:
    """Records of `path` in file order (`fmt` may be `auto`), checking that question ids are unique."""
    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in READERS:
        raise UserError(f"unknown dataset format {fmt!r} (expected one of {', '.join(READERS)})")
    seen: set[str] = set()
    for record in READERS[fmt](path, passage_words):
        if record.question.id in seen:
            raise UserError(f"{record.location}: duplicate question id {record.question.id!r}")
        seen.add(record.question.id)
        yield record

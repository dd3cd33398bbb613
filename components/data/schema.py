"""The normalised QA schema every reader produces and every later stage reads.

ingest writes, into its output folder:
  questions.jsonl  one Question per line, in source-file order (what eval scores)
  passages.jsonl   one Passage per line (the retrieval corpus)
  train.jsonl / test.jsonl  the deterministic split of questions (fine-tuning and the benchmark)
  manifest.json    counts, detected format, source
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

QUESTIONS_FILE = "questions.jsonl"
PASSAGES_FILE = "passages.jsonl"
TRAIN_FILE = "train.jsonl"
TEST_FILE = "test.jsonl"
INGEST_MANIFEST = "manifest.json"


@dataclass
class Question:
    id: str
    question: str
    answers: list[str]
    gold_passage_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Question":
        return cls(id=str(d["id"]), question=d["question"], answers=list(d["answers"]),
                   gold_passage_ids=[str(p) for p in d.get("gold_passage_ids", [])])


@dataclass
class Passage:
    id: str
    title: str
    text: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Passage":
        return cls(id=str(d["id"]), title=d.get("title", ""), text=d["text"])


def passage_id(title: str, text: str) -> str:
    """One id per distinct (title, text), so duplicates across questions share it (hit@k stays honest)."""
    digest = hashlib.sha1(f"{title}\x00{text}".encode("utf-8")).hexdigest()
    return f"p{digest[:16]}"

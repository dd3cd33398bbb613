"""The ingest stage: one dataset source in, the normalised files of `components.data.schema` out.

Outputs are written to temporary siblings and renamed into place only when the whole source has been
read, and the manifest is written last (an old one is removed first), so a folder whose manifest exists
is complete and a failed run leaves no new files behind.

The train/test split ranks questions by sha256(split_seed, question id) and puts the first
round(n * test_fraction) in test: deterministic, independent of file order, and an exact share.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Iterable, NamedTuple

from components.core.config import DatasetConfig
from components.core.errors import UserError
from components.core.fileio import atomic_path, write_json
from components.data.readers import Record, detect_format, read_records
from components.data.schema import INGEST_MANIFEST, PASSAGES_FILE, QUESTIONS_FILE, TEST_FILE, TRAIN_FILE
from components.data.sources import display_source, resolve_source


def split_rank(question_id: str, split_seed: int) -> str:
    return hashlib.sha256(f"{split_seed}\x00{question_id}".encode("utf-8")).hexdigest()


def choose_test_ids(question_ids: Iterable[str], test_fraction: float, split_seed: int) -> set[str]:
    ids = list(question_ids)
    ranked = sorted(ids, key=lambda qid: (split_rank(qid, split_seed), qid))
    return set(ranked[:round(len(ids) * test_fraction)])


def _json_line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


class _Written(NamedTuple):
    question_ids: list[str]  # in file order
    num_passages: int
    num_with_gold: int


def _write_questions_and_passages(records: Iterable[Record], questions_path: Path,
                                  passages_path: Path) -> _Written:
    """Stream records into the two files; passages shared by several questions are written once."""
    question_ids: list[str] = []
    seen_passages: set[str] = set()
    with_gold = 0
    with open(questions_path, "w", encoding="utf-8") as qf, open(passages_path, "w", encoding="utf-8") as pf:
        for record in records:
            qf.write(_json_line(record.question.to_dict()))
            question_ids.append(record.question.id)
            with_gold += bool(record.question.gold_passage_ids)
            for passage in record.passages:
                if passage.id not in seen_passages:
                    seen_passages.add(passage.id)
                    pf.write(_json_line(passage.to_dict()))
    return _Written(question_ids, len(seen_passages), with_gold)


def _write_split(questions_path: Path, test_ids: set[str], train_path: Path, test_path: Path) -> None:
    """Copy each question line, in file order, into train or test."""
    with (open(questions_path, encoding="utf-8") as qf, open(train_path, "w", encoding="utf-8") as train,
          open(test_path, "w", encoding="utf-8") as test):
        for line in qf:
            (test if json.loads(line)["id"] in test_ids else train).write(line)


def _write_outputs(cfg: DatasetConfig, source_path: Path, fmt: str, output_dir: Path) -> dict:
    with ExitStack() as stack:
        tmp = {name: stack.enter_context(atomic_path(output_dir / name))
               for name in (QUESTIONS_FILE, PASSAGES_FILE, TRAIN_FILE, TEST_FILE)}
        written = _write_questions_and_passages(read_records(source_path, fmt, cfg.passage_words),
                                                tmp[QUESTIONS_FILE], tmp[PASSAGES_FILE])
        question_ids = written.question_ids
        if not question_ids:
            raise UserError(f"{display_source(cfg.path)}: no questions found")
        test_ids = choose_test_ids(question_ids, cfg.test_fraction, cfg.split_seed)
        _write_split(tmp[QUESTIONS_FILE], test_ids, tmp[TRAIN_FILE], tmp[TEST_FILE])
        # From here the old outputs get replaced: drop their manifest first so a crash reads as incomplete.
        (output_dir / INGEST_MANIFEST).unlink(missing_ok=True)
    manifest = {
        "format": fmt,
        "source": display_source(cfg.path),
        "num_questions": len(question_ids),
        "num_passages": written.num_passages,
        "num_train": len(question_ids) - len(test_ids),
        "num_test": len(test_ids),
        "num_questions_with_gold": written.num_with_gold,
        "test_fraction": cfg.test_fraction,
        "split_seed": cfg.split_seed,
    }
    write_json(output_dir / INGEST_MANIFEST, manifest)
    return manifest


def is_ingested(path: Path) -> bool:
    """An earlier ingest's output folder (e.g. a published ClearML dataset version of one)."""
    return path.is_dir() and (path / QUESTIONS_FILE).is_file() and (path / PASSAGES_FILE).is_file()


def _write_from_ingested(cfg: DatasetConfig, folder: Path, output_dir: Path) -> dict:
    """The questions and passages as they are, split again under this config."""
    with ExitStack() as stack:
        tmp = {name: stack.enter_context(atomic_path(output_dir / name))
               for name in (QUESTIONS_FILE, PASSAGES_FILE, TRAIN_FILE, TEST_FILE)}
        for name in (QUESTIONS_FILE, PASSAGES_FILE):
            tmp[name].write_bytes((folder / name).read_bytes())
        questions = [json.loads(line) for line in tmp[QUESTIONS_FILE].read_text(encoding="utf-8").splitlines() if line]
        if not questions:
            raise UserError(f"{folder / QUESTIONS_FILE}: no questions found")
        test_ids = choose_test_ids([q["id"] for q in questions], cfg.test_fraction, cfg.split_seed)
        _write_split(tmp[QUESTIONS_FILE], test_ids, tmp[TRAIN_FILE], tmp[TEST_FILE])
        (output_dir / INGEST_MANIFEST).unlink(missing_ok=True)
        num_passages = sum(1 for line in tmp[PASSAGES_FILE].read_text(encoding="utf-8").splitlines() if line)
    manifest = {"format": "ingested", "source": display_source(cfg.path), "num_questions": len(questions),
                "num_passages": num_passages, "num_train": len(questions) - len(test_ids), "num_test": len(test_ids),
                "num_questions_with_gold": sum(bool(q.get("gold_passage_ids")) for q in questions),
                "test_fraction": cfg.test_fraction, "split_seed": cfg.split_seed}
    write_json(output_dir / INGEST_MANIFEST, manifest)
    return manifest


def run_ingest(cfg: DatasetConfig, output_dir: Path, cache_dir: Path | None = None) -> dict:
    """Read `cfg.path` and write the normalised dataset into `output_dir`; returns the manifest."""
    output_dir = Path(output_dir)
    source_path = resolve_source(cfg, cache_dir)
    if is_ingested(source_path):
        output_dir.mkdir(parents=True, exist_ok=True)
        return _write_from_ingested(cfg, source_path, output_dir)
    fmt = detect_format(source_path) if cfg.format == "auto" else cfg.format
    created = not output_dir.exists()
    try:
        return _write_outputs(cfg, source_path, fmt, output_dir)
    except BaseException:
        if created and output_dir.is_dir() and not any(output_dir.iterdir()):
            output_dir.rmdir()  # atomic_path made it; a failed run leaves nothing behind
        raise

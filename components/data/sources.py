"""Resolve `dataset.path` to a local file that `components.data.readers` can read.

- `builtin:demo`: the demo dataset shipped inside the package (`components/data/demo_data/demo.jsonl`).
- a local path: relative paths are relative to the current directory.
- `s3://bucket/key`: downloaded by `components.data.storage.download_s3` into the cache.
- `hf:<name>`: `datasets.load_dataset(name, dataset.hf_config or None, split=dataset.hf_split)`, rows with
  `question` and `answer`/`answers` converted to normalized JSON lines in the cache (a `context` column,
  as in SQuAD, becomes the question's gold passage, titled by `title`).

The cache is `$SLM_CACHE_DIR`, else `~/.cache/slm-experiments`.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

from components.core.config import DatasetConfig
from components.core.errors import UserError
from components.core.fileio import write_jsonl
from components.core.outputs import cache_root

DEMO_DATA_DIR = Path(__file__).resolve().parent / "demo_data"
BUILTIN_DATASETS = {"demo": DEMO_DATA_DIR / "demo.jsonl"}


def display_source(path: str) -> str:
    """`path` as given, minus any `user:password@` in a URI (manifests and logs must not hold secrets)."""
    parts = urlsplit(path)
    if "@" not in parts.netloc:
        return path
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def resolve_source(cfg: DatasetConfig, cache_dir: Path | None = None) -> Path:
    """The local file behind `cfg.path`, downloading or converting it into `cache_dir` when needed."""
    path = cfg.path.strip()
    cache_dir = Path(cache_dir) if cache_dir is not None else cache_root()
    if path.startswith("builtin:"):
        return _builtin(path.removeprefix("builtin:"))
    if path.startswith("s3://"):
        return _download_s3(path, cache_dir)
    if path.startswith("clearml://"):
        raise UserError(f"dataset.path={path}: a ClearML dataset is read by the ingest stage (slm ingest / slm run), "
                        "which fetches it from the server first")
    if path.startswith("hf:"):
        return _convert_hf(path.removeprefix("hf:"), cfg.hf_config, cfg.hf_split, cache_dir)
    return _local(path)


def _builtin(name: str) -> Path:
    if name not in BUILTIN_DATASETS:
        raise UserError(f"unknown builtin dataset {name!r} (expected one of "
                        f"{', '.join('builtin:' + n for n in BUILTIN_DATASETS)})")
    return BUILTIN_DATASETS[name]


def _local(path: str) -> Path:
    local = Path(path).expanduser()
    if local.is_dir() and (local / "questions.jsonl").is_file() and (local / "passages.jsonl").is_file():
        return local  # an earlier ingest's output, e.g. a published ClearML dataset version of one
    if local.is_dir():
        raise UserError(f"{path}: is a directory (expected a dataset file, or an ingest output folder)")
    if not local.is_file():
        raise UserError(f"{path}: file not found")
    return local


def _download_s3(uri: str, cache_dir: Path) -> Path:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key or key.endswith("/"):
        raise UserError(f"{display_source(uri)}: expected s3://bucket/key naming one file")
    from components.data.storage import download_s3  # boto3 is only needed for S3 sources

    # One folder per URI, so two keys with the same file name never overwrite each other.
    dest_dir = cache_dir / "s3" / hashlib.sha1(uri.encode("utf-8")).hexdigest()[:16]
    dest_dir.mkdir(parents=True, exist_ok=True)
    return Path(download_s3(uri, dest_dir))


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text) or "default"


def _convert_hf(name: str, hf_config: str, hf_split: str, cache_dir: Path) -> Path:
    if not name:
        raise UserError("hf:: expected hf:<dataset name>, e.g. hf:nq_open")
    rows = _load_hf_rows(name, hf_config, hf_split)
    dest = cache_dir / "hf" / f"{_safe_name(name)}--{_safe_name(hf_config)}--{_safe_name(hf_split)}.jsonl"
    return write_jsonl(dest, _normalized_rows(rows, f"hf:{name} ({hf_split})"))


def _load_hf_rows(name: str, hf_config: str, hf_split: str) -> Iterable[dict]:
    import datasets  # heavy; only hf: sources need it

    try:
        return datasets.load_dataset(name, hf_config or None, split=hf_split)
    except Exception as e:  # the hub reports unknown names, configs and splits with many exception types
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(f"hf:{name}: cannot load config {hf_config or 'default'!r} split {hf_split!r} "
                        f"({type(e).__name__}: {first_line})") from None


def _answer_list(value: Any) -> list[str]:
    """Answers as a list of strings, from the shapes hub QA datasets use (empty when unrecognised)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):  # SQuAD: {"text": [...]}; TriviaQA: {"value": str, "aliases": [...]}
        texts = value.get("text") or [value.get("value")] + list(value.get("aliases") or [])
        return _answer_list(texts)
    if isinstance(value, (list, tuple)):
        return [a for a in dict.fromkeys(value) if isinstance(a, str) and a.strip()]
    return []


def _normalized_rows(rows: Iterable[dict], source: str) -> Iterator[dict]:
    """Normalized JSON-lines rows; rows whose answer list is empty (SQuAD v2 unanswerables) are skipped."""
    for number, row in enumerate(rows, start=1):
        question = row.get("question")
        if not isinstance(question, str) or not question.strip() or not ({"answer", "answers"} & set(row)):
            raise UserError(f"{source} row {number}: expected a 'question' string and an 'answer' or "
                            f"'answers' column, got columns {sorted(row)[:8]}")
        answers = _answer_list(row.get("answers", row.get("answer")))
        if not answers:
            continue
        out: dict[str, Any] = {"question": question, "answers": answers}
        if isinstance(row.get("id"), (str, int)):
            out["id"] = row["id"]
        if isinstance(row.get("context"), str) and row["context"].strip():
            out["passages"] = [{"title": str(row.get("title") or ""), "text": row["context"], "gold": True}]
        yield out

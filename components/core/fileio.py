"""Atomic writes and JSON-lines reading: a crash never leaves a half-written file under its final name.

Temporary files and folders are created with the ordinary modes (0o666 / 0o777 less the umask, as `open()`
and `mkdir` give), not `tempfile`'s private 0o600 / 0o700, which the rename would carry onto the results:
colleagues on a shared server, or a web server serving the report, must be able to read them.
"""
from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from components.core.errors import UserError


def _new_sibling(final: Path, create, suffix: str = ".tmp") -> Path:
    """A fresh hidden name beside `final`, made by `create(path)`; exclusive creation means no other writer
    (another process, a concurrent step) ever gets the same one."""
    while True:
        candidate = final.with_name(f".{final.name}.{secrets.token_hex(6)}{suffix}")
        try:
            create(candidate)
            return candidate
        except FileExistsError:
            continue


def _create_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies, as in open()


def temp_dir_beside(final: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A new empty folder beside `final` with the mode `mkdir` gives, to fill and rename onto `final`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return _new_sibling(final, os.mkdir, suffix)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_sibling(final, _create_file)
    try:
        yield Path(tmp)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def iter_jsonl_lines(lines: Iterable[str], source: str) -> Iterator[tuple[int, dict]]:
    """Parse JSON-lines text, yielding (line number, object); blank lines are skipped."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{source}:{lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{source}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    with open(path, encoding="utf-8") as f:
        return [obj for _, obj in iter_jsonl_lines(f, str(path))]


def dir_size_bytes(path: str | os.PathLike) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

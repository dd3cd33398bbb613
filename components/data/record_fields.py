"""What every QA file reader shares: the `Record` it yields, opening (gzip seen from the first bytes) and
numbered text lines, and field checks whose UserErrors name `file:line`, the field and what was expected."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, NamedTuple

from components.core.errors import UserError
from components.core.fileio import iter_jsonl_lines
from components.data.schema import Passage, Question, passage_id

GZIP_MAGIC = b"\x1f\x8b"


class Record(NamedTuple):
    question: Question
    passages: list[Passage]  # every passage that came with the question, gold ones included
    location: str  # "file:line", for error messages about the record as a whole


# ---------------------------------------------------------------- opening and lines

def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_binary(path: Path) -> IO[bytes]:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    if is_gzip(path):
        return gzip.open(path, "rb")
    if path.name.endswith(".gz"):
        raise UserError(f"{path}: named .gz but is not gzip-compressed")
    return open(path, "rb")


def numbered_lines(path: Path) -> Iterator[str]:
    """The file's lines as text. Decoding line by line (not in buffered chunks) lets a decoding error
    name its own line; decompression errors name the line being read."""
    lineno = 0
    with open_binary(path) as f:
        try:
            for lineno, raw in enumerate(f, start=1):
                yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except (OSError, EOFError, zlib.error) as e:
            raise UserError(f"{path}:{lineno + 1}: corrupt compressed data ({e})") from None
        except UnicodeDecodeError as e:
            raise UserError(f"{path}:{lineno}: not UTF-8 text ({e.reason})") from None


def json_objects(path: Path) -> Iterator[tuple[str, int, dict]]:
    """(where, line number, object) for each JSON line."""
    for lineno, obj in iter_jsonl_lines(numbered_lines(path), str(path)):
        yield f"{path}:{lineno}", lineno, obj


# ---------------------------------------------------------------- field checks

def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def field(obj: dict, key: str, where: str, expected: str, ok: Callable[[Any], bool]) -> Any:
    if key not in obj:
        raise UserError(f"{where}: missing field '{key}' (expected {expected})")
    value = obj[key]
    if not ok(value):
        raise UserError(f"{where}: field '{key}' must be {expected}, got {type_name(value)} {value!r:.60}")
    return value


def text(obj: dict, key: str, where: str) -> str:
    return field(obj, key, where, "a non-empty string", lambda v: isinstance(v, str) and bool(v.strip()))


def answers(obj: dict, key: str, where: str) -> list[str]:
    return list(field(obj, key, where, "a non-empty list of strings",
                       lambda v: isinstance(v, list) and bool(v) and all(isinstance(a, str) for a in v)))


def list_of_objects(obj: dict, key: str, where: str) -> list[dict]:
    return field(obj, key, where, "a list of objects",
                  lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v))


def make_passage(title: str, text: str) -> Passage:
    return Passage(id=passage_id(title, text), title=title, text=text)


def unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))

"""What every reader shares: opening (gzip seen from the first bytes), numbered UTF-8 lines, JSON objects
with their `file:line`, and field checks whose errors name the place, the field and what was expected."""
from __future__ import annotations

import gzip

import pytest

from components.core.errors import UserError
from components.data.readers import read_records
from components.data.record_fields import (answers, field, is_gzip, json_objects, list_of_objects, make_passage,
                                           numbered_lines, open_binary, text, type_name, unique)
from components.data.schema import passage_id


def test_truncated_gzip_and_non_utf8_name_the_line(tmp_path):
    data = b"".join(b'{"question": "q%d", "answer": ["a"]}\n' % i for i in range(2000))
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(gzip.compress(data)[:-40])
    with pytest.raises(UserError, match=r"cut\.jsonl\.gz:\d+: corrupt compressed data"):
        list(read_records(truncated, "nq_open"))

    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes('{"question": "q", "answer": ["a"]}\n{"question": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(UserError, match=rf"{latin1}:2: not UTF-8"):
        list(read_records(latin1, "nq_open"))


def test_gzip_is_recognised_by_its_bytes_not_its_name(tmp_path):
    packed = tmp_path / "qa.txt"
    packed.write_bytes(gzip.compress(b'{"a": 1}\n'))
    plain = tmp_path / "qa.jsonl"
    plain.write_bytes(b'{"a": 1}\n')
    assert is_gzip(packed) and not is_gzip(plain)
    for path in (packed, plain):
        with open_binary(path) as f:
            assert f.read() == b'{"a": 1}\n'


def test_open_binary_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match=rf"^{tmp_path / 'none.jsonl'}: file not found$"):
        open_binary(tmp_path / "none.jsonl")
    with pytest.raises(UserError, match="file not found"):
        open_binary(tmp_path)  # a folder is not a file
    fake = tmp_path / "qa.jsonl.gz"
    fake.write_bytes(b'{"a": 1}\n')
    with pytest.raises(UserError, match=rf"^{fake}: named \.gz but is not gzip-compressed$"):
        open_binary(fake)


def test_numbered_lines_drop_a_byte_order_mark_on_the_first_line_only(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes("\ufeff{\"q\": 1}\n\ufeffx\n".encode("utf-8"))
    assert list(numbered_lines(path)) == ['{"q": 1}\n', "\ufeffx\n"]


def test_json_objects_give_where_line_and_object_skipping_blank_lines(tmp_path):
    path = tmp_path / "q.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n\n  \n{"a": 2}\n'))
    assert list(json_objects(path)) == [(f"{path}:1", 1, {"a": 1}), (f"{path}:4", 4, {"a": 2})]
    path.write_bytes(gzip.compress(b'{"a": 1}\n{"a": \n'))
    with pytest.raises(UserError, match=rf"^{path}:2: invalid JSON"):
        list(json_objects(path))


def test_field_checks_name_place_field_expectation_and_what_came():
    obj = {"question": "  ", "answers": ["a", 3], "ctxs": [{"t": 1}, "x"], "n": None, "ok": "fine"}
    assert text(obj, "ok", "f:1") == "fine"
    with pytest.raises(UserError, match=r"^f:1: field 'question' must be a non-empty string, got str '  '$"):
        text(obj, "question", "f:1")
    with pytest.raises(UserError, match=r"^f:2: missing field 'title' \(expected a non-empty string\)$"):
        text(obj, "title", "f:2")
    with pytest.raises(UserError, match=r"^f:3: field 'answers' must be a non-empty list of strings, got list"):
        answers(obj, "answers", "f:3")
    with pytest.raises(UserError, match="non-empty list of strings, got list"):
        answers({"a": []}, "a", "f:4")
    assert answers({"a": ["x", "y"]}, "a", "f") == ["x", "y"]
    with pytest.raises(UserError, match=r"^f:5: field 'ctxs' must be a list of objects"):
        list_of_objects(obj, "ctxs", "f:5")
    assert list_of_objects({"c": []}, "c", "f") == []
    with pytest.raises(UserError, match=r"must be a number, got null None"):
        field(obj, "n", "f:6", "a number", lambda v: isinstance(v, (int, float)))


def test_a_long_bad_value_is_cut_in_the_message():
    with pytest.raises(UserError) as err:
        answers({"a": list(range(500))}, "a", "f:1")
    assert str(err.value).endswith("got list " + repr(list(range(500)))[:60])  # the value's first 60 characters


def test_type_names_make_passage_and_unique():
    assert [type_name(v) for v in (None, "a", 1, [], {})] == ["null", "str", "int", "list", "dict"]
    passage = make_passage("Paris", "Paris is the capital of France.")
    assert (passage.id, passage.title, passage.text) == (passage_id("Paris", "Paris is the capital of France."),
                                                         "Paris", "Paris is the capital of France.")
    assert unique(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]

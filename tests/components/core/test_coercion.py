"""Raw values to a field's declared type, and a section from raw values (through whole configs:
test_config.py and test_overrides.py)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from components.core.coercion import coerce_section, coerce_value, field_types
from components.core.errors import UserError


@dataclass
class Section:
    count: int = 1
    rate: float = 0.5
    flag: bool = False
    name: str = ""
    ks: list[int] = field(default_factory=list)


@pytest.mark.parametrize("text,expected", [("true", True), (" Yes ", True), ("1", True), ("on", True),
                                           ("false", False), ("NO", False), ("0", False), (True, True)])
def test_booleans_accept_the_usual_spellings(text, expected):
    assert coerce_value("s.flag", bool, text) is expected


def test_numbers_parse_and_a_bool_is_not_a_number():
    assert coerce_value("s.count", int, " 12 ") == 12
    assert coerce_value("s.rate", float, "1e-3") == pytest.approx(0.001)
    for tp, value in ((int, "1.5"), (int, True), (float, "fast"), (bool, "maybe")):
        with pytest.raises(UserError, match=r"invalid value for s\.x: "):
            coerce_value("s.x", tp, value)


@pytest.mark.parametrize("value", ["[1,5]", "1,5", " 1, 5 ", "['1', '5']", [1, "5"], (1, 5)])
def test_lists_from_json_comma_text_or_sequences(value):
    assert coerce_value("s.ks", list[int], value) == [1, 5]


def test_an_empty_list_and_a_scalar_where_a_list_is_due():
    assert coerce_value("s.ks", list[int], "") == []
    with pytest.raises(UserError, match=r"s\.ks: 7 \(expected a list\)"):
        coerce_value("s.ks", list[int], 7)


def test_a_section_from_raw_values_names_an_unknown_key_and_suggests_one():
    built = coerce_section("s", Section, {"count": "3", "flag": "true", "ks": "[2]", "name": 4})
    assert built == Section(count=3, flag=True, ks=[2], name="4")
    assert set(field_types(Section)) == {"count", "rate", "flag", "name", "ks"}
    with pytest.raises(UserError, match=r"unknown config key: s\.cuont.*count"):
        coerce_section("s", Section, {"cuont": 3})

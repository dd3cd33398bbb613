"""The lazy registry behind generation.backend: order kept, nothing imported until a name is loaded, a
typo answered with the closest name."""
from __future__ import annotations

import sys

import pytest

from components.core.errors import UserError
from components.core.lazy_registry import Entry, Registry


def test_names_keep_their_order_and_register_appends():
    reg = Registry("thing.kind", (Entry("b", "json:dumps"), Entry("a", "json:loads")))
    reg.register("c", "json:JSONDecoder", "decoder")
    assert reg.names() == ("b", "a", "c") and "c" in reg and "z" not in reg
    reg.unregister("c")
    assert reg.names() == ("b", "a")


def test_load_imports_the_module_only_then(monkeypatch):
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    reg = Registry("thing.kind", (Entry("hls", "colorsys:rgb_to_hls"),))
    assert "colorsys" not in sys.modules
    assert reg.load("hls")(1.0, 0.0, 0.0) == (0.0, 0.5, 1.0)
    assert "colorsys" in sys.modules


def test_a_typo_names_the_key_the_closest_name_and_the_choices():
    reg = Registry("thing.kind", (Entry("llama_cpp", "json:dumps"), Entry("hf", "json:loads")))
    with pytest.raises(UserError) as e:
        reg.load("lama_cpp")
    assert str(e.value) == ("invalid value for thing.kind: 'lama_cpp' (did you mean llama_cpp?) "
                            "(expected one of llama_cpp, hf)")
    reg.check("auto", extra=("auto",))  # an extra choice that is not an implementation

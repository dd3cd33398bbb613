"""UserError's spelling hint and the guard that turns failures into one line on stderr and an exit status."""
from __future__ import annotations

import pytest

from components.core.errors import UserError, did_you_mean, run_guarded


def test_did_you_mean_prefers_another_case_then_the_closest_spelling():
    assert did_you_mean("Max_Samples", ["max_samples", "max_sample"]) == " (did you mean max_samples?)"
    assert did_you_mean("max_sampels", ["max_samples", "mode"]) == " (did you mean max_samples?)"
    assert did_you_mean("zzz", ["max_samples", "mode"]) == ""
    assert did_you_mean("x", iter(["y"])) == ""  # any iterable of options


def test_guard_returns_the_commands_own_status():
    assert run_guarded(lambda: 0) == 0
    assert run_guarded(lambda: 3) == 3


def _raise(error: BaseException):
    def fn() -> int:
        raise error
    return fn


def test_user_error_is_one_line_and_status_2(capsys, monkeypatch):
    monkeypatch.delenv("SLM_DEBUG", raising=False)
    assert run_guarded(_raise(UserError("dataset.path: x.jsonl: file not found"))) == 2
    err = capsys.readouterr().err
    assert err == "error: dataset.path: x.jsonl: file not found\n"


def test_runtime_error_is_one_line_status_1_with_a_hint(capsys, monkeypatch):
    monkeypatch.delenv("SLM_DEBUG", raising=False)
    assert run_guarded(_raise(RuntimeError("CUDA out of memory"))) == 1
    assert capsys.readouterr().err == "error: CUDA out of memory (run with --debug for the traceback)\n"


def test_interrupt_is_status_130(capsys):
    assert run_guarded(_raise(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_adds_the_traceback(capsys, monkeypatch, how):
    monkeypatch.delenv("SLM_DEBUG", raising=False)
    if how == "env":
        monkeypatch.setenv("SLM_DEBUG", "1")
    assert run_guarded(_raise(UserError("bad key")), debug=how == "flag") == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.endswith("error: bad key\n")
    assert run_guarded(_raise(RuntimeError("boom")), debug=how == "flag") == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_programming_error_is_not_swallowed():
    """Only user errors, runtime failures and Ctrl-C are turned into a status; a bug keeps its traceback."""
    with pytest.raises(KeyError):
        run_guarded(_raise(KeyError("missing")))

"""Adding a backend = one file + one registry line: a backend registered from the tests (helpers.FakeBackend,
not in components/) becomes a choice of generation.backend, with help and "did you mean", and an eval runs
on it through `slm eval`'s code path."""
from __future__ import annotations

import pytest

from components.backends.registry import BACKENDS, backend_choices, backend_help
from components.core.config import GenerationConfig
from components.core.config_help import describe_config
from components.core.errors import UserError
from components.core.fileio import read_json, read_jsonl
from components.core.outputs import PREDICTIONS_FILE, RESULTS_FILE
from pipelines import cli


@pytest.fixture
def fake_backend():
    BACKENDS.register("fake", "helpers:FakeBackend", "a test's fake: hashed answers, no model")
    yield "fake"
    BACKENDS.unregister("fake")


def test_choices_and_help_come_from_the_registry(fake_backend):
    assert backend_choices() == ("vllm", "llama_cpp", "hf", "fake", "auto")
    assert "fake: a test's fake" in backend_help()
    assert GenerationConfig(backend="fake").backend == "fake"
    assert "fake: a test's fake" in describe_config("generation")
    with pytest.raises(UserError, match=r"'fak' \(did you mean fake\?\)"):
        GenerationConfig(backend="fak")


def test_an_unregistered_backend_is_refused_with_the_choices():
    with pytest.raises(UserError, match=r"generation\.backend: 'fake'.*expected one of vllm, llama_cpp, hf, auto"):
        GenerationConfig(backend="fake")


def test_a_registered_backend_runs_an_eval_through_the_cli(fake_backend, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["eval", "--no-clearml", "generation.backend=fake", "experiment.max_samples=5",
                     f"experiment.output_dir={out}"])
    assert code == 0, capsys.readouterr().err
    results = read_json(out / RESULTS_FILE)
    assert (results["backend"], results["backend_version"], results["num_examples"]) == ("fake", "fake 1.0", 5)
    rows = read_jsonl(out / PREDICTIONS_FILE)
    assert len(rows) == 5 and all(r["prediction"].startswith("fake ") for r in rows)


def test_a_backend_that_does_not_apply_an_adapter_says_so(fake_backend):
    from components.backends.base import load_generator
    from components.core.config import ModelConfig

    assert load_generator(ModelConfig(adapter="some/adapter"), GenerationConfig(backend="fake")).backend == "fake"
    with pytest.raises(UserError, match="generation.backend=fake does not apply model.load_in_4bit"):
        load_generator(ModelConfig(load_in_4bit=True), GenerationConfig(backend="fake"))


def test_a_registry_line_that_does_not_import_is_one_line(fake_backend):
    BACKENDS.register("broken", "components.backends.no_such_module:Nothing")
    try:
        with pytest.raises(UserError, match=r"generation\.backend=broken: cannot import "
                                            r"components\.backends\.no_such_module:Nothing"):
            BACKENDS.load("broken")
    finally:
        BACKENDS.unregister("broken")

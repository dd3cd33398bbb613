"""What tests share besides fixtures: paths, and a fake generator for fast eval/benchmark tests.

`FakeGenerator` implements `components.backends.base.Generator` with no model (the pattern of lm-eval's
dummy model): a tokenizer that maps words to ids reversibly and has no chat template, and answers that
are a fixed function of the prompt text, so a run's predictions are deterministic and known.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from components.backends.generation import Generated
from components.data.schema import Passage

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
FIXTURES = TESTS / "fixtures"
TEST_DATA = TESTS / "data"
SHARED_DATA = ROOT.parent / "shared" / "data"
SLM = ROOT / ".venv" / "bin" / "slm"


class FakeTokenizer:
    """Whitespace tokens with ids assigned on first sight (reversible); no chat template, so prompts are
    the bare message + "\\nAnswer:" (components.stages.prompts.render_prompt)."""

    chat_template = None
    pad_token_id = 0
    eos_token = "</s>"

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.words: list[str] = [""]

    def _id(self, word: str) -> int:
        if word not in self.vocab:
            self.vocab[word] = len(self.words)
            self.words.append(word)
        return self.vocab[word]

    def __call__(self, texts, add_special_tokens: bool = False) -> dict:
        single = isinstance(texts, str)
        ids = [[self._id(w) for w in re.split(r"(\s+)", t) if w] for t in ([texts] if single else texts)]
        return {"input_ids": ids[0] if single else ids}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.words[i] for i in ids)


def hashed_answer(prompt: str) -> str:
    return "fake " + hashlib.sha1(prompt.encode()).hexdigest()[:8]


def question_of(prompt: str) -> str:
    """The question a prompt asks (the text after its last "Question: ")."""
    return prompt.rsplit("Question: ", 1)[-1].split("\n")[0]


class Interrupted(RuntimeError):
    """Raised by a FakeGenerator told to fail: a crash in the middle of a run."""


@dataclass
class FakeGenerator:
    answer: Callable[[str], str] = hashed_answer  # prompt text -> answer
    tuned: Callable[[str], str] | None = None  # the answers of `with_adapter`'s generator
    fail_after: int | None = None  # raise Interrupted on the batch after this many
    backend: str = "fake"
    backend_version: str = "fake 1.0"
    precision: str = "float32"
    source: str = "fake-model"
    model_size_bytes: int = 4096
    tokenizer: FakeTokenizer = field(default_factory=FakeTokenizer)
    calls: list[list[str]] = field(default_factory=list)  # the prompts of every generated batch
    prepared: int = 0

    def prepare(self, prompt_ids) -> None:
        self.prepared += 1

    def generate(self, prompt_ids, gen, seed: int = 0, timings: dict | None = None) -> list[Generated]:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise Interrupted("simulated kill")
        prompts = [self.tokenizer.decode(ids) for ids in prompt_ids]
        self.calls.append(prompts)
        return [Generated(text=self.answer(p), new_tokens=3, hit_max_new_tokens=False, seconds=0.001)
                for p in prompts]

    def with_adapter(self, adapter_dir: Path, quantized: bool) -> "FakeGenerator":
        """The 'tuned' fake: answers with `tuned` (default: the question repeated, a different answer)."""
        return FakeGenerator(answer=self.tuned or question_of, source=f"{self.source}+{adapter_dir}",
                             tokenizer=self.tokenizer)


class FakeBackend(FakeGenerator):
    """FakeGenerator as a registered backend (`generation.backend=fake` once a test registers
    "helpers:FakeBackend"): what a new backend file provides besides the Generator methods."""
    applies = frozenset({"adapter"})

    @classmethod
    def load(cls, cfg, gen) -> "FakeBackend":
        return cls(source=f"fake:{cfg.name}")

    @classmethod
    def auto_applies(cls, cfg) -> bool:
        return False  # never chosen by `auto`: only when named


# A small retrieval corpus and queries that share rare words with their passage (retrieval and index tests).
CORPUS = [
    Passage("eiffel", "Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889."),
    Passage("whale", "Blue whale", "The blue whale is a marine mammal and the heaviest animal known to have lived."),
    Passage("everest", "Mount Everest", "Mount Everest in the Himalayas is Earth's highest mountain above sea level."),
    Passage("insulin", "Insulin", "Frederick Banting and Charles Best discovered insulin in Toronto in 1921."),
    Passage("python", "Python", "Python is a programming language created by Guido van Rossum in 1991."),
    Passage("amazon", "Amazon River", "The Amazon River in South America carries more water than any other river."),
    Passage("moon", "Apollo 11", "Neil Armstrong was the first person to walk on the Moon, in July 1969."),
    Passage("coffee", "Coffee", "Coffee is brewed from roasted seeds of the Coffea plant, first cultivated in Yemen."),
    Passage("violin", "Violin", "The violin is a wooden string instrument played with a bow."),
    Passage("sahara", "Sahara", "The Sahara is the largest hot desert, covering much of North Africa."),
    Passage("penicillin", "Penicillin", "Alexander Fleming discovered penicillin in 1928 at St Mary's Hospital."),
    Passage("chess", "", "Chess is a board game for two players on a checkered board of 64 squares."),
]
LEXICAL_QUERIES = {  # share rare words with their passage
    "who discovered penicillin": "penicillin",
    "Guido van Rossum programming language": "python",
    "wrought-iron lattice tower": "eiffel",
}


CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
            ("Germany", "Berlin"), ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Kenya", "Nairobi"),
            ("Peru", "Lima"), ("Norway", "Oslo"), ("Greece", "Athens"), ("Cuba", "Havana"),
            ("Chile", "Santiago"), ("Poland", "Warsaw"), ("Iran", "Tehran"), ("Austria", "Vienna"),
            ("Ireland", "Dublin"), ("Portugal", "Lisbon"), ("Sweden", "Stockholm"), ("Russia", "Moscow")]


def write_ingest_dir(path: Path, capitals: Sequence[tuple[str, str]] = CAPITALS, num_train: int = 16) -> Path:
    """A tiny ingest output: "What is the capital of X?" with one gold passage per question; the first
    num_train questions are the train split, the rest the test split."""
    path.mkdir(parents=True, exist_ok=True)
    questions = [{"id": f"q{i}", "question": f"What is the capital of {country}?", "answers": [capital],
                  "gold_passage_ids": [f"p{i}"]} for i, (country, capital) in enumerate(capitals)]
    passages = [{"id": f"p{i}", "title": capital, "text": f"{capital} is the capital of {country}."}
                for i, (country, capital) in enumerate(capitals)]
    files = {"questions.jsonl": questions, "passages.jsonl": passages, "train.jsonl": questions[:num_train],
             "test.jsonl": questions[num_train:]}
    for name, rows in files.items():
        (path / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_offline_script(code: str, tmp_path: Path, *args: str) -> dict:
    """Run ClearML code in a fresh offline process (ClearML's Task is process-global), outside the
    repository (Task.init would scan this git work tree); the JSON the code writes to sys.argv[1]."""
    from clearml_tasks._tracking import OFFLINE_CONF

    (tmp_path / "clearml.conf").write_text(OFFLINE_CONF)
    env = {**os.environ, "CLEARML_CONFIG_FILE": str(tmp_path / "clearml.conf"),
           "CLEARML_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    result = tmp_path / "result.json"
    out = subprocess.run([sys.executable, "-c", code, str(result), *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(result.read_text())

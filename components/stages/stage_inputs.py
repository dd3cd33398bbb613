"""What eval, finetune and benchmark read from their parents, in one place so the three cannot drift:
the ingest output (questions in file order or from a split, the passage corpus), the contexts of a prompt
mode (none, the gold passages, or the index's top k) and the prompts rendered from them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from components.core.config import AppConfig
from components.core.errors import UserError
from components.core.fileio import iter_jsonl_lines, read_json
from components.core.outputs import INDEX_RESULTS_FILE, INDEX_SUBDIR
from components.stages.prompts import render_prompt, user_message
from components.data.schema import PASSAGES_FILE, QUESTIONS_FILE, TEST_FILE, TRAIN_FILE, Passage, Question

SPLIT_FILES = {"all": QUESTIONS_FILE, "train": TRAIN_FILE, "test": TEST_FILE}
Row = TypeVar("Row")


def read_rows(path: Path, parse: Callable[[dict], Row]) -> list[Row]:
    """Every line of an ingest output file, parsed; a bad line is an error naming file and line."""
    if not path.is_file():
        raise UserError(f"{path}: file not found (run the ingest stage first)")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, obj in iter_jsonl_lines(f, str(path)):
            try:
                rows.append(parse(obj))
            except (KeyError, TypeError) as e:
                raise UserError(f"{path}:{lineno}: not a valid record ({type(e).__name__}: {e})") from None
    return rows


def read_questions(ingest_dir: Path, split: str = "all") -> list[Question]:
    """Questions in file order (`all`) or of the train/test split."""
    return read_rows(Path(ingest_dir) / SPLIT_FILES[split], Question.from_dict)


def select_questions(ingest_dir: Path, split: str, max_samples: int) -> list[Question]:
    """What a stage scores: the split's questions, the first max_samples when set; none is an error."""
    questions = read_questions(ingest_dir, split)
    if max_samples:
        questions = questions[:max_samples]
    if not questions:
        raise UserError(f"{Path(ingest_dir) / SPLIT_FILES[split]}: no questions to evaluate")
    return questions


def read_passages(ingest_dir: Path) -> list[Passage]:
    return read_rows(Path(ingest_dir) / PASSAGES_FILE, Passage.from_dict)


@dataclass
class Contexts:
    passages: list[list[Passage]]
    scores: list[list[float]]
    index_size_bytes: int = 0


def build_contexts(cfg: AppConfig, mode: str, questions: list[Question], ingest_dir: Path,
                   index_dir: Path | None) -> Contexts:
    """Per question, the passages its prompt shows in `mode`, best first, with their scores."""
    if mode == "no_context":
        return Contexts([[] for _ in questions], [[] for _ in questions])
    corpus = {p.id: p for p in read_passages(ingest_dir)}
    if mode == "oracle_context":
        if not any(q.gold_passage_ids for q in questions):
            raise UserError(f"oracle_context needs gold passages, and {ingest_dir} has none for these "
                            "questions (use a dataset with passages, e.g. nq-open-oracle.jsonl.gz)")
        chosen = [[corpus[p] for p in q.gold_passage_ids if p in corpus] for q in questions]
        return Contexts(chosen, [[1.0] * len(c) for c in chosen])
    if index_dir is None:
        raise UserError("retriever_context needs an index (run `slm index` first)")
    from components.data.retrieval import load_retriever

    hits = load_retriever(Path(index_dir) / INDEX_SUBDIR).search([q.question for q in questions],
                                                                 cfg.retriever.top_k)
    size = int(read_json(Path(index_dir) / INDEX_RESULTS_FILE)["retriever_index_size_bytes"])
    return Contexts([[corpus[pid] for pid, _ in row] for row in hits], [[s for _, s in row] for row in hits],
                    index_size_bytes=size)


def render_prompts(cfg: AppConfig, tokenizer, questions: list[Question], contexts: Contexts) -> list[str]:
    """The text each question is asked with: the mode's message in the model's chat template."""
    return [render_prompt(tokenizer, user_message(q.question, ctx, cfg.prompt), cfg.prompt, cfg.model)
            for q, ctx in zip(questions, contexts.passages)]


def stage_prompts(cfg: AppConfig, tokenizer, mode: str, questions: list[Question], ingest_dir: Path,
                  key: str) -> list[str]:
    """The prompts eval would use for `mode`, for a stage without an index input (finetune, benchmark);
    `key` names the setting that chose the mode, for the error."""
    if mode == "retriever_context":
        raise UserError(f"{key}=retriever_context is not supported here (this stage has no index input); "
                        "use no_context or oracle_context")
    contexts = build_contexts(cfg, mode, questions, ingest_dir, index_dir=None)
    return render_prompts(cfg, tokenizer, questions, contexts)

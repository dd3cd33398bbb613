"""Retrievers (BM25, dense, hybrid), their on-disk indexes, and the INDEX stage's hit@k."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from components.data import retrieval
from components.core.config import RetrieverConfig
from components.core.errors import UserError
from components.core.fileio import dir_size_bytes, read_json, write_jsonl
from components.stages.index import answer_hit_at_k, gold_hit_at_k, run_index
from components.core.outputs import INDEX_RESULTS_FILE, INDEX_SUBDIR
from components.data.retrieval import (INDEX_MANIFEST, build_index, build_retriever, fuse, load_retriever,
                                  minmax)
from components.data.schema import PASSAGES_FILE, QUESTIONS_FILE, Passage, Question

from helpers import SHARED_DATA
NQ_ORACLE = SHARED_DATA / "nq_open" / "nq-open-oracle.jsonl.gz"

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
PARAPHRASE_QUERIES = {  # no content word in common with their passage
    "what is the biggest creature that ever existed": "whale",
    "tallest peak on the planet": "everest",
    "first astronaut on the lunar surface": "moon",
}
ALL_QUERIES = {**LEXICAL_QUERIES, **PARAPHRASE_QUERIES}


@pytest.fixture(scope="session")
def embedding_model():
    """Load the packaged all-MiniLM-L6-v2 once; retrieval's lru_cache hands this instance to every test."""
    return retrieval.load_embedding_model(RetrieverConfig().embedding_model, retrieval.resolve_device())


@pytest.fixture(scope="session")
def built_indexes(tmp_path_factory, embedding_model) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("indexes")
    return {kind: _build(kind, root / kind) for kind in ("bm25", "dense", "hybrid")}


def _build(kind: str, index_dir: Path) -> Path:
    build_index(RetrieverConfig(kind=kind), CORPUS, index_dir)
    return index_dir


def _top_ids(hits) -> list[str]:
    return [row[0][0] if row else "" for row in hits]


def test_bm25_puts_the_lexical_match_first(built_indexes):
    hits = load_retriever(built_indexes["bm25"]).search(list(LEXICAL_QUERIES), k=3)
    assert _top_ids(hits) == list(LEXICAL_QUERIES.values())


def test_dense_puts_the_paraphrase_match_first(built_indexes):
    hits = load_retriever(built_indexes["dense"]).search(list(PARAPHRASE_QUERIES), k=3)
    assert _top_ids(hits) == list(PARAPHRASE_QUERIES.values())


def test_hybrid_gets_both_kinds_of_query_right(built_indexes):
    hits = load_retriever(built_indexes["hybrid"]).search(list(ALL_QUERIES), k=5)
    assert _top_ids(hits) == list(ALL_QUERIES.values())
    for row in hits:
        scores = [s for _, s in row]
        assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)


@pytest.mark.parametrize("kind", ["bm25", "dense", "hybrid"])
def test_save_load_round_trip_gives_identical_results(built_indexes, kind):
    queries = list(ALL_QUERIES) + ["zzzz unknown words only"]
    in_memory = build_retriever(RetrieverConfig(kind=kind), CORPUS).search(queries, k=4)
    loaded = load_retriever(built_indexes[kind]).search(queries, k=4)
    assert loaded == in_memory


def test_batched_bm25_matches_bm25s_own_retrieve(built_indexes):
    retriever = load_retriever(built_indexes["bm25"])
    queries = list(ALL_QUERIES) + ["river river desert", "the chess board game for two players"]
    ours = retriever.search(queries, k=5)
    import bm25s

    tokens = bm25s.tokenize(queries, stopwords="en", return_ids=False, show_progress=False)
    rows, scores = retriever.model.retrieve(tokens, k=5, show_progress=False)
    theirs = [{retriever.passage_ids[r]: float(v) for r, v in zip(rs, vs) if v > 0} for rs, vs in zip(rows, scores)]
    assert [dict(row) for row in ours] == [pytest.approx(row, rel=1e-5) for row in theirs]


def test_bm25_tokenize_gives_bm25s_tokens():
    import bm25s

    texts = [retrieval.passage_text(p) for p in CORPUS] + list(ALL_QUERIES) + [
        "", "THE Who's WHO of Zürich, 1889–1921: naïve café_au_lait a I x2", "it's   The  END\n\tof it"]
    assert retrieval.bm25_tokenize(texts) == bm25s.tokenize(texts, stopwords="en", return_ids=False,
                                                            show_progress=False)


def test_results_are_best_first_and_capped_at_k_and_corpus_size(built_indexes):
    dense = load_retriever(built_indexes["dense"])
    assert [len(row) for row in dense.search(["river", "desert"], k=2)] == [2, 2]
    assert len(dense.search(["river"], k=100)[0]) == len(CORPUS)
    assert dense.search([], k=3) == []
    # BM25 returns only passages sharing a query term, not arbitrary zero-score rows.
    assert load_retriever(built_indexes["bm25"]).search(["zzzz qqqq"], k=3) == [[]]


def test_manifest_size_is_the_real_bytes_on_disk(built_indexes):
    for kind, index_dir in built_indexes.items():
        manifest = read_json(index_dir / INDEX_MANIFEST)
        on_disk = dir_size_bytes(index_dir) - (index_dir / INDEX_MANIFEST).stat().st_size
        assert manifest["size_bytes"] == on_disk > 0
        assert manifest["kind"] == kind and manifest["num_passages"] == len(CORPUS)
    assert read_json(built_indexes["dense"] / INDEX_MANIFEST)["dim"] == 384
    assert read_json(built_indexes["bm25"] / INDEX_MANIFEST)["dim"] is None


def test_minmax_and_fuse_by_hand():
    assert minmax({"a": 2.0, "b": 4.0, "c": 3.0}) == {"a": 0.0, "b": 1.0, "c": 0.5}
    assert minmax({"a": 5.0}) == {"a": 1.0}
    bm25 = [("a", 10.0), ("b", 5.0), ("c", 0.0)]  # normalised: a 1, b 0.5, c 0
    dense = [("c", 0.9), ("b", 0.5), ("d", 0.1)]  # normalised: c 1, b 0.5, d 0
    # dense weight 0.25: a .75, b .5, c .25, d 0
    assert fuse(bm25, dense, 0.25, k=3) == [("a", 0.75), ("b", 0.5), ("c", 0.25)]
    assert [pid for pid, _ in fuse(bm25, dense, 1.0, k=4)][:2] == ["c", "b"]


def test_gold_and_answer_hit_at_k_by_hand():
    questions = [
        Question("q1", "?", ["Paris"], gold_passage_ids=["p2"]),
        Question("q2", "?", ["1889"], gold_passage_ids=["p9"]),
        Question("q3", "?", ["the Moon"]),  # no gold ids: left out of gold_hit, kept in answer_hit
    ]
    hits = [[("p1", 3.0), ("p2", 2.0)], [("p3", 1.0), ("p1", 0.5)], [("p3", 1.0)]]
    assert gold_hit_at_k(hits, questions, 1) == 0.0
    assert gold_hit_at_k(hits, questions, 2) == 0.5  # q1 at rank 2; q2's gold never retrieved
    texts = {"p1": " tower in paris completed in 1889 ", "p2": " nothing ", "p3": " on moon "}
    assert answer_hit_at_k(hits, questions, texts, 1) == pytest.approx(2 / 3)  # q1 and q3
    texts["p1"] = " parisian towers "  # "paris" inside a longer word is not the answer
    assert answer_hit_at_k(hits, questions, texts, 2) == pytest.approx(1 / 3)  # q3 only
    assert gold_hit_at_k(hits, questions[2:], 1) is None


def test_failed_build_leaves_no_index_folder(tmp_path, monkeypatch):
    def broken_save(self, index_dir):
        (index_dir / "half-written").write_text("x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(retrieval.BM25Retriever, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        build_index(RetrieverConfig(kind="bm25"), CORPUS, tmp_path / "index")
    assert list(tmp_path.iterdir()) == []


def test_failed_rebuild_keeps_the_previous_index(tmp_path, monkeypatch):
    index_dir = _build("bm25", tmp_path / "index")
    before = sorted(p.name for p in index_dir.iterdir())
    monkeypatch.setattr(retrieval.BM25Retriever, "build", classmethod(lambda *a: 1 / 0))
    with pytest.raises(ZeroDivisionError):
        build_index(RetrieverConfig(kind="bm25"), CORPUS, index_dir)
    assert sorted(p.name for p in index_dir.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["index"]


def test_duplicate_passage_ids_are_a_user_error(tmp_path):
    with pytest.raises(UserError, match="duplicate passage id 'chess'"):
        build_index(RetrieverConfig(), CORPUS + [CORPUS[-1]], tmp_path / "index")


def _write_ingest(folder: Path, passages: list[Passage], questions: list[Question]) -> Path:
    write_jsonl(folder / PASSAGES_FILE, [p.to_dict() for p in passages])
    write_jsonl(folder / QUESTIONS_FILE, [q.to_dict() for q in questions])
    return folder


def test_run_index_writes_results(tmp_path):
    questions = [Question(f"q{i}", text, [], gold_passage_ids=[pid])
                 for i, (text, pid) in enumerate(LEXICAL_QUERIES.items())]
    questions.append(Question("qa", "Who discovered insulin?", ["Frederick Banting"]))
    ingest = _write_ingest(tmp_path / "ingest", CORPUS, questions)
    results = run_index(RetrieverConfig(kind="bm25", hit_ks=[1, 3]), ingest, tmp_path / "out")
    assert read_json(tmp_path / "out" / INDEX_RESULTS_FILE) == results
    assert results["gold_hit@1"] == 1.0 and results["answer_hit@1"] == pytest.approx(1 / 4)
    size = read_json(tmp_path / "out" / INDEX_SUBDIR / INDEX_MANIFEST)["size_bytes"]
    assert results["retriever_index_size_bytes"] == size
    assert results["retriever_index_size_mb"] == round(size / 2**20, 3)
    assert results["num_passages"] == len(CORPUS) and results["num_questions_with_gold"] == 3
    assert results["queries_per_second"] > 0


def test_run_index_rejects_missing_or_empty_passages(tmp_path):
    with pytest.raises(UserError, match=f"{PASSAGES_FILE}: file not found"):
        run_index(RetrieverConfig(), tmp_path, tmp_path / "out")
    _write_ingest(tmp_path, [], [Question("q1", "?", ["a"])])
    with pytest.raises(UserError, match=f"{PASSAGES_FILE}: no passages to index"):
        run_index(RetrieverConfig(), tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _nq_oracle_rows(limit: int) -> list[dict]:
    with gzip.open(NQ_ORACLE, "rt", encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(limit), f)]


@pytest.mark.skipif(not NQ_ORACLE.is_file(), reason="shared NQ data not present")
def test_bm25_finds_real_nq_gold_passages(tmp_path):
    from components.data.schema import passage_id

    rows = _nq_oracle_rows(500)
    passages, questions = {}, []
    for i, row in enumerate(rows):
        gold = [c for c in row["ctxs"] if c.get("isgold")]
        for c in gold:
            pid = passage_id(c["title"], c["text"])
            passages[pid] = Passage(pid, c["title"], c["text"])
        questions.append(Question(f"q{i}", row["question"], row["answers"],
                                  [passage_id(c["title"], c["text"]) for c in gold]))
    ingest = _write_ingest(tmp_path / "ingest", list(passages.values()), questions)
    results = run_index(RetrieverConfig(kind="bm25", hit_ks=[1, 10]), ingest, tmp_path / "out")
    # Measured 0.868 / 0.968 / 0.966 on these 500 questions; chance at 10 is 10/498.
    assert 0.8 < results["gold_hit@1"] < results["gold_hit@10"] < 1.0
    assert results["answer_hit@10"] > 0.9

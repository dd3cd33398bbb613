"""Retrievers (BM25, dense, hybrid) and their on-disk indexes (the index stage and its hit@k:
tests/components/stages/test_index.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from components.data import retrieval
from components.core.config import RetrieverConfig
from components.core.errors import UserError
from components.core.fileio import dir_size_bytes, read_json
from components.data.retrieval import (INDEX_MANIFEST, build_index, build_retriever, fuse, load_retriever,
                                  minmax)
from helpers import CORPUS, LEXICAL_QUERIES

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

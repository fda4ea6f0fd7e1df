# attnrag: `make demo` and `make test` work on a fresh clone with only Python installed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.attnrag-setup
DEMO_OUT ?= demo-out

.PHONY: setup demo demo-quick test test-fast bench lint clean

# Idempotent: the venv, then torch 2.13.0 first (the CPU build on this machine; nothing pulls a CUDA
# build afterwards because every later requirement is satisfied by it), then the package and its
# extras, then the default models into the cache ($$ATTNRAG_HOME, default ~/.cache/attnrag).
setup: $(STAMP)
	@$(VENV)/bin/attnrag models fetch

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[test,bench]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/attnrag demo --out $(DEMO_OUT)

demo-quick: setup
	$(VENV)/bin/attnrag demo --quick --out $(DEMO_OUT)-quick

test: setup
	$(PY) -m pytest -q -rs

test-fast: setup
	$(PY) -m pytest -q -rs -m "not slow"

bench: setup
	$(PY) benchmarks/run_all.py --out benchmarks/results.json

lint: $(STAMP)
	test -x $(VENV)/bin/ruff || $(PIP) install --quiet 'ruff>=0.5,<0.13'
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache

# attnrag: `make demo` and `make test` work on a fresh clone with only Python installed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.attnrag-setup
DEMO_OUT ?= demo-out

LOCK   := requirements.lock

.PHONY: setup demo demo-quick test test-fast test-latest lock bench lint clean

# Idempotent: the venv, then torch 2.13.0 first (the CPU build on this machine; nothing pulls a CUDA
# build afterwards because every later requirement is satisfied by it), then the package and its
# extras with the versions that were tested ($(LOCK), as constraints), then the default models into
# the cache ($$ATTNRAG_HOME, default ~/.cache/attnrag).
setup: $(STAMP)
	@$(VENV)/bin/attnrag models fetch

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c $(LOCK) -e '.[test,bench]'
	touch $(STAMP)

# Re-resolve the ranges in a clean venv, run the whole suite there, and only then rewrite $(LOCK).
lock:
	scripts/make_lock.sh $(PYTHON)

# The tests that touch other libraries' internals, on the newest releases the ranges allow.
test-latest:
	scripts/test_latest.sh $(PYTHON)

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
	rm -rf $(VENV) .venv-latest .venv-lock build dist src/*.egg-info .pytest_cache

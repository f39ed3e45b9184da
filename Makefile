# Build, run and test tooling. `make` alone lists the targets.
#
#   make run                      set everything up, then serve web + Celery worker + beat
#   make test                     ruff + lint-imports + the whole pytest suite on PostgreSQL and Redis
#   make test ARGS="-k ledger"    extra pytest arguments

PYTHON ?= python3.11
VENV := .venv
VENV_PY := $(VENV)/bin/python
# What is installed, one stamp per set: `make run` needs only the main dependencies ("."),
# `make test` adds the dev extras (".[dev]"). Each is re-installed when pyproject.toml is newer.
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv venv-dev test run lint fmt migrate manage clean

help: ## list the targets
	@echo "Targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  make %-9s %s\n", $$1, $$2}'
	@echo
	@echo 'Extra pytest arguments: make test ARGS="-k ledger -x"'

venv: $(STAMP_RUN) ## (internal) create .venv with Python 3.11 and install what serving needs

venv-dev: $(STAMP_DEV) ## (internal) .venv plus the dev extras (tests, linters, benches)

$(VENV_PY):
	@if ! command -v $(PYTHON) >/dev/null 2>&1 || \
		! $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; then \
		echo "error: Python 3.11 is required, but '$(PYTHON)' was not found or is not Python 3.11." >&2; \
		echo "       Install Python 3.11 (or run: make PYTHON=/path/to/python3.11 ...)." >&2; \
		exit 1; \
	fi
	@echo "Creating $(VENV) with $$(command -v $(PYTHON))"
	@$(PYTHON) -m venv $(VENV)

# pyproject.toml is the only list of dependencies; scripts/install.sh installs a set of it with
# uv when it can be had (pip-installed into the venv), with pip otherwise.
$(STAMP_RUN): pyproject.toml | $(VENV_PY)
	@scripts/install.sh $(VENV) "."
	@touch $(STAMP_RUN)

# ".[dev]" includes the main dependencies, so it stamps both sets.
$(STAMP_DEV): pyproject.toml | $(VENV_PY)
	@scripts/install.sh $(VENV) ".[dev]"
	@touch $(STAMP_RUN) $(STAMP_DEV)

test: venv-dev ## run ruff, lint-imports and the whole test suite on PostgreSQL + Redis
	$(VENV_PY) scripts/run_tests.py $(ARGS)

run: venv ## migrate, seed the demo, serve http://127.0.0.1:8000 with worker and beat
	$(VENV_PY) scripts/run_dev.py

lint: venv-dev ## ruff check + ruff format --check + lint-imports (app boundaries)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

fmt: venv-dev ## ruff format + ruff check --fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate: venv ## apply migrations (to the embedded PostgreSQL under var/ unless DATABASE_URL is set)
	$(VENV_PY) scripts/run_dev.py manage migrate

manage: venv ## a manage.py command on make run's embedded servers: make manage ARGS="suggest_prices"
	$(VENV_PY) scripts/run_dev.py manage $(ARGS)

clean: ## remove everything under var/ except .gitkeep
	find var -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +

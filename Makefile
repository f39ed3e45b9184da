# Build, run and test tooling. `make` alone lists the targets.
#
#   make run                      set everything up, then serve web + Celery worker + beat
#   make test                     ruff + lint-imports + the whole pytest suite on PostgreSQL and Redis
#   make test ARGS="-k ledger"    extra pytest arguments

PYTHON ?= python3.11
VENV := .venv
VENV_PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv test run lint fmt migrate manage clean

help: ## list the targets
	@echo "Targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  make %-9s %s\n", $$1, $$2}'
	@echo
	@echo 'Extra pytest arguments: make test ARGS="-k ledger -x"'

venv: $(STAMP) ## (internal) create .venv with Python 3.11 and install .[dev]

$(VENV_PY):
	@if ! command -v $(PYTHON) >/dev/null 2>&1 || \
		! $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; then \
		echo "error: Python 3.11 is required, but '$(PYTHON)' was not found or is not Python 3.11." >&2; \
		echo "       Install Python 3.11 (or run: make PYTHON=/path/to/python3.11 ...)." >&2; \
		exit 1; \
	fi
	@echo "Creating $(VENV) with $$(command -v $(PYTHON))"
	$(PYTHON) -m venv $(VENV)

# Re-install only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml | $(VENV_PY)
	@echo "Installing .[dev] into $(VENV) (pyproject.toml changed or first run)"
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check ".[dev]"
	@touch $(STAMP)

test: venv ## run ruff, lint-imports and the whole test suite on PostgreSQL + Redis
	$(VENV_PY) scripts/run_tests.py $(ARGS)

run: venv ## migrate, seed the demo, serve http://127.0.0.1:8000 with worker and beat
	$(VENV_PY) scripts/run_dev.py

lint: venv ## ruff check + ruff format --check + lint-imports (app boundaries)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

fmt: venv ## ruff format + ruff check --fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate: venv ## apply migrations (to the embedded PostgreSQL under var/ unless DATABASE_URL is set)
	$(VENV_PY) scripts/run_dev.py manage migrate

manage: venv ## a manage.py command on make run's embedded servers: make manage ARGS="suggest_prices"
	$(VENV_PY) scripts/run_dev.py manage $(ARGS)

clean: ## remove everything under var/ except .gitkeep
	find var -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +

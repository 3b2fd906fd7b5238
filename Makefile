# smsgw: `make run` starts the gateway, `make test` passes the tests. `make help` lists all.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_STAMP := tests/npm/node_modules/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test check lint format bench chromium

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NPM_STAMP): tests/npm/package.json tests/npm/package-lock.json
	command -v npm >/dev/null || (apt-get update -q && apt-get install -y -q nodejs npm)
	cd tests/npm && npm ci --silent --no-audit --no-fund
	touch $(NPM_STAMP)

install: $(STAMP) ## Create .venv and install smsgw with its development tools

run: $(STAMP) ## Start the gateway on http://127.0.0.1:3000 (SQLite in ./data)
	$(BIN)/smsgw db upgrade
	$(BIN)/smsgw serve

#: The browser tests drive Debian's Chromium (Playwright's own browsers are not downloaded).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium: ## Install Debian's Chromium for the browser tests (apt; sudo when not root)
	command -v chromium >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

test: $(STAMP) $(NPM_STAMP) chromium ## Run the test suite (installs what it needs)
	$(BIN)/python -m pytest -n 3

lint: $(STAMP) ## ruff format --check, ruff check, mypy --strict
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

check: lint test ## The one gate: lint, types and tests

format: $(STAMP) ## Format the code
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP) ## Run the benchmarks (installs wrk); figures go to docs/performance.md
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.fleet
	$(BIN)/python -m bench.webhooks

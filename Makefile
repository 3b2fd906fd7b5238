# smsgw: `make run` starts the gateway, `make test` passes the tests. `make help` lists all.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
#: `make run` needs only the package; the development tools (STAMP) are for tests and checks.
RUN_STAMP := $(VENV)/.installed-run
NPM_STAMP := tests/npm/node_modules/.installed
#: Jasmin 0.11.0 (not 0.11.1, which loses receipts) in a venv of its own: the peer of
#: tests/test_link_jasmin.py and the anchor of bench/smpp --jasmin.
JASMIN_VERSION := 0.11.0
JASMIN_VENV := .venv-jasmin
JASMIN_STAMP := $(JASMIN_VENV)/.installed-$(JASMIN_VERSION)

.DEFAULT_GOAL := help
.PHONY: help install run test check lint format bench chromium postgresql brokers

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

#: The first `make run` is mostly installing: the venv gets no pip of its own when the
#: system's pip can install into it (`--python`), and no bytecode is compiled ahead (Python
#: compiles what it imports, on first use).
RUN_PIP := install --quiet --disable-pip-version-check --no-compile -e .
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --without-pip $(VENV)
	if $(BIN)/python -m pip --version >/dev/null 2>&1; then $(BIN)/python -m pip $(RUN_PIP); \
	elif $(PYTHON) -m pip --python $(BIN)/python --version >/dev/null 2>&1; then \
	  $(PYTHON) -m pip --python $(BIN)/python $(RUN_PIP); \
	else $(BIN)/python -m ensurepip --default-pip && $(BIN)/python -m pip $(RUN_PIP); fi
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --default-pip
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

$(NPM_STAMP): tests/npm/package.json tests/npm/package-lock.json
	command -v npm >/dev/null || (apt-get update -q && apt-get install -y -q nodejs npm)
	cd tests/npm && npm ci --silent --no-audit --no-fund
	touch $(NPM_STAMP)

$(JASMIN_STAMP):
	test -x $(JASMIN_VENV)/bin/python || $(PYTHON) -m venv $(JASMIN_VENV)
	$(JASMIN_VENV)/bin/python -m pip install --quiet --disable-pip-version-check jasmin==$(JASMIN_VERSION)
	touch $(JASMIN_STAMP)

install: $(STAMP) ## Create .venv and install smsgw with its development tools

run: $(RUN_STAMP) ## Start the gateway on http://127.0.0.1:3000 (SQLite in ./data; migrates it)
	$(BIN)/smsgw serve

#: The browser tests drive Debian's Chromium (Playwright's own browsers are not downloaded).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium: ## Install Debian's Chromium for the browser tests (apt; sudo when not root)
	command -v chromium >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

#: The PostgreSQL tests start a throwaway cluster of their own (tests/pgcluster.py) with the
#: server binaries of Debian's package; its own cluster is not used.
postgresql: ## Install PostgreSQL's server binaries for the tests (apt; sudo when not root)
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q postgresql)

#: Jasmin's message broker and store (tests/test_link_jasmin.py and bench/smpp --jasmin start
#: their own on free ports; the system's services are not used).
brokers: ## Install Redis and RabbitMQ for the Jasmin test (apt; sudo when not root)
	command -v redis-server >/dev/null && test -x /usr/lib/rabbitmq/bin/rabbitmq-server || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends redis-server rabbitmq-server)

#: The sources are byte-compiled first: the tests start smsgw in some 200 processes, and
#: with PYTHONDONTWRITEBYTECODE set none of them writes the bytecode the next one would read
#: (about 0.15 s of CPU a start).
test: $(STAMP) $(NPM_STAMP) $(JASMIN_STAMP) chromium postgresql brokers ## Run the test suite (installs what it needs)
	$(BIN)/python -m compileall -q src bench >/dev/null
	$(BIN)/python -m pytest -n 4 --dist worksteal

lint: $(STAMP) ## ruff format --check, ruff check, mypy --strict
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

check: lint test ## The one gate: lint, types and tests

format: $(STAMP) ## Format the code
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP) $(NPM_STAMP) $(JASMIN_STAMP) postgresql brokers ## Run the benchmarks (installs wrk); figures go to docs/performance.md
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python -m bench.startup
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.fleet
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.nodes
	$(BIN)/python -m bench.nodes --parts engines
	$(BIN)/python -m bench.churn
	$(BIN)/python -m bench.data
	$(BIN)/python -m bench.smpp --jasmin $(JASMIN_VENV)

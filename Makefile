# Compute Billing Platform. `make run` runs it; `make test` tests it.
PYTHON ?= python3
VENV := .venv
UV_VERSION := 0.13.9
BIN := $(VENV)/bin
ARGS ?=

.PHONY: install run reset test lint bench clean

ASSETS := src/computebill/web/static/dist/app.css
ASSET_SOURCES := package-lock.json $(wildcard src/computebill/web/assets/*) \
	$(wildcard src/computebill/web/templates/*.html)

install: $(VENV)/.installed $(ASSETS)

# Web assets: Node 20+ and npm build them (Tailwind CSS, htmx, fonts); nothing comes from a CDN.
$(ASSETS): $(ASSET_SOURCES)
	@command -v npm >/dev/null || { echo "npm (Node 20+) is needed to build the web assets"; exit 1; }
	@npm ci --no-audit --no-fund --loglevel=error
	@npm run --silent build

$(VENV)/.installed: pyproject.toml uv.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=python3.11)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --quiet --frozen --all-extras --inexact
	@touch $@

run: install
	$(BIN)/computebill up $(ARGS)

# Development only: a fresh database (migrated and seeded) and an empty queue; asks first.
reset: install
	$(BIN)/computebill reset $(ARGS)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest $(ARGS)

bench: install
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache node_modules src/computebill/web/static/dist

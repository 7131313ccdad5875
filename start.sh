#!/usr/bin/env bash
# Fechatter's three run modes, as the original Fechatter's start.sh named them. Each verb is a thin wrapper over make.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
    cat <<'USAGE'
Usage: ./start.sh <command>

  help     this text
  single   one container: build the image and run the all-in-one supervisor in it
           (make build-docker run-docker; needs a Docker engine)
  multi    one container per service with docker-compose (make up; needs a Docker engine and .env)
  local    everything as local processes, no Docker (make run; Ctrl-C stops it)
  stop     stop whatever of the above is running (make stop, and make kill-docker / make down
           when a Docker engine is reachable)
  logs     follow the logs (make logs)
  status   what is running (make status, and make ps when a Docker engine is reachable)

Development with auto-reload in tmux: make dev / make dev-stop. Every target: make help.
USAGE
}

docker_engine() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

case "${1:-help}" in
    help|-h|--help) usage ;;
    single) make build-docker run-docker ;;
    multi) make up ;;
    local) exec make run ;;
    stop)
        make stop
        if docker_engine; then make kill-docker down; fi ;;
    logs) exec make logs ;;
    status)
        make status || true
        if docker_engine; then make ps; fi ;;
    *)
        echo "start.sh: unknown command '$1'" >&2
        usage >&2
        exit 64 ;;
esac

#!/bin/sh
# Container entry point. `serve` runs what FECHATTER_SERVICE names; any other command runs as given.
set -eu

if [ "${1:-serve}" != "serve" ]; then
    exec "$@"
fi

case "${FECHATTER_SERVICE:-all}" in
    all)
        # The all-in-one supervisor: PostgreSQL, NATS and Redis from the wheels, state in /data.
        exec fechatter up ;;
    migrate)
        exec python -m alembic -c /app/alembic.ini upgrade head ;;
    fechatter_server|notify_server|bot_server|analytics_server|gateway)
        exec python -m "$FECHATTER_SERVICE" ;;
    *)
        echo "entrypoint: unknown FECHATTER_SERVICE=${FECHATTER_SERVICE}" >&2
        echo "  expected all, migrate, fechatter_server, notify_server, bot_server, analytics_server or gateway" >&2
        exit 64 ;;
esac

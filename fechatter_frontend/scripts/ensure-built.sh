#!/usr/bin/env bash
# Build the web client when dist/ is missing or older than its sources; without Node.js, warn and go on
# (the gateway then serves a short placeholder page at /).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -f dist/index.html ]] && [[ -z "$(find src public index.html package.json package-lock.json vite.config.ts -newer dist/index.html -print -quit 2>/dev/null)" ]]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "warning: Node.js (npm) not found: the web client is not built; the gateway serves a placeholder at /" >&2
  exit 0
fi
echo "Building the web client (fechatter_frontend/dist)…"
if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm install --no-audit --no-fund
fi
npm run build

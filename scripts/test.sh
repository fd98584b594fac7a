#!/usr/bin/env bash
# Install everything the tests need (Python packages; Debian tools when missing),
# then lint, type-check and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
# System tools the suite drives for real: its own redis-server, haproxy as the load balancer,
# wrk for the benchmark smoke test, kubectl (kustomize) to render the manifests, and chromium
# for the admin console's browser tests (Playwright drives it; it downloads no browser itself).
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v haproxy >/dev/null 2>&1 || missing="$missing haproxy"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v kubectl >/dev/null 2>&1 || missing="$missing kubernetes-client"
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
if [ -n "$missing" ]; then
  echo "==> installing Debian packages:$missing"
  sudo_cmd=""
  if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq $missing >/dev/null
fi
# A third-party backend from the npm registry: the reference "everything" server.
everything=.cache/node/node_modules/.bin/mcp-server-everything
if [ ! -x "$everything" ]; then
  echo "==> installing @modelcontextprotocol/server-everything (npm) into .cache/node"
  npm install --silent --no-audit --no-fund --prefix .cache/node @modelcontextprotocol/server-everything@2026.8.31
fi
export PATH="$PWD/.venv/bin:$PATH"
echo "==> ruff"
ruff check .
ruff format --check .
echo "==> mypy (strict: aggregator, shared, worker)"
mypy
echo "==> pytest"
pytest "$@"

#!/usr/bin/env bash
# Create .venv and install the project with the given extras (idempotent, prints what it does).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating virtualenv .venv"
  python3 -m venv .venv
fi
echo "==> installing mcp-aggregator${extras:+[$extras]} into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"

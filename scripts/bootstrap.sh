#!/usr/bin/env bash
# Create .venv and install the project with the given extras (idempotent, prints what it does).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating virtualenv .venv"
  if ! python3 -m venv .venv 2>/dev/null; then
    # Debian's python3 ships venv separately.
    echo "==> installing python3-venv (Debian package)"
    rm -rf .venv
    sudo_cmd=""
    if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv .venv
  fi
fi
echo "==> installing mcp-aggregator${extras:+[$extras]} into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"

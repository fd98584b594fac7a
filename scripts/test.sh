#!/usr/bin/env bash
# Install everything the tests need (Python packages; redis-server from apt if missing),
# then lint and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
if ! command -v redis-server >/dev/null 2>&1; then
  echo "==> installing redis-server (Debian package) for the test suite"
  sudo_cmd=""
  if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq redis-server >/dev/null
fi
export PATH="$PWD/.venv/bin:$PATH"
echo "==> ruff"
ruff check .
echo "==> pytest"
pytest "$@"

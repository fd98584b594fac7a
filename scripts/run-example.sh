#!/usr/bin/env bash
# Install everything and run the gateway on the embedded store with two real backends:
# mcp-server-time (PyPI, stdio) and the example notes server (streamable HTTP).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh examples
export PATH="$PWD/.venv/bin:$PATH"
echo "==> starting the example notes server on 127.0.0.1:8201"
python examples/notes_server.py --port 8201 &
notes=$!
trap 'kill $notes 2>/dev/null; wait $notes 2>/dev/null' EXIT
for _ in $(seq 50); do
  python - <<'PY' 2>/dev/null && break
import socket; socket.create_connection(("127.0.0.1", 8201), 0.2).close()
PY
  sleep 0.2
done
echo "==> starting the aggregator; connect an MCP client to http://127.0.0.1:8090/mcp (Ctrl-C stops)"
aggregator serve -c examples/config.yaml "$@"

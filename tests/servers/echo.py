"""The benchmark backend: one `echo` tool over streamable HTTP, stateless, JSON responses.

    python -m tests.servers.echo --port N [--host 127.0.0.1]

Serves `/mcp` under uvicorn (uvloop and httptools when installed, no access log) and prints
`READY <url>` once listening. Stateless JSON mode answers 2026-07-28 requests and 2025-11-25
ones alike, each POST on its own (no sessions, no SSE).
"""

from __future__ import annotations

import argparse

from mcp.server.mcpserver import MCPServer

from tests.servers.http import add_address_arguments, run

server = MCPServer("echo", version="1.0.0")


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_address_arguments(parser, port_required=True)
    args = parser.parse_args()
    app = server.streamable_http_app(json_response=True, stateless_http=True, host=args.host)
    run(app, args.host, args.port, "/mcp")


if __name__ == "__main__":
    main()

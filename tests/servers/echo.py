"""The benchmark backend: one `echo` tool, streamable HTTP, 2026-07-28 stateless JSON responses.

    python -m tests.servers.echo --port N [--host 127.0.0.1]

Runs under uvicorn with uvloop and httptools; prints `READY <url>` once listening.
"""

from __future__ import annotations

import argparse

import uvloop
from mcp.server.mcpserver import MCPServer

from tests.servers.http import serve

server = MCPServer("echo", version="1.0.0")


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = server.streamable_http_app(json_response=True, stateless_http=True)
    uvloop.run(serve(app, args.host, args.port, "/mcp"))


if __name__ == "__main__":
    main()

"""An example MCP server for the README: a shared notebook over streamable HTTP.

python examples/notes_server.py --port 8201
"""

from __future__ import annotations

import argparse

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("notes", version="1.0.0", instructions="A small shared notebook.")
_notes: list[str] = []


@server.tool()
def add_note(text: str) -> str:
    """Add a note to the notebook."""
    _notes.append(text)
    return f"note {len(_notes)} saved"


@server.tool()
def list_notes() -> list[str]:
    """Every note so far, oldest first."""
    return list(_notes)


@server.resource("notes://all", mime_type="text/plain")
def all_notes() -> str:
    """The whole notebook as text."""
    return "\n".join(_notes) or "(empty)"


@server.prompt()
def summarize() -> str:
    """Ask the model to summarise the notebook."""
    return "Summarise these notes:\n" + ("\n".join(_notes) or "(none yet)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8201)
    args = parser.parse_args()
    uvicorn.run(server.streamable_http_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

"""MCP requests as raw HTTP for the scale benchmark: 2026-07-28 stateless calls, 2025-11-25 sessions, streams.

Everything goes over `loadtest.rawhttp`, so thousands of sessions and open streams cost the
benchmark process little and the numbers are the gateway's.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from loadtest.rawhttp import AsyncConnection, Connection

__all__ = [
    "HANDSHAKE",
    "STATELESS",
    "end_session",
    "first_page_names",
    "initialize_session",
    "list_all",
    "list_page",
    "listen_request",
    "open_get_stream",
    "open_listen_stream",
    "stateless_request",
]

STATELESS = "2026-07-28"
HANDSHAKE = "2025-11-25"
_CLIENT = {"name": "scale-bench", "version": "1.0"}


class _Result(msgspec.Struct):
    tools: list[msgspec.Raw]
    nextCursor: str | None = None


class _Page(msgspec.Struct):
    result: _Result


_page_decoder = msgspec.json.Decoder(_Page)


def stateless_request(
    request_id: int, method: str, params: dict[str, Any] | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a 2026-07-28 request (its `_meta` and the mirrored headers)."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": STATELESS,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": _CLIENT,
    }
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**(params or {}), "_meta": meta}}
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": STATELESS,
        "mcp-method": method,
    }
    return headers, json.dumps(body).encode()


def list_page(conn: Connection, cursor: str | None = None) -> _Result:
    """One page of tools/list (2026-07-28, JSON)."""
    headers, body = stateless_request(1, "tools/list", {"cursor": cursor} if cursor else None)
    headers["accept"] = "application/json"
    response = conn.request("POST", "/mcp", headers, body)
    if response.status != 200:
        raise RuntimeError(f"tools/list answered HTTP {response.status}: {response.body[:300]!r}")
    return _page_decoder.decode(response.body).result


def list_all(conn: Connection) -> tuple[int, int]:
    """Every page of tools/list: (tools, pages)."""
    tools, pages, cursor = 0, 0, None
    while True:
        page = list_page(conn, cursor)
        tools, pages, cursor = tools + len(page.tools), pages + 1, page.nextCursor
        if cursor is None:
            return tools, pages


def first_page_names(conn: Connection) -> list[str]:
    return [msgspec.json.decode(tool)["name"] for tool in list_page(conn).tools]


async def initialize_session(conn: AsyncConnection) -> str:
    """A 2025-11-25 session: initialize, then notifications/initialized; its Mcp-Session-Id."""
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    params = {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": _CLIENT}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}).encode()
    response = await conn.request("POST", "/mcp", headers, body)
    session = response.headers.get("mcp-session-id")
    if response.status != 200 or session is None:
        raise RuntimeError(f"initialize answered HTTP {response.status}: {response.body[:300]!r}")
    headers |= {"mcp-session-id": session, "mcp-protocol-version": HANDSHAKE}
    initialized = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode()
    response = await conn.request("POST", "/mcp", headers, initialized)
    if response.status != 202:
        raise RuntimeError(f"notifications/initialized answered HTTP {response.status}: {response.body[:300]!r}")
    return session


async def end_session(conn: AsyncConnection, session: str) -> None:
    headers = {"mcp-session-id": session, "mcp-protocol-version": HANDSHAKE}
    await conn.request("DELETE", "/mcp", headers)


async def open_get_stream(conn: AsyncConnection, session: str) -> None:
    """The session's GET stream (2025-11-25), left open; its events are read from `conn.reader`."""
    headers = {"accept": "text/event-stream", "mcp-session-id": session, "mcp-protocol-version": HANDSHAKE}
    status, _ = await conn.open("GET", "/mcp", headers)
    if status != 200:
        raise RuntimeError(f"GET stream answered HTTP {status}")


def listen_request(request_id: int) -> tuple[dict[str, str], bytes]:
    """A 2026-07-28 subscriptions/listen for tool list changes."""
    return stateless_request(request_id, "subscriptions/listen", {"notifications": {"toolsListChanged": True}})


async def open_listen_stream(conn: AsyncConnection, request_id: int) -> None:
    headers, body = listen_request(request_id)
    status, _ = await conn.open("POST", "/mcp", headers, body)
    if status != 200:
        raise RuntimeError(f"subscriptions/listen answered HTTP {status}")

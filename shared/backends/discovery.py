"""Read everything a backend offers into a ServerRecord (all pages of every list)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from msgspec import UNSET

from shared.backends.base import BackendConnection
from shared.protocol.errors import BackendError, error_from_wire
from shared.protocol.jsonrpc import raw
from shared.protocol.vocabulary import LIST_KINDS
from shared.records import ServerRecord

__all__ = ["discover", "health_check"]

_MAX_PAGES = 100


async def discover(
    conn: BackendConnection, only: set[str] | None = None, base: ServerRecord | None = None
) -> ServerRecord:
    """A fresh record for `conn`; with `only` (list keys), re-read just those lists and keep the rest of `base`."""
    lists: dict[str, list[dict[str, Any]]] = {}
    for kind in LIST_KINDS:
        if only is not None and kind.key not in only and base is not None:
            lists[kind.field] = getattr(base, kind.field)
        elif kind.capability in conn.capabilities:
            lists[kind.field] = await _list_all(conn, kind.method, kind.key)
        else:
            lists[kind.field] = []
    return ServerRecord(
        server=conn.server,
        state="up",
        protocol_version=conn.protocol_version,
        transport=conn.transport,
        server_info=conn.server_info,
        capabilities=conn.capabilities,
        instructions=conn.instructions,
        updated_at=time.time(),
        tools=lists["tools"],
        prompts=lists["prompts"],
        resources=lists["resources"],
        resource_templates=lists["resource_templates"],
    )


async def _list_all(conn: BackendConnection, method: str, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        params = {"cursor": raw(cursor)} if cursor is not None else None
        reply = await conn.request(method, params, control=True)
        if reply.error is not UNSET or reply.result is UNSET:
            error = error_from_wire(reply.error if reply.error is not UNSET else None, who=f"backend {conn.server!r}")
            raise BackendError(conn.server, f"backend {conn.server!r} failed {method}: {error.message}")
        result = msgspec.json.decode(reply.result)
        page = result.get(key) if isinstance(result, dict) else None
        if not isinstance(page, list):
            raise BackendError(conn.server, f"backend {conn.server!r} answered {method} without a {key!r} list")
        items.extend(item for item in page if isinstance(item, dict))
        cursor = result.get("nextCursor")
        if not isinstance(cursor, str):
            return items
    raise BackendError(conn.server, f"backend {conn.server!r} paginated {method} past {_MAX_PAGES} pages")


async def health_check(conn: BackendConnection, timeout: float) -> None:
    """Raise unless the backend answers: `server/discover` on 2026-07-28 (no ping there), else `ping`."""
    reply = await conn.request("server/discover" if conn.stateless else "ping", timeout=timeout, control=True)
    if reply.error is not UNSET:
        error = error_from_wire(reply.error, who=f"backend {conn.server!r}")
        raise BackendError(conn.server, f"backend {conn.server!r} failed its health check: {error.message}")

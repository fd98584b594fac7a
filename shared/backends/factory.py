"""Open a connection to a backend: the class for its `type`, the transport, the handshake."""

from __future__ import annotations

from collections.abc import Callable

from shared.backends.base import BackendConnection, Credentials, NotificationHandler
from shared.backends.negotiate import negotiate
from shared.backends.sse import SseConnection
from shared.backends.stdio import StdioConnection
from shared.backends.streamable_http import StreamableHttpConnection
from shared.config import ServerSpec

__all__ = ["CONNECTION_TYPES", "connect"]

CONNECTION_TYPES: dict[str, type[BackendConnection]] = {
    "stdio": StdioConnection,
    "sse": SseConnection,
    "streamable-http": StreamableHttpConnection,
}


async def connect(
    spec: ServerSpec,
    *,
    on_notification: NotificationHandler | None = None,
    on_lost: Callable[[BackendConnection, str], None] | None = None,
    credentials: Credentials | None = None,
) -> BackendConnection:
    """A live connection to `spec`'s backend with a negotiated protocol version (see negotiate.py)."""
    conn = CONNECTION_TYPES[spec.type](spec, on_notification=on_notification, on_lost=on_lost, credentials=credentials)
    await conn.open_transport()
    try:
        await negotiate(conn)
    except BaseException:
        await conn.aclose()
        raise
    conn.start_listening()
    return conn

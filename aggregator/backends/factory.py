"""Pick the connection class for a server spec's `type`, once."""

from __future__ import annotations

from aggregator.backends.base import BackendConnection
from aggregator.backends.sse import SseConnection
from aggregator.backends.stdio import StdioConnection
from aggregator.backends.streamable_http import StreamableHttpConnection

__all__ = ["CONNECTION_TYPES", "connection_class"]

CONNECTION_TYPES: dict[str, type[BackendConnection]] = {
    "stdio": StdioConnection,
    "sse": SseConnection,
    "streamable-http": StreamableHttpConnection,
}


def connection_class(backend_type: str) -> type[BackendConnection]:
    return CONNECTION_TYPES[backend_type]

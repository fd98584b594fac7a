"""Who is asking: the per-request context handlers see, whatever transport carried the request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from msgspec import Raw

from aggregator.protocol import versions as v
from aggregator.protocol.jsonrpc import Params, RequestId
from shared.records import SessionRecord

__all__ = ["CallContext", "ClientChannel"]


class ClientChannel(Protocol):
    """How the gateway reaches the client while one request is in progress."""

    async def notify(self, method: str, params: Raw) -> None:
        """Send a notification about this request (progress, log message); dropped if it cannot stream."""

    async def request(self, method: str, params: Raw) -> Raw:
        """Ask the client something (sampling, elicitation, roots) and return its result (2025-11-25)."""


@dataclass(slots=True)
class CallContext:
    request_id: RequestId
    method: str
    protocol_version: str
    meta: Params = field(default_factory=dict)
    client_capabilities_raw: Raw | None = None
    session: SessionRecord | None = None
    channel: ClientChannel | None = None
    subject: str | None = None
    param_headers: dict[str, str] | None = None
    transport_session: str | None = None  # a transport's own session id (legacy SSE, stdio)
    _capabilities: dict[str, Any] | None = None

    @property
    def modern(self) -> bool:
        return v.is_modern(self.protocol_version)

    @property
    def client_capabilities(self) -> dict[str, Any]:
        """What the client declared: per request (2026-07-28) or at initialize (2025-11-25)."""
        if self._capabilities is None:
            if self.session is not None:
                self._capabilities = self.session.client_capabilities
            elif self.client_capabilities_raw is not None:
                decoded = msgspec.json.decode(self.client_capabilities_raw)
                self._capabilities = decoded if isinstance(decoded, dict) else {}
            else:
                self._capabilities = {}
        return self._capabilities

    def forward_capabilities(self) -> Raw:
        """The client's capabilities as a 2026-07-28 backend should see them in `_meta`."""
        if self.client_capabilities_raw is None:
            self.client_capabilities_raw = Raw(msgspec.json.encode(self.client_capabilities))
        return self.client_capabilities_raw

    @property
    def progress_token(self) -> Raw | None:
        return self.meta.get(v.PROGRESS_TOKEN)

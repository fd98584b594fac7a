"""Who is asking: the per-request context handlers see, built the same way whatever transport carried it.

`stateless_call` builds it for a 2026-07-28 request (everything in `_meta`), `session_call` for
a request of a handshake-era session (what the client declared at initialize).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from msgspec import Raw

from aggregator.auth.principal import Principal
from aggregator.protocol import stateless
from shared.protocol import versions as v
from shared.protocol.jsonrpc import Message, Params, RequestId, decode_params
from shared.records import SessionRecord

__all__ = ["CallContext", "ClientChannel", "session_call", "stateless_call"]

_capabilities_decoder = msgspec.json.Decoder(dict[str, Any])


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
    principal: Principal | None = None
    """Who sent it, when the gateway checks tokens (aggregator.oauth)."""
    param_headers: Mapping[str, str] | None = None
    transport_session: str | None = None  # a transport's own session id (legacy SSE, stdio)
    _capabilities: dict[str, Any] | None = None

    @property
    def subject(self) -> str | None:
        return self.principal.subject if self.principal is not None else None

    @property
    def stateless(self) -> bool:
        return v.is_stateless(self.protocol_version)

    @property
    def client_capabilities(self) -> dict[str, Any]:
        """What the client declared: per request (2026-07-28) or at initialize (2025-11-25)."""
        if self._capabilities is None:
            if self.session is not None:
                self._capabilities = self.session.client_capabilities
            elif self.client_capabilities_raw is not None:
                try:  # read only when a backend asks the client something: not on the forwarding path
                    self._capabilities = _capabilities_decoder.decode(self.client_capabilities_raw)
                except msgspec.MsgspecError:
                    self._capabilities = {}  # not an object (or numbers beyond a float): it declared nothing usable
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


def session_call(
    message: Message,
    session: SessionRecord | None,
    channel: ClientChannel | None,
    *,
    protocol_version: str | None = None,
    transport_session: str | None = None,
    principal: Principal | None = None,
) -> tuple[CallContext, Params]:
    """Context and params for a request of a handshake-era session; InvalidParams if params are not an object."""
    assert isinstance(message.method, str) and isinstance(message.id, int | str)
    params = decode_params(message.params)
    meta = decode_params(params["_meta"]) if "_meta" in params else {}
    version = protocol_version or (session.protocol_version if session is not None else None)
    assert version is not None
    ctx = CallContext(
        request_id=message.id,
        method=message.method,
        protocol_version=version,
        meta=meta,
        session=session,
        channel=channel,
        transport_session=transport_session,
        principal=principal,
    )
    return ctx, params


def stateless_call(
    message: Message,
    headers: Mapping[str, str] | None,
    channel: ClientChannel | None,
    principal: Principal | None = None,
) -> tuple[CallContext, Params]:
    """Context and params for a 2026-07-28 request, validated (`headers`: lower-case, None off HTTP)."""
    assert isinstance(message.method, str) and isinstance(message.id, int | str)
    params = decode_params(message.params)
    envelope = stateless.parse(message.method, params, headers)
    ctx = CallContext(
        request_id=message.id,
        method=message.method,
        protocol_version=envelope.version,
        meta=envelope.meta,
        client_capabilities_raw=envelope.client_capabilities,
        channel=channel,
        param_headers=headers,
        principal=principal,
    )
    return ctx, params

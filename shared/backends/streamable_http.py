"""A backend over Streamable HTTP, in either era.

2026-07-28: every request is its own POST carrying `Mcp-Method`/`Mcp-Name`; closing the
response is the cancellation; list changes arrive on a `subscriptions/listen` stream.
2025-11-25 and older: requests carry the `Mcp-Session-Id` minted by `initialize`;
unsolicited notifications arrive on the GET stream.
Request bodies and result payloads stay bytes; only the envelope is decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
from msgspec import UNSET, Raw

from shared.backends.base import BackendConnection
from shared.backends.call import PendingCall
from shared.backends.http import auth_required, new_pool, translate_errors, unexpected_status
from shared.backends.http_client import HttpPool, Response, WireError
from shared.backends.negotiate import NotStateless
from shared.backends.sse_events import iter_events
from shared.protocol import versions as v
from shared.protocol.errors import (
    HEADER_MISMATCH,
    MISSING_CLIENT_CAPABILITY,
    UNSUPPORTED_PROTOCOL_VERSION,
    BackendUnavailable,
    GatewayError,
    error_from_wire,
)
from shared.protocol.jsonrpc import Message, Request, RequestId, decode_message, encode, raw
from shared.protocol.vocabulary import NAMED_METHODS, encode_header_value

__all__ = ["StreamableHttpConnection"]

log = logging.getLogger("aggregator.backend")

_STATELESS_ERRORS = {HEADER_MISMATCH, MISSING_CLIENT_CAPABILITY, UNSUPPORTED_PROTOCOL_VERSION}


class StreamableHttpConnection(BackendConnection):
    transport = "streamable-http"

    _pool: HttpPool | None = None
    _session_id: str | None = None

    async def open_transport(self) -> None:
        self._pool = new_pool(self.spec)
        self._url = self.spec.url
        self._heads: dict[tuple[Any, ...], bytes] = {}

    async def close_transport(self) -> None:
        if self._pool is None:
            return
        if self._session_id is not None and not self.stateless:
            with contextlib.suppress(WireError, OSError, TimeoutError):
                async with asyncio.timeout(2):
                    response = await self._pool.request("DELETE", self._head(None, None))
                    await response.read()
        await self._pool.aclose()

    def _head(self, method: str | None, params: Any, accept: str = "application/json, text/event-stream") -> bytes:
        """Request headers as wire bytes; the few distinct sets are encoded once and reused."""
        key = NAMED_METHODS.get(method or "") if self.stateless else None
        name = params.get(key) if key is not None and params else None
        token = self.credentials() if self.credentials is not None else None
        cache_key = (
            method,
            accept,
            self.protocol_version,
            self._session_id,
            bytes(name) if isinstance(name, Raw) else name,
            token,
        )
        head = self._heads.get(cache_key)
        if head is None:
            headers = {"content-type": "application/json", "accept": accept}
            if self.protocol_version is not None:
                headers["mcp-protocol-version"] = self.protocol_version
            if self._session_id is not None and not self.stateless:
                headers["mcp-session-id"] = self._session_id
            if token is not None:
                headers["authorization"] = f"Bearer {token}"
            if self.stateless and method is not None:
                headers["mcp-method"] = method
                value = msgspec.json.decode(name) if isinstance(name, Raw) else name
                if isinstance(value, str):
                    headers["mcp-name"] = encode_header_value(value)
            assert self._pool is not None
            if len(self._heads) > 4096:
                self._heads.clear()
            head = self._heads[cache_key] = self._pool.encode_headers(headers)
        return head

    async def _exchange(
        self, request_id: RequestId, method: str, params: Any, body: bytes, pending: PendingCall
    ) -> Message:
        assert self._pool is not None
        with translate_errors(self.server, self._url):
            response = await self._pool.request("POST", self._head(method, params), body)
            try:
                if response.status == 401:
                    raise auth_required(self.server, response)
                if method == "initialize":
                    self._session_id = response.headers.get("mcp-session-id")
                if response.status == 200 and response.content_type == "text/event-stream":
                    return await self._read_response_stream(response, method, pending)
                return self._single_response(response.status, method, await response.read(), request_id)
            finally:
                response.close()

    async def _read_response_stream(self, response: Response, method: str, pending: PendingCall) -> Message:
        async for event in iter_events(response.iter_chunks()):
            if event.event != "message" or not event.data:
                continue
            try:
                message = decode_message(event.data)
            except GatewayError:
                log.warning("backend %s sent a malformed SSE message: %.200r", self.server, event.data)
                continue
            assert not isinstance(message, list)
            self._dispatch(message, via=pending)
            if pending.future.done():
                return pending.future.result()
        raise BackendUnavailable(self.server, f"backend {self.server!r} closed the stream before answering {method}")

    def _single_response(self, status: int, method: str, payload: bytes, request_id: RequestId) -> Message:
        message: Message | None = None
        if payload[:1] in (b"{", b" ", b"\n"):
            with contextlib.suppress(GatewayError):
                decoded = decode_message(payload)
                if not isinstance(decoded, list) and decoded.kind == "response":
                    message = decoded
        if method == "server/discover" and status >= 400:
            code = error_from_wire(message.error).code if message is not None and message.error is not UNSET else None
            if code not in _STATELESS_ERRORS:
                raise NotStateless(f"HTTP {status} without a 2026-07-28 error")
        if status == 404 and self._session_id is not None and not self.stateless:
            # Whatever the body says (SDK servers send a JSON-RPC error), 404 means the session is gone.
            self._lose("ended our session (HTTP 404); reconnecting")
            raise BackendUnavailable(self.server, f"backend {self.server!r} ended the gateway's session")
        if message is not None:
            message.id = request_id
            return message
        raise unexpected_status(self.server, status, payload)

    async def _send_message(self, body: bytes) -> None:
        assert self._pool is not None
        with translate_errors(self.server, self._url):
            response = await self._pool.request("POST", self._head(None, None), body)
            payload = await response.read()
        if response.status == 401:
            raise auth_required(self.server, response)
        if response.status >= 300:
            raise unexpected_status(self.server, response.status, payload)

    async def _cancel(self, request_id: RequestId, reason: str) -> None:
        # 2026-07-28: closing the response stream was the cancellation.
        if not self.stateless:
            await super()._cancel(request_id, reason)

    def start_listening(self) -> None:
        self._restart_listener()

    async def _listen_once(self) -> bool | None:
        """2026-07-28: a `subscriptions/listen` POST; older: the session's GET stream."""
        assert self._pool is not None
        if self.stateless:
            wanted = self._listen_filter()
            if not wanted:
                return None
            meta = {v.PROTOCOL_VERSION: self.protocol_version, v.CLIENT_INFO: v.GATEWAY_INFO, v.CLIENT_CAPABILITIES: {}}
            params = raw({"_meta": meta, "notifications": wanted})
            body = encode(Request(id=f"listen-{next(self._ids)}", method="subscriptions/listen", params=params))
            request = self._pool.request("POST", self._head("subscriptions/listen", None), body)
        else:
            request = self._pool.request("GET", self._head(None, None, accept="text/event-stream"))
        with translate_errors(self.server, self._url):
            response = await request
            try:
                if response.status == 404 and not self.stateless:
                    self._lose("ended the gateway's session (HTTP 404); reconnecting")
                    return None
                if response.status >= 400:
                    if response.status == 405 or self.stateless:
                        return None  # no notification stream offered
                    raise unexpected_status(self.server, response.status, await response.read())
                if response.content_type != "text/event-stream":
                    return None
                async for event in iter_events(response.iter_chunks()):
                    if event.event == "message" and event.data:
                        with contextlib.suppress(GatewayError):
                            message = decode_message(event.data)
                            if not isinstance(message, list):
                                self._dispatch(message)
            finally:
                response.close()
        return True

"""`/sse` + `/message`: the deprecated HTTP+SSE transport (2024-11-05) for old clients.

GET /sse opens the stream and names the POST URL in an `endpoint` event; every reply and
notification for that client travels on the stream, and each POST is answered 202. The
session id names the replica holding the stream, so a POST that lands elsewhere is handed
over to it on the replica link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qs

from msgspec import Raw

from aggregator.auth.principal import Principal
from aggregator.calls import session_call
from aggregator.gateway import Gateway
from aggregator.notifications import Listener
from aggregator.replica_link import LinkMessage
from aggregator.transport.event_stream import StreamEnd, pump
from aggregator.transport.http_common import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    header_map,
    read_body,
    send_accepted,
    send_error,
)
from shared.protocol import versions as v
from shared.protocol.errors import GatewayError, InvalidRequest, TooManyStreams
from shared.protocol.jsonrpc import Message, Notification, decode_message, encode, error_response

__all__ = ["LegacySseEndpoints"]

log = logging.getLogger("aggregator.sse")


class _SseChannel:
    """Everything for one legacy client goes on its one stream."""

    def __init__(self, gateway: Gateway, listener: Listener, session_id: str) -> None:
        self.gateway = gateway
        self.listener = listener
        self.session_id = session_id

    async def notify(self, method: str, params: Raw) -> None:
        self.listener.push(encode(Notification(method=method, params=params)))

    async def request(self, method: str, params: Raw) -> Raw:
        return await self.gateway.requests.ask(self.session_id, method, params, self.listener.push)


_UNKNOWN_SESSION = InvalidRequest("Unknown session_id: open GET /sse first and POST to the endpoint it names")


def _subject(principal: Principal | None) -> str | None:
    return principal.subject if principal is not None else None


class LegacySseEndpoints:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.limit = gateway.settings.max_body_bytes
        self._tasks: set[asyncio.Task[None]] = set()
        self._owners: dict[str, Principal | None] = {}
        """Who opened each stream held here; their messages, and only theirs, are served on it."""
        gateway.link.on("sse", self._forwarded)

    async def stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET /sse: one client's stream, for as long as it stays connected."""
        session_id = f"{self.gateway.link.tag}.{secrets.token_urlsafe(24)}"  # names this replica
        streams = self.gateway.streams
        try:
            listener = streams.open(session_id, subject=_subject(scope.get("auth")))
        except TooManyStreams as exc:
            await send_error(send, exc, status=503)
            return
        endpoint = f"{scope.get('root_path', '')}/message?session_id={session_id}"
        self._owners[session_id] = scope.get("auth")

        async def ended(_: StreamEnd) -> None:
            streams.close(listener)
            self._owners.pop(session_id, None)
            with contextlib.suppress(Exception):  # best effort: the record also expires on its own
                await self.gateway.sessions.delete(session_id)

        preamble = f"event: endpoint\ndata: {endpoint}\n\n".encode()
        await pump(receive, send, listener, self.gateway.closing, preamble=preamble, ended=ended)

    async def message(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /message?session_id=...: one JSON-RPC message for the stream it names."""
        headers, _ = header_map(scope)
        session_id = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_id", [""])[0]
        try:
            body = await read_body(receive, self.limit, headers.get("content-length"))
        except BodyTooLarge:
            await send_error(
                send,
                InvalidRequest(f"Request body larger than {self.limit} bytes (aggregator.maxBodyBytes)"),
                status=413,
            )
            return
        except ClientGone:
            return
        try:
            message = decode_message(body)
            assert isinstance(message, Message)
        except GatewayError as exc:
            await send_error(send, exc, status=400)
            return
        subject = _subject(scope.get("auth"))
        if session_id in self._owners:
            if _subject(self._owners[session_id]) != subject:
                await send_error(send, _UNKNOWN_SESSION, status=404)  # someone else's stream: nothing to learn
                return
            self._receive(session_id, message)
        elif self.gateway.link.mine(session_id):
            await send_error(send, _UNKNOWN_SESSION, status=404)
            return
        else:  # the stream is held by another replica: hand the message over to it
            forwarded = LinkMessage(kind="sse", session=session_id, body=body, subject=subject)
            await self.gateway.link.send(session_id, forwarded)
        await send_accepted(send)

    def _forwarded(self, link_message: LinkMessage) -> None:
        session_id = link_message.session or ""
        if session_id in self._owners and _subject(self._owners[session_id]) == link_message.subject:
            message = decode_message(link_message.body)
            if isinstance(message, Message):
                self._receive(session_id, message)

    def _receive(self, session_id: str, message: Message) -> None:
        requests = self.gateway.requests
        if message.kind == "response":
            self._spawn(requests.answered(session_id, message))
        elif message.kind == "notification":
            if message.method == "notifications/cancelled":
                requests.cancel(session_id, message)
        else:
            self._spawn(self._handle(session_id, message))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, session_id: str, message: Message) -> None:
        listener = self.gateway.streams.stream_of(session_id)
        if listener is None:
            return
        request_id = message.id if isinstance(message.id, int | str) else None
        owner = self._owners.get(session_id)
        session = await self.gateway.sessions.get(session_id, subject=_subject(owner))
        if session is None and message.method != "initialize":
            listener.push(error_response(request_id, InvalidRequest("Send initialize first")))
            return
        try:
            ctx, params = session_call(
                message,
                session,
                _SseChannel(self.gateway, listener, session_id),
                protocol_version=None if session else v.LATEST_HANDSHAKE,
                transport_session=session_id,
                principal=owner,
            )
        except GatewayError as exc:
            listener.push(error_response(request_id, exc))
            return
        task = asyncio.current_task()
        assert task is not None
        with self.gateway.requests.track(session_id, ctx.request_id, task):
            body, _ = await self.gateway.router.dispatch(ctx, params)
        listener.push(body)

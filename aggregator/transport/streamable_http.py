"""`/mcp`: Streamable HTTP for both protocol eras on one URL.

A request with `Mcp-Session-Id`, or an `initialize`, belongs to a handshake-era session
(2025-11-25 and older): the session record comes from the store, GET opens the session's
stream, DELETE ends it. Anything else is 2026-07-28: stateless, validated against its `_meta`
and mirrored headers, cancelled by closing the response. How a POST is answered (JSON, or
SSE once something must stream) is `post_response.py`; long-lived streams are `event_stream.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Set  # read-only: header_map shares one empty set

from msgspec import Raw

from aggregator.auth.principal import Principal
from aggregator.calls import CallContext, session_call, stateless_call
from aggregator.gateway import Gateway
from aggregator.notifications import Listener
from aggregator.protocol.stateless import parse_listen_filter
from aggregator.transport.client_watch import ClientWatch
from aggregator.transport.event_stream import pump
from aggregator.transport.http_common import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    accepts,
    header_map,
    read_body,
    send_accepted,
    send_bytes,
    send_error,
)
from aggregator.transport.post_response import SESSION_HEADER, PostChannel
from shared.protocol import versions as v
from shared.protocol.errors import (
    GatewayError,
    HeaderMismatch,
    InternalError,
    InvalidRequest,
    TooManyStreams,
    http_status,
)
from shared.protocol.jsonrpc import Message, RequestId, ResultResponse, decode_message, encode, error_response, raw
from shared.records import SessionRecord
from shared.store.protocols import StoreUnavailable

__all__ = ["StreamableHttpEndpoint"]

log = logging.getLogger("aggregator.http")

_ROUTING_HEADERS = {"mcp-protocol-version", "mcp-method", "mcp-name"}
_WATCH_AFTER = 0.05  # seconds a call runs before an in-process client's disconnect is watched for


class StreamableHttpEndpoint:
    """The ASGI app mounted at /mcp."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.router = gateway.router
        self.sessions = gateway.sessions
        self.requests = gateway.requests
        self.streams = gateway.streams
        self.limit = gateway.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        headers, repeated = header_map(scope)
        principal: Principal | None = scope.get("auth")  # set by BearerAuth when the gateway checks tokens
        try:
            if method == "POST":
                await self._post(receive, send, headers, repeated, principal)
            elif method == "GET":
                await self._get(receive, send, headers, principal)
            elif method == "DELETE":
                await self._delete(send, headers, principal)
            else:
                await send_error(
                    send,
                    InvalidRequest(f"Method {method} not allowed on the MCP endpoint; use POST"),
                    status=405,
                    headers=[(b"allow", b"GET, POST, DELETE")],
                )
        except ClientGone:
            return
        except StoreUnavailable as exc:
            log.warning("%s %s: shared state unavailable: %s", method, scope["path"], exc)
            await send_error(
                send, InternalError(f"Session state is unavailable right now ({exc}); retry shortly"), status=503
            )

    def _channel(self, send: Send, *, sse: bool, session_id: str | None) -> PostChannel:
        return PostChannel(send, sse=sse, session_id=session_id, requests=self.requests, streams=self.streams)

    # -- POST ---------------------------------------------------------------------------------

    async def _post(
        self, receive: Receive, send: Send, headers: dict[str, str], repeated: Set[str], principal: Principal | None
    ) -> None:
        content_type = headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            await send_error(
                send,
                InvalidRequest(f"Content-Type must be application/json, not {content_type or 'missing'!r}"),
                status=415,
            )
            return
        accept = headers.get("accept", "*/*")
        wants_sse = accepts(accept, "text/event-stream")
        if not (wants_sse or accepts(accept, "application/json")):
            await send_error(
                send, InvalidRequest("Accept must list application/json and text/event-stream"), status=406
            )
            return
        try:
            body = await read_body(receive, self.limit, headers.get("content-length"))
        except BodyTooLarge:
            await send_error(
                send,
                InvalidRequest(f"Request body larger than {self.limit} bytes (aggregator.maxBodyBytes)"),
                status=413,
            )
            return
        session_id = headers.get("mcp-session-id")
        try:
            message = decode_message(body, allow_batch=session_id is not None)
        except GatewayError as exc:
            await send_error(send, exc, status=400)
            return
        if session_id is not None:
            await self._session_post(receive, send, headers, message, session_id, wants_sse, principal)
        elif isinstance(message, Message) and message.method == "initialize":
            await self._initialize(send, message, principal)
        else:
            assert isinstance(message, Message)
            await self._stateless_post(receive, send, headers, repeated, message, wants_sse, principal)

    async def _stateless_post(
        self,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        repeated: Set[str],
        message: Message,
        wants_sse: bool,
        principal: Principal | None,
    ) -> None:
        kind = message.kind
        if kind == "notification":
            await send_accepted(send)
            return
        request_id = message.id if isinstance(message.id, int | str) else None
        channel = self._channel(send, sse=wants_sse, session_id=None)
        try:
            if kind == "response":
                raise InvalidRequest(
                    "Invalid Request: a response without Mcp-Session-Id (2026-07-28 clients send no responses)"
                )
            duplicated = repeated & _ROUTING_HEADERS
            if duplicated:
                raise HeaderMismatch(f"Header mismatch: {sorted(duplicated)[0]} appears more than once")
            ctx, params = stateless_call(message, headers, channel, principal)
        except GatewayError as exc:
            await send_error(send, exc, request_id=request_id, status=http_status(exc.code, 400))
            return
        if ctx.method == "subscriptions/listen":
            await self._listen(receive, send, ctx, params, wants_sse)
            return
        await self._run(ctx, params, channel, receive, cancel_on_disconnect=True)

    async def _run(
        self,
        ctx: CallContext,
        params: dict[str, Raw],
        channel: PostChannel,
        receive: Receive,
        *,
        cancel_on_disconnect: bool,
    ) -> None:
        """Dispatch and answer; a 2026-07-28 client that hangs up cancels the work."""
        task = asyncio.current_task()
        watch = ClientWatch(receive, task.cancel, delay=_WATCH_AFTER) if cancel_on_disconnect and task else None
        try:
            body, code = await self.router.dispatch(ctx, params)
        except asyncio.CancelledError:
            channel.abandon()
            if watch is not None and watch.gone:
                return  # the client left; nobody to answer
            raise
        finally:
            if watch is not None:
                watch.stop()
        status = 200 if code is None or not ctx.stateless else http_status(code)
        await channel.finish(body, status)

    async def _initialize(self, send: Send, message: Message, principal: Principal | None) -> None:
        if message.kind != "request":
            await send_error(send, InvalidRequest("initialize must be a request"), status=400)
            return
        try:
            ctx, params = session_call(message, None, None, protocol_version=v.LATEST_HANDSHAKE, principal=principal)
        except GatewayError as exc:
            await send_error(send, exc, request_id=message.id if isinstance(message.id, int | str) else None)
            return
        body, code = await self.router.dispatch(ctx, params)
        session = ctx.session
        extra = [(SESSION_HEADER, session.id.encode())] if session is not None and code is None else None
        await send_bytes(send, 200 if code is None else 400, body, headers=extra)

    async def _session_post(
        self,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        message: Message | list[Message],
        session_id: str,
        wants_sse: bool,
        principal: Principal | None,
    ) -> None:
        session = await self.sessions.get(session_id, subject=principal.subject if principal else None)
        if session is None:
            await send_error(
                send,
                InvalidRequest("Session not found: it ended or expired; send initialize again without Mcp-Session-Id"),
                status=404,
            )
            return
        header_version = headers.get("mcp-protocol-version")
        if header_version is not None and header_version != session.protocol_version:
            await send_error(
                send,
                InvalidRequest(
                    f"MCP-Protocol-Version {header_version!r} does not match this session's "
                    f"negotiated version {session.protocol_version!r}"
                ),
                status=400,
            )
            return
        if isinstance(message, list):
            await self._batch(send, message, session, principal)
            return
        if message.kind != "request":
            await self._session_message(session_id, message)
            await send_accepted(send)
            return
        channel = self._channel(send, sse=wants_sse, session_id=session_id)
        try:
            ctx, params = session_call(message, session, channel, principal=principal)
        except GatewayError as exc:
            await send_error(send, exc, request_id=message.id if isinstance(message.id, int | str) else None)
            return
        task = asyncio.current_task()
        assert task is not None
        with self.requests.track(session_id, ctx.request_id, task):
            try:
                await self._run(ctx, params, channel, receive, cancel_on_disconnect=False)
            except asyncio.CancelledError:
                if task.cancelling() and self.gateway.closing.is_set():
                    raise
                # the client cancelled with notifications/cancelled: no response is sent
                channel.abandon()
                with contextlib.suppress(Exception):
                    await send_accepted(send)

    async def _session_message(self, session_id: str, message: Message) -> None:
        """A client's response or notification within a session."""
        if message.kind == "response":
            await self.requests.answered(session_id, message)
        elif message.method == "notifications/cancelled":
            self.requests.cancel(session_id, message)

    async def _batch(
        self, send: Send, messages: list[Message], session: SessionRecord, principal: Principal | None
    ) -> None:
        """2025-03-26 JSON-RPC batches: answer every request in one JSON array."""
        if session.protocol_version != "2025-03-26":
            await send_error(
                send,
                InvalidRequest(
                    f"JSON-RPC batches exist only in 2025-03-26; this session speaks {session.protocol_version}"
                ),
                status=400,
            )
            return
        limit = self.gateway.settings.max_batch_size
        if len(messages) > limit:
            await send_error(
                send,
                InvalidRequest(
                    f"Batch of {len(messages)} messages is larger than {limit} (aggregator.maxBatchSize); "
                    "send smaller batches"
                ),
                status=400,
            )
            return
        calls = []
        for message in messages:
            if message.kind == "request":
                calls.append(self._batched_call(message, session, principal))
            else:
                await self._session_message(session.id, message)
        if not calls:
            await send_accepted(send)
            return
        replies = await asyncio.gather(*calls)
        await send_bytes(send, 200, b"[" + b",".join(replies) + b"]")

    async def _batched_call(self, message: Message, session: SessionRecord, principal: Principal | None) -> bytes:
        channel = self._channel(None, sse=False, session_id=session.id)
        try:
            ctx, params = session_call(message, session, channel, principal=principal)
        except GatewayError as exc:
            return error_response(message.id if isinstance(message.id, int | str) else None, exc)
        body, _ = await self.router.dispatch(ctx, params)
        return body

    # -- streams ------------------------------------------------------------------------------

    async def _listen(
        self, receive: Receive, send: Send, ctx: CallContext, params: dict[str, Raw], wants_sse: bool
    ) -> None:
        """2026-07-28 subscriptions/listen: acknowledge, then stream the opted-in notifications."""
        request_id: RequestId = ctx.request_id
        if not wants_sse:
            await send_error(
                send,
                InvalidRequest("subscriptions/listen answers with an event stream; Accept text/event-stream"),
                request_id=request_id,
                status=406,
            )
            return
        try:
            wanted = parse_listen_filter(params)
        except GatewayError as exc:
            await send_error(send, exc, request_id=request_id, status=http_status(exc.code, 400))
            return
        listener = Listener(kinds=wanted.kinds, uris=wanted.uris, subscription_id=raw(request_id), subject=ctx.subject)
        try:
            self.gateway.hub.add(listener)  # refused before any backend is asked to watch a resource
            for uri in sorted(wanted.uris):
                await self.gateway.server.watch(uri)
        except GatewayError as exc:
            self.gateway.hub.remove(listener)
            status = 503 if isinstance(exc, TooManyStreams) else http_status(exc.code, 400)
            await send_error(send, exc, request_id=request_id, status=status)
            return
        listener.deliver("notifications/subscriptions/acknowledged", {"notifications": wanted.granted})
        done = {"resultType": "complete", "_meta": {v.SUBSCRIPTION_ID: request_id}}
        farewell = encode(ResultResponse(id=request_id, result=raw(done)))
        remove = self.gateway.hub.remove
        await pump(receive, send, listener, self.gateway.closing, farewell=farewell, ended=lambda _: remove(listener))

    async def _get(self, receive: Receive, send: Send, headers: dict[str, str], principal: Principal | None) -> None:
        """2025-11-25: the session's stream for notifications unrelated to a request."""
        session_id = headers.get("mcp-session-id")
        if session_id is None:
            await send_error(
                send,
                InvalidRequest(
                    "GET opens the stream of a 2025-11-25 session and needs its Mcp-Session-Id header; "
                    "2026-07-28 clients POST subscriptions/listen instead"
                ),
                status=400,
            )
            return
        if not accepts(headers.get("accept", ""), "text/event-stream"):
            await send_error(send, InvalidRequest("GET must Accept text/event-stream"), status=406)
            return
        session = await self.sessions.get(session_id, subject=principal.subject if principal else None)
        if session is None:
            await send_error(send, InvalidRequest("Session not found; send initialize again"), status=404)
            return
        try:
            listener = self.streams.open(session_id, session.subscriptions, session.subject)
        except TooManyStreams as exc:
            await send_error(send, exc, status=503)
            return
        close, extra = self.streams.close, [(SESSION_HEADER, session_id.encode())]
        await pump(receive, send, listener, self.gateway.closing, headers=extra, ended=lambda _: close(listener))

    async def _delete(self, send: Send, headers: dict[str, str], principal: Principal | None) -> None:
        session_id = headers.get("mcp-session-id")
        if session_id is None:
            await send_error(send, InvalidRequest("DELETE needs Mcp-Session-Id"), status=400)
            return
        subject = principal.subject if principal else None
        if await self.sessions.get(session_id, subject=subject) is None or not await self.streams.end(session_id):
            await send_error(send, InvalidRequest("Session not found"), status=404)
            return
        await send_bytes(send, 200, b"")

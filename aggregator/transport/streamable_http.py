"""`/mcp`: Streamable HTTP for both protocol eras on one URL.

A request with `Mcp-Session-Id`, or an `initialize`, is 2025-11-25 (or older): the session
record comes from the store, GET opens the session's stream, DELETE ends it. Anything else
is 2026-07-28: stateless, validated against its `_meta` and mirrored headers, cancelled by
closing the response. Each POST is answered with JSON, or with SSE as soon as something must
reach the client before the response (progress, a backend's question); the choice is made
lazily, so a plain call costs one JSON write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
from msgspec import UNSET, Raw

from aggregator.calls import CallContext, session_call
from aggregator.gateway import Gateway
from aggregator.notifications import Listener
from aggregator.protocol import stateless
from aggregator.transport.http_common import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    header_map,
    read_body,
    send_bytes,
    send_error,
    sse_event,
    start_sse,
)
from shared.protocol import versions as v
from shared.protocol.errors import (
    GatewayError,
    HeaderMismatch,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MissingClientCapability,
    http_status,
)
from shared.protocol.jsonrpc import (
    Message,
    Notification,
    RequestId,
    ResultResponse,
    decode_message,
    decode_params,
    encode,
    error_response,
    raw,
)
from shared.records import SessionRecord
from shared.store.protocols import StoreUnavailable

__all__ = ["PostChannel", "StreamableHttpEndpoint"]

log = logging.getLogger("aggregator.http")

_ROUTING_HEADERS = {"mcp-protocol-version", "mcp-method", "mcp-name"}
_KEEPALIVE = 15.0
_WATCH_AFTER = 0.05  # seconds a call runs before the gateway starts watching for the client leaving
_SESSION_HEADER = b"mcp-session-id"


class PostChannel:
    """The response to one POST: JSON by default, upgraded to SSE when messages must stream."""

    def __init__(self, gateway: Gateway, send: Send, *, sse: bool, session_id: str | None) -> None:
        self.gateway = gateway
        self.send = send
        self.sse = sse
        self.session_id = session_id
        self._queue: asyncio.Queue[bytes | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._done = False

    async def notify(self, method: str, params: Raw) -> None:
        data = encode(Notification(method=method, params=params))
        if not self.sse and self.session_id is not None:
            await self.gateway.notify_session(self.session_id, data)  # JSON-only POST: the GET stream
            return
        self._enqueue(data)

    async def request(self, method: str, params: Raw) -> Raw:
        if not self.sse or self.session_id is None:
            raise MissingClientCapability(
                f"the client accepts no event stream on this request, so {method} cannot reach it"
            )
        return await self.gateway.ask_client(self.session_id, method, params, self._enqueue)

    def _enqueue(self, data: bytes) -> None:
        if self._done or not self.sse:
            return
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._writer = asyncio.ensure_future(self._write())
        self._queue.put_nowait(data)

    async def _write(self) -> None:
        assert self._queue is not None
        extra = [(_SESSION_HEADER, self.session_id.encode())] if self.session_id else None
        await start_sse(self.send, extra)
        while (data := await self._queue.get()) is not None:
            await self.send({"type": "http.response.body", "body": sse_event(data), "more_body": True})
        await self.send({"type": "http.response.body", "body": b""})

    async def finish(self, body: bytes, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self._done = True
        if self._writer is None:
            await send_bytes(self.send, status, body, headers=headers)
            return
        assert self._queue is not None
        self._queue.put_nowait(body)
        self._queue.put_nowait(None)
        await self._writer

    def abandon(self) -> None:
        self._done = True
        if self._writer is not None:
            self._writer.cancel()


class StreamableHttpEndpoint:
    """The ASGI app mounted at /mcp."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.limit = gateway.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        headers, repeated = header_map(scope)
        try:
            if method == "POST":
                await self._post(receive, send, headers, repeated)
            elif method == "GET":
                await self._get(receive, send, headers)
            elif method == "DELETE":
                await self._delete(send, headers)
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

    # -- POST ---------------------------------------------------------------------------------

    async def _post(self, receive: Receive, send: Send, headers: dict[str, str], repeated: set[str]) -> None:
        content_type = headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            await send_error(
                send,
                InvalidRequest(f"Content-Type must be application/json, not {content_type or 'missing'!r}"),
                status=415,
            )
            return
        accept = headers.get("accept", "*/*")
        wants_json = "application/json" in accept or "*/*" in accept
        wants_sse = "text/event-stream" in accept or "*/*" in accept
        if not (wants_json or wants_sse):
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
        try:
            session_id = headers.get("mcp-session-id")
            message = decode_message(body, allow_batch=session_id is not None)
        except GatewayError as exc:
            await send_error(send, exc, status=400)
            return
        if session_id is not None:
            await self._session(receive, send, headers, message, session_id, wants_sse)
            return
        assert isinstance(message, Message)
        if message.method == "initialize":
            await self._initialize(send, message)
        else:
            await self._stateless(receive, send, headers, repeated, message, wants_sse)

    async def _stateless(
        self,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        repeated: set[str],
        message: Message,
        wants_sse: bool,
    ) -> None:
        kind = message.kind
        if kind == "notification":
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        request_id = message.id if kind == "request" else None
        try:
            if kind == "response":
                raise InvalidRequest(
                    "Invalid Request: a response without Mcp-Session-Id (2026-07-28 clients send no responses)"
                )
            duplicated = repeated & _ROUTING_HEADERS
            if duplicated:
                raise HeaderMismatch(f"Header mismatch: {sorted(duplicated)[0]} appears more than once")
            params = decode_params(message.params)
            assert isinstance(message.method, str)
            envelope = stateless.parse(message.method, params, headers)
        except GatewayError as exc:
            await send_error(send, exc, request_id=request_id, status=http_status(exc.code, 400))  # type: ignore[arg-type]
            return
        assert request_id is not None and request_id is not UNSET
        if message.method == "subscriptions/listen":
            await self._listen(receive, send, request_id, params, wants_sse)
            return
        channel = PostChannel(self.gateway, send, sse=wants_sse, session_id=None)
        ctx = CallContext(
            request_id=request_id,
            method=message.method,
            protocol_version=envelope.version,
            meta=envelope.meta,
            client_capabilities_raw=envelope.client_capabilities,
            channel=channel,
            param_headers=headers,
        )
        await self._run(ctx, params, channel, receive, cancel_on_disconnect=True)

    async def _run(
        self,
        ctx: CallContext,
        params: dict[str, Raw],
        channel: PostChannel,
        receive: Receive,
        *,
        cancel_on_disconnect: bool,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Dispatch and answer; a 2026-07-28 client that hangs up cancels the work.

        Watching for the hang-up costs a task and a loop round per request, so it starts only
        once a call has run for `_WATCH_AFTER`: quick calls (nearly all) never pay for it.
        """
        watch = _DisconnectWatch(receive, asyncio.current_task()) if cancel_on_disconnect else None
        try:
            body, code = await self.gateway.router.dispatch(ctx, params)
        except asyncio.CancelledError:
            channel.abandon()
            if watch is not None and watch.client_left:
                return  # the client left; nobody to answer
            raise
        finally:
            if watch is not None:
                watch.stop()
        status = 200 if code is None or not ctx.stateless else http_status(code)
        await channel.finish(body, status, headers)

    async def _initialize(self, send: Send, message: Message) -> None:
        if message.kind != "request":
            await send_error(send, InvalidRequest("initialize must be a request"), status=400)
            return
        ctx = CallContext(request_id=message.id, method="initialize", protocol_version=v.LATEST_HANDSHAKE)  # type: ignore[arg-type]
        try:
            params = decode_params(message.params)
        except GatewayError as exc:
            await send_error(send, exc, request_id=message.id, status=400)  # type: ignore[arg-type]
            return
        body, code = await self.gateway.router.dispatch(ctx, params)
        session = ctx.session
        extra = [(_SESSION_HEADER, session.id.encode())] if session is not None and code is None else None
        await send_bytes(send, 200 if code is None else 400, body, headers=extra)

    async def _session(
        self,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        message: Message | list[Message],
        session_id: str,
        wants_sse: bool,
    ) -> None:
        session = await self.gateway.sessions.get(session_id)
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
            await self._batch(send, message, session, session_id)
            return
        kind = message.kind
        if kind != "request":
            if kind == "response":
                await self.gateway.client_answered(session_id, message)
            elif message.method == "notifications/cancelled":
                self._cancel(session_id, message)
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        channel = PostChannel(self.gateway, send, sse=wants_sse, session_id=session_id)
        try:
            ctx, params = session_call(message, session, channel)
        except GatewayError as exc:
            await send_error(send, exc, request_id=message.id)  # type: ignore[arg-type]
            return
        key = (session_id, ctx.request_id)
        task = asyncio.current_task()
        assert task is not None
        self.gateway.inflight[key] = task
        try:
            await self._run(ctx, params, channel, receive, cancel_on_disconnect=False)
        except asyncio.CancelledError:
            if task.cancelling() and self.gateway.closing.is_set():
                raise
            # the client cancelled with notifications/cancelled: no response is sent
            channel.abandon()
            with contextlib.suppress(Exception):
                await send_bytes(send, 202, b"")
        finally:
            self.gateway.inflight.pop(key, None)

    async def _batch(self, send: Send, messages: list[Message], session: SessionRecord, session_id: str) -> None:
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
        calls = []
        for message in messages:
            if message.kind == "response":
                await self.gateway.client_answered(session_id, message)
            elif message.kind == "notification":
                if message.method == "notifications/cancelled":
                    self._cancel(session_id, message)
            else:
                calls.append(self._batched_call(message, session, session_id))
        if not calls:
            await send_bytes(send, 202, b"")
            return
        replies = await asyncio.gather(*calls)
        await send_bytes(send, 200, b"[" + b",".join(replies) + b"]")

    async def _batched_call(self, message: Message, session: SessionRecord, session_id: str) -> bytes:
        channel = PostChannel(self.gateway, None, sse=False, session_id=session_id)
        try:
            ctx, params = session_call(message, session, channel)
        except GatewayError as exc:
            return error_response(message.id, exc)  # type: ignore[arg-type]
        body, _ = await self.gateway.router.dispatch(ctx, params)
        return body

    def _cancel(self, session_id: str, message: Message) -> None:
        try:
            params = msgspec.json.decode(message.params) if message.params is not UNSET else {}
        except msgspec.DecodeError:
            return
        request_id = params.get("requestId") if isinstance(params, dict) else None
        task = self.gateway.inflight.get((session_id, request_id))  # type: ignore[arg-type]
        if task is not None:
            log.info("client cancelled request %s: %s", request_id, params.get("reason", "no reason given"))
            task.cancel()

    # -- streams ------------------------------------------------------------------------------

    async def _listen(
        self, receive: Receive, send: Send, request_id: RequestId, params: dict[str, Raw], wants_sse: bool
    ) -> None:
        """2026-07-28 subscriptions/listen: acknowledge, then stream the opted-in notifications."""
        if not wants_sse:
            await send_error(
                send,
                InvalidRequest("subscriptions/listen answers with an event stream; Accept text/event-stream"),
                request_id=request_id,
                status=406,
            )
            return
        try:
            wanted = _listen_filter(params)
            uris = set(wanted.get("resourceSubscriptions") or [])
            for uri in sorted(uris):
                await self.gateway.server.watch(uri)
        except GatewayError as exc:
            await send_error(send, exc, request_id=request_id, status=http_status(exc.code, 400))
            return
        kinds = {kind for key, kind in _FILTER_KINDS.items() if wanted.get(key)}
        listener = Listener(kinds=kinds, uris=uris, subscription_id=raw(request_id))
        ack = {k: wanted[k] for k in (*_FILTER_KINDS, "resourceSubscriptions") if k in wanted}
        listener.deliver("notifications/subscriptions/acknowledged", {"notifications": ack})
        closing = await self._stream(receive, send, listener)
        if closing:
            done = {"resultType": "complete", "_meta": {v.SUBSCRIPTION_ID: request_id}}
            final = encode(ResultResponse(id=request_id, result=raw(done)))
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": sse_event(final), "more_body": False})

    async def _get(self, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        """2025-11-25: the session's stream for notifications unrelated to a request."""
        session_id = headers.get("mcp-session-id")
        if session_id is None:
            await send_error(
                send,
                InvalidRequest("GET needs Mcp-Session-Id (2025-11-25); 2026-07-28 clients use subscriptions/listen"),
                status=405,
                headers=[(b"allow", b"POST, DELETE")],
            )
            return
        if "text/event-stream" not in headers.get("accept", "") and "*/*" not in headers.get("accept", ""):
            await send_error(send, InvalidRequest("GET must Accept text/event-stream"), status=406)
            return
        session = await self.gateway.sessions.get(session_id)
        if session is None:
            await send_error(send, InvalidRequest("Session not found; send initialize again"), status=404)
            return
        previous = self.gateway.hub.session_listener(session_id)
        if previous is not None:
            self.gateway.hub.remove(previous)  # one stream per session: a message goes to exactly one
        uris = self.gateway.hub.session_uris.setdefault(session_id, set())
        uris.update(session.subscriptions)
        listener = Listener(kinds={"tools", "prompts", "resources"}, uris=uris, session_id=session_id)
        await self._stream(receive, send, listener, extra=[(_SESSION_HEADER, session_id.encode())])

    async def _stream(
        self, receive: Receive, send: Send, listener: Listener, extra: list[tuple[bytes, bytes]] | None = None
    ) -> bool:
        """Pump a listener's queue as SSE until the client leaves (False) or the gateway closes (True)."""
        hub = self.gateway.hub
        hub.add(listener)
        gone = asyncio.ensure_future(_wait_disconnect(receive, None))
        closing = asyncio.ensure_future(self.gateway.closing.wait())
        try:
            await start_sse(send, extra)
            while not listener.closed:
                getter = asyncio.ensure_future(listener.queue.get())
                done, _ = await asyncio.wait({getter, gone, closing}, timeout=_KEEPALIVE, return_when="FIRST_COMPLETED")
                if getter in done:
                    await send({"type": "http.response.body", "body": sse_event(getter.result()), "more_body": True})
                    continue
                getter.cancel()
                if gone in done:
                    return False
                if closing in done:
                    return True
                await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
            return False
        finally:
            hub.remove(listener)
            gone.cancel()
            closing.cancel()
            with contextlib.suppress(Exception):
                if not closing.done() or not self.gateway.closing.is_set():
                    await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _delete(self, send: Send, headers: dict[str, str]) -> None:
        session_id = headers.get("mcp-session-id")
        if session_id is None:
            await send_error(send, InvalidRequest("DELETE needs Mcp-Session-Id"), status=400)
            return
        if not await self.gateway.end_session(session_id):
            await send_error(send, InvalidRequest("Session not found"), status=404)
            return
        await send_bytes(send, 200, b"")


_FILTER_KINDS = {
    "toolsListChanged": "tools",
    "promptsListChanged": "prompts",
    "resourcesListChanged": "resources",
}


def _listen_filter(params: dict[str, Raw]) -> dict[str, Any]:
    if "notifications" not in params:
        return {}
    wanted = msgspec.json.decode(params["notifications"])
    if not isinstance(wanted, dict):
        raise InvalidParams("Invalid params: notifications must be an object")
    subs = wanted.get("resourceSubscriptions")
    if subs is not None and not (isinstance(subs, list) and all(isinstance(u, str) for u in subs)):
        raise InvalidParams("Invalid params: resourceSubscriptions must be a list of URIs")
    return {k: val for k, val in wanted.items() if k in (*_FILTER_KINDS, "resourceSubscriptions") and val}


class _DisconnectWatch:
    """Cancels a request's task if its client disconnects, watching only after a grace period."""

    def __init__(self, receive: Receive, task: asyncio.Task[Any] | None) -> None:
        self.receive = receive
        self.task = task
        self.client_left = False
        self._watcher: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(_WATCH_AFTER, self._start)

    def _start(self) -> None:
        self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        await _wait_disconnect(self.receive, None)
        self.client_left = True
        if self.task is not None:
            self.task.cancel()

    def stop(self) -> None:
        self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


async def _wait_disconnect(receive: Receive, task: asyncio.Task[Any] | None) -> None:
    """Return when the client disconnects; cancel `task` if given."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if task is not None:
                task.cancel()
            return

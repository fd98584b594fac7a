"""`/sse` + `/message`: the deprecated HTTP+SSE transport (2024-11-05) for old clients.

GET /sse opens the stream and names the POST URL in an `endpoint` event; every reply and
notification for that client travels on the stream, and each POST is answered 202.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

import msgspec
from msgspec import UNSET, Raw
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from aggregator.calls import session_call
from aggregator.gateway import Gateway
from aggregator.notifications import Listener
from aggregator.replica_link import LinkMessage
from aggregator.transport.http_common import BodyTooLarge, ClientGone, read_body
from shared.protocol import versions as v
from shared.protocol.errors import GatewayError, InvalidRequest
from shared.protocol.jsonrpc import (
    Message,
    Notification,
    decode_message,
    encode,
    error_response,
)

__all__ = ["LegacySseEndpoints"]

log = logging.getLogger("aggregator.sse")

_KEEPALIVE = 15.0


class _SseChannel:
    """Everything for one legacy client goes on its one stream."""

    def __init__(self, gateway: Gateway, listener: Listener, session_id: str) -> None:
        self.gateway = gateway
        self.listener = listener
        self.session_id = session_id

    async def notify(self, method: str, params: Raw) -> None:
        self.listener.push(encode(Notification(method=method, params=params)))

    async def request(self, method: str, params: Raw) -> Raw:
        return await self.gateway.ask_client(self.session_id, method, params, self.listener.push)


class LegacySseEndpoints:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.limit = gateway.settings.max_body_bytes
        self._streams: dict[str, Listener] = {}
        gateway.link.on("sse", self._forwarded)

    async def stream(self, request: Request) -> Response:
        session_id = f"{self.gateway.link.tag}.{secrets.token_urlsafe(24)}"  # names this replica
        hub = self.gateway.hub
        listener = Listener(
            kinds={"tools", "prompts", "resources"},
            uris=hub.session_uris.setdefault(session_id, set()),
            session_id=session_id,
        )
        self._streams[session_id] = listener
        hub.add(listener)
        endpoint = f"{request.scope.get('root_path', '')}/message?session_id={session_id}"

        async def events() -> AsyncIterator[bytes]:
            try:
                yield f"event: endpoint\ndata: {endpoint}\n\n".encode()
                while not listener.closed and not self.gateway.closing.is_set():
                    try:
                        data = await asyncio.wait_for(listener.queue.get(), _KEEPALIVE)
                    except TimeoutError:
                        yield b": keepalive\n\n"
                        continue
                    yield b"event: message\ndata: " + data + b"\n\n"
            finally:
                hub.remove(listener)
                self._streams.pop(session_id, None)
                hub.session_uris.pop(session_id, None)
                with contextlib.suppress(Exception):
                    await self.gateway.sessions.delete(session_id)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def message(self, request: Request) -> Response:
        session_id = request.query_params.get("session_id", "")
        try:
            body = await read_body(request.receive, self.limit, request.headers.get("content-length"))
        except BodyTooLarge:
            return _error(413, f"Request body larger than {self.limit} bytes (aggregator.maxBodyBytes)")
        except ClientGone:
            return Response(status_code=400)
        try:
            message = decode_message(body)
            assert isinstance(message, Message)
        except GatewayError as exc:
            return Response(error_response(None, exc), status_code=400, media_type="application/json")
        if session_id not in self._streams:
            if self.gateway.link.mine(session_id):
                return _error(404, "Unknown session_id: open GET /sse first and POST to the endpoint it names")
            # The stream is held by another replica: hand the message over to it.
            await self.gateway.link.send(session_id, LinkMessage(kind="sse", session=session_id, body=body))
            return Response(status_code=202)
        self._receive(session_id, message)
        return Response(status_code=202)

    def _forwarded(self, link_message: LinkMessage) -> None:
        session_id = link_message.session or ""
        if session_id in self._streams:
            message = decode_message(link_message.body)
            assert isinstance(message, Message)
            self._receive(session_id, message)

    def _receive(self, session_id: str, message: Message) -> None:
        listener = self._streams[session_id]
        kind = message.kind
        if kind == "response":
            self.gateway._resolve(session_id, message)
        elif kind == "notification":
            if message.method == "notifications/cancelled":
                self._cancel(session_id, message)
        else:
            task = asyncio.ensure_future(self._handle(session_id, listener, message))
            key = (session_id, message.id)
            self.gateway.inflight[key] = task  # type: ignore[index]
            task.add_done_callback(lambda _t: self.gateway.inflight.pop(key, None))  # type: ignore[arg-type]

    async def _handle(self, session_id: str, listener: Listener, message: Message) -> None:
        session = await self.gateway.sessions.get(session_id)
        if session is None and message.method != "initialize":
            listener.push(error_response(message.id, InvalidRequest("Send initialize first")))  # type: ignore[arg-type]
            return
        try:
            ctx, params = session_call(
                message,
                session,
                _SseChannel(self.gateway, listener, session_id),
                protocol_version=None if session else v.LATEST_HANDSHAKE,
                transport_session=session_id,
            )
        except GatewayError as exc:
            listener.push(error_response(message.id, exc))  # type: ignore[arg-type]
            return
        body, _ = await self.gateway.router.dispatch(ctx, params)
        listener.push(body)

    def _cancel(self, session_id: str, message: Message) -> None:
        with contextlib.suppress(msgspec.DecodeError, AttributeError):
            params = msgspec.json.decode(message.params) if message.params is not UNSET else {}
            task = self.gateway.inflight.get((session_id, params.get("requestId")))
            if task is not None:
                task.cancel()


def _error(status: int, message: str) -> Response:
    return JSONResponse(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}, status_code=status
    )

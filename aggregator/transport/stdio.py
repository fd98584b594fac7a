"""The gateway as a stdio MCP server: newline-delimited JSON-RPC on stdin/stdout, both eras.

A client that sends `initialize` gets a 2025-11-25 session for the life of the process;
one that sends `_meta` protocol fields is served statelessly (2026-07-28). Requests run
concurrently; `notifications/cancelled` cancels one; logs go to stderr only.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
from msgspec import Raw

from aggregator.calls import CallContext, session_call, stateless_call
from aggregator.gateway import Gateway
from aggregator.notifications import Listener
from aggregator.protocol.stateless import parse_listen_filter
from shared.config import Config
from shared.protocol import versions as v
from shared.protocol.errors import GatewayError, InvalidRequest
from shared.protocol.jsonrpc import (
    Message,
    Notification,
    Params,
    RequestId,
    ResultResponse,
    decode_message,
    decode_params,
    encode,
    error_response,
    raw,
)
from shared.store.protocols import Stores

__all__ = ["StdioServer", "serve_stdio"]

log = logging.getLogger("aggregator.stdio")

_SESSION = "stdio"
_LINE_LIMIT = 64 * 1024 * 1024


class StdioServer:
    def __init__(self, gateway: Gateway, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.gateway = gateway
        self.requests = gateway.requests
        self.reader = reader
        self.writer = writer
        self.session_id: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._listens: dict[RequestId, Listener] = {}

    async def run(self) -> None:
        """Serve until stdin closes."""
        while line := await self.reader.readline():
            if line.strip():
                self._receive(line)
        for task in list(self._tasks):
            task.cancel()

    def write(self, data: bytes) -> None:
        self.writer.write(data + b"\n")

    # -- channel --------------------------------------------------------------------------------

    async def notify(self, method: str, params: Raw) -> None:
        self.write(encode(Notification(method=method, params=params)))

    async def request(self, method: str, params: Raw) -> Raw:
        return await self.requests.ask(_SESSION, method, params, self.write)

    # -- messages -------------------------------------------------------------------------------

    def _receive(self, line: bytes) -> None:
        try:
            message = decode_message(line)
            assert isinstance(message, Message)
        except GatewayError as exc:
            self.write(error_response(None, exc))
            return
        if message.kind == "response":
            self._spawn(self.requests.answered(_SESSION, message))
        elif message.kind == "notification":
            if message.method == "notifications/cancelled" and not self._end_listen(message):
                self.requests.cancel(_SESSION, message)
        else:
            self._spawn(self._handle(message))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: Message) -> None:
        assert isinstance(message.method, str) and isinstance(message.id, int | str)
        try:
            ctx, params = await self._context(message)
            if ctx.method == "subscriptions/listen":
                await self._listen(ctx.request_id, params)
                return
        except GatewayError as exc:
            self.write(error_response(message.id, exc))
            return
        task = asyncio.current_task()
        assert task is not None
        with self.requests.track(_SESSION, ctx.request_id, task):
            body, _ = await self.gateway.router.dispatch(ctx, params)
        if ctx.method == "initialize" and ctx.session is not None:
            self.session_id = ctx.session.id
            self._follow(self.gateway.streams.open(ctx.session.id), close=self.gateway.streams.close)
        self.write(body)

    async def _context(self, message: Message) -> tuple[CallContext, Params]:
        """A stateless request carries `_meta` protocol fields; anything else belongs to the session."""
        if message.method == "initialize":
            return session_call(message, None, self, protocol_version=v.LATEST_HANDSHAKE, transport_session=_SESSION)
        params = decode_params(message.params)
        meta = decode_params(params["_meta"]) if "_meta" in params else {}
        if v.PROTOCOL_VERSION in meta or self.session_id is None:
            return stateless_call(message, None, self)
        session = await self.gateway.sessions.get(self.session_id, subject=None)
        if session is None:
            raise InvalidRequest("the session ended; send initialize again")
        return session_call(message, session, self)

    async def _listen(self, request_id: RequestId, params: Params) -> None:
        wanted = parse_listen_filter(params)
        for uri in sorted(wanted.uris):
            await self.gateway.server.watch(uri)
        listener = Listener(kinds=wanted.kinds, uris=wanted.uris, subscription_id=raw(request_id))
        listener.deliver("notifications/subscriptions/acknowledged", {"notifications": wanted.granted})
        self.gateway.hub.add(listener)
        self._listens[request_id] = listener
        self._follow(listener, close=self.gateway.hub.remove)

    def _end_listen(self, message: Message) -> bool:
        """A `notifications/cancelled` for a listen stream ends it with its final result."""
        try:
            params = decode_params(message.params)
            request_id = msgspec.json.decode(params["requestId"]) if "requestId" in params else None
        except (GatewayError, msgspec.DecodeError):
            return False
        listener = self._listens.pop(request_id, None) if isinstance(request_id, int | str) else None
        if listener is None or request_id is None:
            return False
        self.gateway.hub.remove(listener)
        done = {"resultType": "complete", "_meta": {v.SUBSCRIPTION_ID: request_id}}
        self.write(encode(ResultResponse(id=request_id, result=raw(done))))
        return True

    def _follow(self, listener: Listener, *, close: Callable[[Listener], None]) -> None:
        """Copy a listener's messages to stdout until it closes."""

        async def pump() -> None:
            try:
                while (message := await listener.next()) is not None:
                    if message:  # not the hub's keepalive tick
                        self.write(message)
            finally:
                close(listener)

        self._spawn(pump())


async def serve_stdio(config: Config, stores: Stores, *, control_plane: bool) -> int:
    """Serve one client on stdin/stdout until stdin closes; `stores` stay the caller's."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout.buffer)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    gateway = Gateway(config, stores, control_plane=control_plane)
    await gateway.start()
    log.info("serving MCP on stdio (2026-07-28 and 2025-11-25)")
    try:
        await StdioServer(gateway, reader, writer).run()
    finally:
        await gateway.stop()
    return 0

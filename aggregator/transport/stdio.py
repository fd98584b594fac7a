"""The gateway as a stdio MCP server: newline-delimited JSON-RPC on stdin/stdout, both eras.

A client that sends `initialize` gets a 2025-11-25 session for the life of the process;
one that sends `_meta` protocol fields is served statelessly (2026-07-28). Requests run
concurrently; `notifications/cancelled` cancels one; logs go to stderr only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

import msgspec
from msgspec import UNSET, Raw

from aggregator.calls import CallContext, session_call
from aggregator.gateway import Gateway
from aggregator.notifications import Listener
from aggregator.protocol import stateless
from shared.config import Config
from shared.protocol import versions as v
from shared.protocol.errors import GatewayError, InvalidRequest
from shared.protocol.jsonrpc import (
    Message,
    Notification,
    ResultResponse,
    decode_message,
    decode_params,
    encode,
    error_response,
    raw,
)
from shared.store.factory import open_stores

__all__ = ["StdioServer", "serve_stdio"]

log = logging.getLogger("aggregator.stdio")

_SESSION = "stdio"
_LINE_LIMIT = 64 * 1024 * 1024


class StdioServer:
    def __init__(self, gateway: Gateway, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.gateway = gateway
        self.reader = reader
        self.writer = writer
        self.session_id: str | None = None
        self._tasks: dict[Any, asyncio.Task[None]] = {}
        self._listeners: dict[Any, Listener] = {}
        self._pumps: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Serve until stdin closes."""
        while line := await self.reader.readline():
            if line.strip():
                self._receive(line)
        for task in list(self._tasks.values()):
            task.cancel()
        for pump in list(self._pumps):
            pump.cancel()

    def write(self, data: bytes) -> None:
        self.writer.write(data + b"\n")

    # -- channel --------------------------------------------------------------------------------

    async def notify(self, method: str, params: Raw) -> None:
        self.write(encode(Notification(method=method, params=params)))

    async def request(self, method: str, params: Raw) -> Raw:
        return await self.gateway.ask_client(_SESSION, method, params, self.write)

    # -- messages -------------------------------------------------------------------------------

    def _receive(self, line: bytes) -> None:
        try:
            message = decode_message(line)
            assert isinstance(message, Message)
        except GatewayError as exc:
            self.write(error_response(None, exc))
            return
        kind = message.kind
        if kind == "response":
            future = self.gateway.client_requests.get((_SESSION, message.id))  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(message)
        elif kind == "notification":
            if message.method == "notifications/cancelled":
                self._cancel(message)
        else:
            task = asyncio.ensure_future(self._handle(message))
            self._tasks[message.id] = task
            task.add_done_callback(lambda _t, key=message.id: self._tasks.pop(key, None))

    async def _handle(self, message: Message) -> None:
        assert isinstance(message.method, str) and message.id is not None and message.id is not UNSET
        try:
            params = decode_params(message.params)
            meta = decode_params(params["_meta"]) if "_meta" in params else {}
            if message.method == "initialize":
                ctx = CallContext(
                    request_id=message.id,
                    method="initialize",
                    protocol_version=v.LATEST_HANDSHAKE,
                    transport_session=_SESSION,
                )
            elif v.PROTOCOL_VERSION in meta or self.session_id is None:
                envelope = stateless.parse(message.method, params, None)
                ctx = CallContext(
                    request_id=message.id,
                    method=message.method,
                    protocol_version=envelope.version,
                    meta=envelope.meta,
                    client_capabilities_raw=envelope.client_capabilities,
                    channel=self,
                )
                if message.method == "subscriptions/listen":
                    await self._listen(message.id, params)
                    return
            else:
                session = await self.gateway.sessions.get(self.session_id)
                if session is None:
                    raise InvalidRequest("the session ended; send initialize again")
                ctx, params = session_call(message, session, self)
        except GatewayError as exc:
            self.write(error_response(message.id, exc))
            return
        body, _ = await self.gateway.router.dispatch(ctx, params)
        if message.method == "initialize" and ctx.session is not None:
            self.session_id = ctx.session.id
            self._follow(Listener(kinds={"tools", "prompts", "resources"}, session_id=ctx.session.id), key=None)
        self.write(body)

    async def _listen(self, request_id: Any, params: dict[str, Raw]) -> None:
        wanted = msgspec.json.decode(params["notifications"]) if "notifications" in params else {}
        if not isinstance(wanted, dict):
            wanted = {}
        kinds = {
            k
            for f, k in (
                ("toolsListChanged", "tools"),
                ("promptsListChanged", "prompts"),
                ("resourcesListChanged", "resources"),
            )
            if wanted.get(f)
        }
        uris = {u for u in wanted.get("resourceSubscriptions") or [] if isinstance(u, str)}
        for uri in sorted(uris):
            await self.gateway.server.watch(uri)
        listener = Listener(kinds=kinds, uris=uris, subscription_id=raw(request_id))
        listener.deliver("notifications/subscriptions/acknowledged", {"notifications": wanted})
        self._listeners[request_id] = listener
        self._follow(listener, key=request_id)

    def _follow(self, listener: Listener, *, key: Any) -> None:
        self.gateway.hub.add(listener)

        async def pump() -> None:
            try:
                while not listener.closed:
                    self.write(await listener.queue.get())
            finally:
                self.gateway.hub.remove(listener)

        task = asyncio.ensure_future(pump())
        self._pumps.add(task)
        task.add_done_callback(self._pumps.discard)

    def _cancel(self, message: Message) -> None:
        with contextlib.suppress(msgspec.DecodeError, AttributeError):
            params = msgspec.json.decode(message.params) if message.params is not UNSET else {}
            request_id = params.get("requestId")
            listener = self._listeners.pop(request_id, None)
            if listener is not None:
                self.gateway.hub.remove(listener)
                done = {"resultType": "complete", "_meta": {v.SUBSCRIPTION_ID: request_id}}
                self.write(encode(ResultResponse(id=request_id, result=raw(done))))
                return
            task = self._tasks.get(request_id)
            if task is not None:
                task.cancel()


async def serve_stdio(config: Config, *, redis_url: str | None, control_plane: bool) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout.buffer)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    stores = await open_stores(redis_url)
    gateway = Gateway(config, stores, control_plane=control_plane)
    await gateway.start()
    log.info("serving MCP on stdio (2026-07-28 and 2025-11-25)")
    try:
        await StdioServer(gateway, reader, writer).run()
    finally:
        await gateway.stop()
        await stores.aclose()
    return 0

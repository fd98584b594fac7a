"""A backend is never flooded: calls in flight and waiting are capped per backend, and the HTTP
pool never opens more than `maxConnections` sockets, even while a notification stream holds one.

The backend is a small 2026-07-28 server over HTTP/1.1 on loopback that counts the connections
it accepts and answers `tools/call` only when the test lets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from shared.backends.base import BackendConnection
from shared.backends.discovery import health_check
from shared.backends.factory import connect
from shared.config import ServerSpec
from shared.protocol.errors import BackendBusy, BackendError, BackendTimeout
from shared.protocol.jsonrpc import Message, raw

MODERN = "2026-07-28"


class SlowBackend:
    """Answers server/discover at once, holds a `subscriptions/listen` stream open, and answers
    each `tools/call` once `release` is set."""

    def __init__(self, *, list_changed: bool) -> None:
        self.list_changed = list_changed
        self.accepted = 0
        self.calls = 0
        self.listening = asyncio.Event()
        self.release = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/mcp"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        self.release.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = json.loads(await reader.readexactly(length))
                method = request.get("method")
                if method == "subscriptions/listen":
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                    )
                    self.listening.set()
                    await asyncio.Event().wait()  # the stream stays open, silent
                if method == "server/discover":
                    capabilities = {"tools": {"listChanged": self.list_changed}}
                    result = {"supportedVersions": [MODERN], "capabilities": capabilities}
                elif method == "tools/call":
                    self.calls += 1
                    await self.release.wait()
                    result = {"content": [{"type": "text", "text": "done"}]}
                else:
                    writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                    continue
                body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
                    + body
                )


@contextlib.asynccontextmanager
async def backend_connection(
    *, list_changed: bool = False, timeout: float = 30.0, **limits: int
) -> AsyncIterator[tuple[SlowBackend, BackendConnection]]:
    backend = SlowBackend(list_changed=list_changed)
    url = await backend.start()
    spec = ServerSpec(name="slowpoke", type="streamable-http", url=url, timeout=timeout, **limits)
    conn = await connect(spec)
    try:
        if list_changed:
            await asyncio.wait_for(backend.listening.wait(), 10)
        yield backend, conn
    finally:
        await conn.aclose()
        await backend.stop()


def call(conn: BackendConnection) -> Awaitable[Message]:
    return conn.request("tools/call", {"name": raw("slow"), "arguments": raw({})})


async def until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until `condition` holds (a test failure after about 10 s)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


async def test_calls_past_in_flight_and_queue_fail_at_once_naming_backend_and_keys() -> None:
    async with backend_connection(max_in_flight=2, max_queued=2) as (backend, conn):
        running = [asyncio.ensure_future(call(conn)) for _ in range(4)]
        await until(lambda: backend.calls == 2 and conn.calls.waiting == 2)

        with pytest.raises(BackendBusy) as caught:
            await asyncio.wait_for(call(conn), 5)  # refused, not queued: it would wait for `release`
        message = caught.value.message
        assert "'slowpoke' is busy" in message and "2 calls in flight and 2 waiting" in message
        assert "maxInFlight" in message and "maxQueued" in message
        assert isinstance(caught.value, BackendError) and caught.value.server == "slowpoke"

        backend.release.set()
        replies = await asyncio.gather(*running)
        assert all(reply.result is not None for reply in replies)
        assert backend.calls == 4


async def test_a_waiting_call_that_gives_up_frees_its_place_in_the_queue() -> None:
    async with backend_connection(max_in_flight=1, max_queued=1) as (backend, conn):
        first = asyncio.ensure_future(call(conn))
        waiting = asyncio.ensure_future(call(conn))
        await until(lambda: backend.calls == 1 and conn.calls.waiting == 1)
        waiting.cancel()
        await until(lambda: conn.calls.waiting == 0)
        queued_again = asyncio.ensure_future(call(conn))
        await until(lambda: conn.calls.waiting == 1)
        backend.release.set()
        await asyncio.gather(first, queued_again)
        assert backend.calls == 2


async def test_a_call_that_waits_past_its_timeout_is_busy_not_timed_out() -> None:
    async with backend_connection(max_in_flight=1, max_queued=4, timeout=0.3) as (backend, conn):
        results = await asyncio.gather(call(conn), call(conn), return_exceptions=True)
        assert isinstance(results[0], BackendTimeout)
        assert isinstance(results[1], BackendBusy) and "no call slot came free" in results[1].message
        assert backend.calls == 1  # the waiting call never reached the backend


async def test_the_pool_never_opens_more_than_max_connections() -> None:
    async with backend_connection(max_in_flight=50, max_connections=3) as (backend, conn):
        calls = [asyncio.ensure_future(call(conn)) for _ in range(20)]
        await until(lambda: backend.calls == 3)
        for _ in range(20):  # the other 17 wait for a connection instead of opening one
            await asyncio.sleep(0)
        assert (backend.accepted, backend.calls) == (3, 3)
        backend.release.set()
        await asyncio.gather(*calls)
        assert (backend.accepted, backend.calls) == (3, 20)


async def test_a_notification_stream_does_not_starve_calls() -> None:
    async with backend_connection(list_changed=True, max_in_flight=50, max_connections=2) as (backend, conn):
        backend.release.set()
        replies = await asyncio.gather(*(call(conn) for _ in range(10)))
        assert len(replies) == 10
        assert backend.accepted == 2  # one for the listen stream, one shared by the calls in turn


async def test_health_checks_and_the_listen_stream_skip_the_call_gate() -> None:
    async with backend_connection(list_changed=True, max_in_flight=1, max_queued=0) as (backend, conn):
        held = asyncio.ensure_future(call(conn))
        await until(lambda: backend.calls == 1)
        with pytest.raises(BackendBusy):
            await call(conn)
        await asyncio.wait_for(health_check(conn, timeout=5), 10)  # server/discover answers while calls are full
        backend.release.set()
        await held

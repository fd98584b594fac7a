"""The gateway's HTTP/1.1 connection layer (HttpConnection, Exchange) under a small ASGI app, over
real loopback sockets: framing, pipelining, bodies, streaming, errors, disconnects, shutdown.

The deadlines and size limits are tested end to end against the gateway in test_limits.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from aggregator.http_connection import HttpConnection, connection_class
from shared.config import AggregatorSettings

Scope = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    """Echoes what it was asked, by path: the behaviours under test, one per path."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    body = b""
    more = True
    while more and path != "/stream":
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body, more = body + message["body"], message["more_body"]
    if path == "/slow":
        await asyncio.sleep(0.2)
    if path == "/boom":
        raise ValueError("a handler bug")
    if path == "/bad-header":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-injected", b"a\r\nset-cookie: x")]})
        return
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    if path == "/wait-disconnect":
        STATE["disconnect"] = await receive()
        return
    answer = json.dumps(
        {"path": path, "method": scope["method"], "length": len(body), "query": scope["query_string"].decode()}
    )
    payload = answer.encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


STATE: dict[str, Any] = {}


class Served:
    def __init__(self, server: asyncio.Server, state: ServerState) -> None:
        self.server = server
        self.state = state
        self.port = server.sockets[0].getsockname()[1]

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@contextlib.asynccontextmanager
async def served(asgi: Any = app, **settings: Any) -> AsyncIterator[Served]:
    """`asgi` served on a free loopback port by HttpConnection, `settings` its AggregatorSettings."""
    config = uvicorn.Config(asgi, lifespan="off", proxy_headers=False, log_config=None)
    state = ServerState()
    protocol = connection_class(AggregatorSettings(**settings))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: protocol(config, state, {}, loop), "127.0.0.1", 0)
    try:
        yield Served(server, state)
    finally:
        server.close()
        for connection in list(state.connections):
            assert isinstance(connection, HttpConnection)
            connection.transport.close()


def request(path: str, body: bytes = b"", *, method: str = "POST", extra: bytes = b"") -> bytes:
    return b"%b %b HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n%b\r\n%b" % (
        method.encode(),
        path.encode(),
        len(body),
        extra,
        body,
    )


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status, *lines = head[:-4].split(b"\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(b": ") for line in lines)}
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readexactly(2)
    else:
        body = b""
    return status, headers, body


async def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    async with served() as server:
        reader, writer = await server.connect()
        writer.write(request("/slow", b"first") + request("/fast?x=1", b"second!") + request("/third", method="GET"))
        answers = [json.loads((await read_response(reader))[2]) for _ in range(3)]
        assert [(a["path"], a["length"], a["method"]) for a in answers] == [
            ("/slow", 5, "POST"),
            ("/fast", 7, "POST"),
            ("/third", 0, "GET"),
        ]
        assert answers[1]["query"] == "x=1"
        writer.close()


async def test_a_chunked_request_body_and_a_large_one_arrive_whole() -> None:
    async with served() as server:
        reader, writer = await server.connect()
        writer.write(
            b"POST /c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
        )
        assert json.loads((await read_response(reader))[2])["length"] == 7
        big = b"x" * 300_000  # past the buffered-body limit: reading pauses and resumes as the app takes it
        writer.write(request("/big", big))
        assert json.loads((await read_response(reader))[2])["length"] == len(big)
        writer.close()


async def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    async with served() as server:
        reader, writer = await server.connect()
        writer.write(b"POST /e HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"body")
        status, _, body = await read_response(reader)
        assert status.startswith(b"HTTP/1.1 200") and json.loads(body)["length"] == 4
        writer.close()


async def test_head_keeps_the_length_and_sends_no_body() -> None:
    async with served() as server:
        reader, writer = await server.connect()
        writer.write(b"HEAD /h HTTP/1.1\r\nhost: t\r\n\r\n" + request("/after", method="GET"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"content-length: " in head
        _, _, after = await read_response(reader)  # the next response follows at once: no body was sent
        assert json.loads(after)["path"] == "/after"
        writer.close()


async def test_a_stream_is_chunked_and_its_head_arrives_before_its_first_event() -> None:
    async with served() as server:
        reader, writer = await server.connect()
        writer.write(request("/stream", method="GET"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.25)  # the first event comes at 0.3 s
        assert b"transfer-encoding: chunked" in head
        assert await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5) == b"b\r\ndata: one\n\n\r\n0\r\n\r\n"
        writer.close()


@pytest.mark.parametrize("path", ["/boom", "/bad-header"])
async def test_a_handler_error_is_a_500_json_rpc_error_without_a_traceback(path: str) -> None:
    async with served() as server:
        reader, writer = await server.connect()
        writer.write(request(path))
        status, headers, body = await read_response(reader)
        assert status.startswith(b"HTTP/1.1 500") and headers[b"connection"] == b"close"
        assert json.loads(body)["error"]["code"] == -32603
        assert b"Traceback" not in body and b"set-cookie" not in body
        assert await reader.read() == b""  # and the connection is closed
        writer.close()


async def test_a_malformed_request_gets_400_and_the_connection_closes() -> None:
    async with served() as server:
        reader, writer = await server.connect()
        writer.write(b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: nope\r\n\r\n")
        status, _, body = await read_response(reader)
        assert (
            status.startswith(b"HTTP/1.1 400") and "Malformed HTTP/1.1 request" in json.loads(body)["error"]["message"]
        )
        assert await reader.read() == b""


async def test_a_client_that_hangs_up_is_seen_by_the_handler_as_a_disconnect() -> None:
    STATE.clear()
    async with served() as server:
        _, writer = await server.connect()
        writer.write(request("/wait-disconnect", b"{}"))
        await asyncio.sleep(0.1)
        writer.close()
        for _ in range(50):
            if "disconnect" in STATE:
                break
            await asyncio.sleep(0.02)
        assert STATE["disconnect"] == {"type": "http.disconnect"}


async def test_requests_spaced_under_the_keep_alive_timeout_keep_the_connection() -> None:
    async with served(keep_alive_timeout=1) as server:
        reader, writer = await server.connect()
        for _ in range(4):  # 1.6 s in all: the deadline moves with each request
            writer.write(request("/k", method="GET"))
            assert json.loads((await read_response(reader))[2])["path"] == "/k"
            await asyncio.sleep(0.4)
        assert await asyncio.wait_for(reader.read(), 3) == b""  # then idle past it: closed
        writer.close()


async def test_shutdown_closes_idle_connections_and_busy_ones_after_their_response() -> None:
    async with served() as server:
        idle_reader, idle_writer = await server.connect()
        busy_reader, busy_writer = await server.connect()
        busy_writer.write(request("/slow"))
        await asyncio.sleep(0.05)
        for connection in list(server.state.connections):
            assert isinstance(connection, HttpConnection)
            connection.shutdown()
        assert await asyncio.wait_for(idle_reader.read(), 5) == b""
        status, headers, _ = await read_response(busy_reader)
        assert status.startswith(b"HTTP/1.1 200") and headers[b"connection"] == b"close"
        assert await asyncio.wait_for(busy_reader.read(), 5) == b""
        idle_writer.close()
        busy_writer.close()


class RecordingTransport:
    """The connection's own transport, counting its writes."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def test_a_response_of_known_length_leaves_in_one_write() -> None:
    async with served() as server:
        reader, writer = await server.connect()
        writer.write(request("/warm", method="GET"))
        await read_response(reader)
        (connection,) = server.state.connections
        assert isinstance(connection, HttpConnection)
        recording = RecordingTransport(connection.transport)
        connection.transport = recording  # type: ignore[assignment]
        writer.write(request("/one", b"{}"))
        _, _, body = await read_response(reader)
        assert len(recording.writes) == 1 and recording.writes[0].endswith(body)
        writer.close()

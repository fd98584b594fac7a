"""shared/backends/http_client.py against an in-process HTTP server that answers byte by byte."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from shared.backends.http_client import HttpPool, WireError
from tests.fakes.http_server import HttpReply, HttpRequest, HttpServer

Answer = Callable[[HttpRequest, HttpReply], Awaitable[None]]


async def ok(request: HttpRequest, reply: HttpReply) -> None:
    reply.send(200, b"ok:" + request.body)


@pytest.fixture
async def pools() -> AsyncIterator[list[HttpPool]]:
    """Pools a test opens; closed after it."""
    opened: list[HttpPool] = []
    yield opened
    for pool in opened:
        await pool.aclose()


def pool_for(server: HttpServer, pools: list[HttpPool], headers: dict[str, str] | None = None) -> HttpPool:
    pool = HttpPool(f"{server.url}/mcp", headers=headers, max_connections=8)
    pools.append(pool)
    return pool


async def post(pool: HttpPool, body: bytes = b"x") -> bytes:
    response = await pool.request("POST", pool.encode_headers({"content-type": "application/json"}), body)
    return await response.read()


async def test_sequential_requests_reuse_one_keep_alive_connection(pools: list[HttpPool]) -> None:
    async with HttpServer(ok) as server:
        pool = pool_for(server, pools)
        assert [await post(pool, b"%d" % i) for i in range(3)] == [b"ok:0", b"ok:1", b"ok:2"]
    assert [(r.connection, r.number) for r in server.requests] == [(1, 1), (1, 2), (1, 3)]


async def test_concurrent_requests_get_their_own_connections_which_are_kept_for_later(pools: list[HttpPool]) -> None:
    gate = asyncio.Event()

    async def held(request: HttpRequest, reply: HttpReply) -> None:
        await gate.wait()
        reply.send(200, request.body)

    async with HttpServer(held) as server:
        pool = pool_for(server, pools)
        first = [asyncio.ensure_future(post(pool, b"%d" % i)) for i in range(3)]
        await asyncio.sleep(0.05)
        gate.set()
        assert await asyncio.gather(*first) == [b"0", b"1", b"2"]
        assert await asyncio.gather(*(post(pool, b"again") for _ in range(3))) == [b"again"] * 3
    assert server.connections == 3


async def test_request_header_names_the_host_and_carries_configured_headers(pools: list[HttpPool]) -> None:
    async with HttpServer(ok) as server:
        pool = pool_for(server, pools, headers={"Authorization": "Bearer t0ken"})
        await post(pool, b"{}")
        response = await pool.request("GET", pool.encode_headers({"accept": "text/event-stream"}))
        await response.read()
    posted, got = server.requests
    assert posted.headers["host"] == f"127.0.0.1:{server.port}"
    assert posted.headers["authorization"] == "Bearer t0ken"
    assert posted.headers["content-length"] == "2" and posted.target == "/mcp"
    assert got.method == "GET" and "content-length" not in got.headers and got.headers["accept"] == "text/event-stream"


async def test_request_on_a_connection_the_server_dropped_while_idle_is_retried_on_a_fresh_one(
    pools: list[HttpPool],
) -> None:
    async def drop_second(request: HttpRequest, reply: HttpReply) -> None:
        if (request.connection, request.number) == (1, 2):
            reply.close()  # the server's idle timeout fired just as the request arrived
        else:
            reply.send(200, request.body)

    async with HttpServer(drop_second) as server:
        pool = pool_for(server, pools)
        assert await post(pool, b"first") == b"first"
        assert await post(pool, b"second") == b"second"
    assert [(r.connection, r.number, r.body) for r in server.requests] == [
        (1, 1, b"first"),
        (1, 2, b"second"),
        (2, 1, b"second"),
    ]


async def test_a_fresh_connection_closed_without_an_answer_fails_and_is_not_retried(pools: list[HttpPool]) -> None:
    async def hang_up(request: HttpRequest, reply: HttpReply) -> None:
        reply.close()

    async with HttpServer(hang_up) as server:
        pool = pool_for(server, pools)
        with pytest.raises(WireError, match="closed the connection"):
            await post(pool)
    assert len(server.requests) == 1


async def test_a_connection_closed_after_part_of_the_answer_is_not_retried(pools: list[HttpPool]) -> None:
    """Once a byte of the answer arrived the server acted on the request: sending it again could act twice."""

    async def half_head_on_second(request: HttpRequest, reply: HttpReply) -> None:
        if request.number == 1:
            reply.send(200, b"ok")
        else:
            reply.raw(b"HTTP/1.1 200 OK\r\ncontent-")
            reply.close()

    async with HttpServer(half_head_on_second) as server:
        pool = pool_for(server, pools)
        await post(pool)
        with pytest.raises(WireError):
            await post(pool)
    assert len(server.requests) == 2


async def test_server_closing_mid_body_fails_the_read_with_wire_error(pools: list[HttpPool]) -> None:
    async def short_body(request: HttpRequest, reply: HttpReply) -> None:
        reply.raw(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial":')
        reply.close()

    async with HttpServer(short_body) as server:
        pool = pool_for(server, pools)
        response = await pool.request("POST", pool.encode_headers({}), b"x")
        assert response.status == 200
        with pytest.raises(WireError, match="closed the connection"):
            await response.read()
    assert len(server.requests) == 1


async def test_malformed_response_fails_with_wire_error(pools: list[HttpPool]) -> None:
    async def garbage(request: HttpRequest, reply: HttpReply) -> None:
        reply.raw(b"SPDY/9 banana\r\n\r\n")

    async with HttpServer(garbage) as server:
        with pytest.raises(WireError, match="malformed HTTP response"):
            await post(pool_for(server, pools))


async def test_chunked_body_split_across_writes_is_read_whole(pools: list[HttpPool]) -> None:
    async def chunked(request: HttpRequest, reply: HttpReply) -> None:
        reply.raw(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel")
        await asyncio.sleep(0.01)
        reply.raw(b"lo\r\n1")
        await asyncio.sleep(0.01)
        reply.raw(b"\r\n \r\n6\r\nworld!\r\n0\r\n\r\n")

    async with HttpServer(chunked) as server:
        pool = pool_for(server, pools)
        assert await post(pool) == b"hello world!"
        assert await post(pool) == b"hello world!"
    assert server.connections == 1


async def test_event_stream_chunks_arrive_as_the_server_writes_them(pools: list[HttpPool]) -> None:
    proceed = asyncio.Event()

    async def events(request: HttpRequest, reply: HttpReply) -> None:
        reply.start(200, {"content-type": "text/event-stream; charset=utf-8"})
        reply.write(b"data: one\n\n")
        await proceed.wait()
        reply.write(b"data: two\n\n")
        reply.end()

    async with HttpServer(events) as server:
        pool = pool_for(server, pools)
        response = await pool.request("GET", pool.encode_headers({"accept": "text/event-stream"}))
        assert response.content_type == "text/event-stream"
        chunks = response.iter_chunks()
        assert await asyncio.wait_for(anext(chunks), 5) == b"data: one\n\n"
        proceed.set()
        assert [chunk async for chunk in chunks] == [b"data: two\n\n"]


async def test_cancelling_a_request_closes_its_connection_and_the_pool_stays_usable(pools: list[HttpPool]) -> None:
    async def stall_first(request: HttpRequest, reply: HttpReply) -> None:
        if request.connection == 1:
            await asyncio.Event().wait()
        reply.send(200, b"fine")

    async with HttpServer(stall_first) as server:
        pool = pool_for(server, pools)
        stalled = asyncio.ensure_future(post(pool))
        await asyncio.sleep(0.05)
        stalled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stalled
        await asyncio.wait_for(server.closed(1), 5)
        assert await post(pool) == b"fine"
    assert server.connections == 2


async def test_a_request_cancelled_at_any_point_before_its_answer_ends_and_leaves_no_connection_open(
    pools: list[HttpPool],
) -> None:
    """Cancelled one loop step later each time, so the cancellation also lands as the connect completes."""

    async def never(request: HttpRequest, reply: HttpReply) -> None:
        await asyncio.Event().wait()

    async with HttpServer(never) as server:
        pool = pool_for(server, pools)
        for steps in range(12):
            request = asyncio.ensure_future(post(pool))
            for _ in range(steps):
                await asyncio.sleep(0)
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(request, 2)
        for connection in range(1, server.connections + 1):
            await asyncio.wait_for(server.closed(connection), 2)


async def test_a_response_closed_before_its_end_takes_its_connection_down(pools: list[HttpPool]) -> None:
    async def endless(request: HttpRequest, reply: HttpReply) -> None:
        if request.connection == 1:
            reply.start(200, {"content-type": "text/event-stream"})
            reply.write(b"data: tick\n\n")
            await asyncio.Event().wait()
        reply.send(200, b"next")

    async with HttpServer(endless) as server:
        pool = pool_for(server, pools)
        response = await pool.request("GET", pool.encode_headers({}))
        await anext(response.iter_chunks())
        response.close()
        await asyncio.wait_for(server.closed(1), 5)
        assert await post(pool) == b"next"


async def test_connection_close_from_the_server_is_honoured_without_error(pools: list[HttpPool]) -> None:
    async def one_shot(request: HttpRequest, reply: HttpReply) -> None:
        reply.send(200, b"once", {"connection": "close"})
        reply.close()

    async with HttpServer(one_shot) as server:
        pool = pool_for(server, pools)
        assert [await post(pool), await post(pool)] == [b"once", b"once"]
    assert [r.connection for r in server.requests] == [1, 2]


async def test_body_ended_by_the_server_closing_the_connection_is_read_whole(pools: list[HttpPool]) -> None:
    """HTTP/1.1 allows a body without length or chunking that ends when the server closes (RFC 9112 6.3)."""

    async def until_close(request: HttpRequest, reply: HttpReply) -> None:
        reply.raw(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"a":')
        await asyncio.sleep(0.01)
        reply.raw(b"1}")
        reply.close()

    async with HttpServer(until_close) as server:
        assert await post(pool_for(server, pools)) == b'{"a":1}'


async def test_refused_connection_names_host_and_port(pools: list[HttpPool]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        pool = HttpPool(f"http://127.0.0.1:{port}/mcp", max_connections=8)
        pools.append(pool)
        with pytest.raises(WireError, match=f"cannot connect to 127.0.0.1:{port}"):
            await post(pool)


async def test_connect_timeout_names_host_and_port(pools: list[HttpPool]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)
        port = sock.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", port))  # fills the accept queue: the next SYN is dropped
        try:
            pool = HttpPool(f"http://127.0.0.1:{port}/mcp", max_connections=8, connect_timeout=0.2)
            pools.append(pool)
            with pytest.raises(WireError, match=f"connecting to 127.0.0.1:{port} timed out"):
                await post(pool)
        finally:
            filler.close()


def test_only_http_urls_make_a_pool() -> None:
    with pytest.raises(ValueError, match="not an http"):
        HttpPool("ftp://example.com/mcp", max_connections=8)

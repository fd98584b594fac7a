"""Nothing a client opens is unbounded: slow or huge request heads, trickling bodies, idle
connections, streams and batches each meet a configured limit, over real sockets."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway_process import GatewayProcess, run_gateway

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
LIMITS = {
    "headerTimeout": 0.5,
    "bodyTimeout": 0.5,
    "keepAliveTimeout": 1,
    "maxHeaderBytes": 8192,
    "maxStreams": 3,
    "maxBatchSize": 5,
    "maxBodyBytes": 1024,
}
WAIT = 10.0  # the longest any limit here may take to act before the test calls it broken


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    with run_gateway({"aggregator": LIMITS, "mcpServers": []}) as process:
        yield process


def connect(gateway: GatewayProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=WAIT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a test failure if it never does)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def trickle_until_answered(sock: socket.socket, piece: bytes) -> bytes:
    """Send `piece` every 50 ms until the server answers; return all it sends before closing."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if select.select([sock], [], [], 0.05)[0]:
            return read_until_closed(sock)
        with contextlib.suppress(OSError):
            sock.sendall(piece)
    raise AssertionError("the server kept reading a trickling request")


def send_ignoring_resets(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


def error_message(reply: bytes) -> str:
    return json.loads(reply.partition(b"\r\n\r\n")[2])["error"]["message"]


def host(gateway: GatewayProcess) -> bytes:
    return f"Host: 127.0.0.1:{gateway.port}\r\n".encode()


# -- the request head, the body, the idle connection ------------------------------------------


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(gateway: GatewayProcess) -> None:
    with connect(gateway) as sock:
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert "aggregator.headerTimeout" in error_message(reply)


def test_a_slowloris_head_is_cut_after_the_header_timeout(gateway: GatewayProcess) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n" + host(gateway))
        reply = trickle_until_answered(sock, b"X-Slow: 1\r\n")
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert "aggregator.headerTimeout" in error_message(reply)


def test_a_one_megabyte_header_gets_431_without_being_read_whole(gateway: GatewayProcess) -> None:
    head = b"GET /healthz HTTP/1.1\r\n" + host(gateway) + b"X-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
    with connect(gateway) as sock:
        sender = threading.Thread(target=send_ignoring_resets, args=(sock, head), daemon=True)
        sender.start()
        reply = read_until_closed(sock)
        sender.join(WAIT)
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert "aggregator.maxHeaderBytes" in error_message(reply)


def test_a_body_that_trickles_is_cut_after_the_body_timeout(gateway: GatewayProcess) -> None:
    head = (
        b"POST /mcp HTTP/1.1\r\n"
        + host(gateway)
        + b"Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    with connect(gateway) as sock:
        sock.sendall(head)
        reply = trickle_until_answered(sock, b" ")
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert "aggregator.bodyTimeout" in error_message(reply)


def test_an_idle_keep_alive_connection_is_closed(gateway: GatewayProcess) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n" + host(gateway) + b"\r\n")
        reply = read_until_closed(sock)  # the response, then nothing until the keep-alive timeout closes it
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b'{"status":"alive"}')


def test_a_connection_idle_after_a_body_that_came_after_its_response_is_closed(gateway: GatewayProcess) -> None:
    head = (
        b"POST /mcp HTTP/1.1\r\n"
        + host(gateway)
        + b"Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: 2000\r\n\r\n"
    )
    with connect(gateway) as sock:
        sock.sendall(head)
        reply = b""
        while b"maxBodyBytes" not in reply:  # answered 413 at once, from Content-Length alone
            reply += sock.recv(65536)
        sock.sendall(b" " * 2000)  # the body arrives after all, then the client goes quiet
        rest = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 413 ") and rest == b""


def test_requests_sent_in_pieces_within_the_limits_are_served_on_one_connection(gateway: GatewayProcess) -> None:
    padding = b"X-Pad: " + b"p" * 5000 + b"\r\n"
    request = b"GET /healthz HTTP/1.1\r\n" + host(gateway) + padding + b"\r\n"
    stream = request * 3  # pipelined: a head may begin in the middle of a read
    with connect(gateway) as sock:
        for start in range(0, len(stream), 3000):
            sock.sendall(stream[start : start + 3000])
            time.sleep(0.01)
        replies = b""
        while replies.count(b'{"status":"alive"}') < 3:
            chunk = sock.recv(65536)
            assert chunk, replies
            replies += chunk
    assert replies.count(b"HTTP/1.1 200 ") == 3


# -- streams ----------------------------------------------------------------------------------


def initialize(client: httpx.Client, version: str = "2025-11-25") -> dict[str, str]:
    init = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    reply = client.post("/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
    reply.raise_for_status()
    return {"mcp-session-id": reply.headers["mcp-session-id"], "mcp-protocol-version": version}


LISTEN = {
    "jsonrpc": "2.0",
    "id": "listen-1",
    "method": "subscriptions/listen",
    "params": {"_meta": META, "notifications": {"toolsListChanged": True}},
}
LISTEN_HEADERS = {**JSON_HEADERS, "mcp-protocol-version": MODERN, "mcp-method": "subscriptions/listen"}
SSE = {"accept": "text/event-stream"}


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert "aggregator.maxStreams" in response.json()["error"]["message"]


def test_streams_over_the_cap_get_503_and_open_ones_keep_working(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.base, headers=JSON_HEADERS, timeout=WAIT) as client:
        session, other_session = initialize(client), initialize(client)
        with (
            client.stream("GET", "/mcp", headers={**SSE, **session}) as get_stream,
            client.stream("POST", "/mcp", json=LISTEN, headers=LISTEN_HEADERS) as listen_stream,
            client.stream("GET", "/sse", headers=SSE) as sse_stream,
        ):
            assert [s.status_code for s in (get_stream, listen_stream, sse_stream)] == [200, 200, 200]
            sse_lines = sse_stream.iter_lines()
            endpoint = next(line for line in sse_lines if line.startswith("data: "))[len("data: ") :]

            assert_refused(client.get("/sse", headers=SSE))
            assert_refused(client.post("/mcp", json=LISTEN, headers=LISTEN_HEADERS))
            assert_refused(client.get("/mcp", headers={**SSE, **other_session}))

            # the open streams are untouched: the legacy one still carries replies
            init = {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
            posted = client.post(endpoint, json={"jsonrpc": "2.0", "id": 7, "method": "initialize", "params": init})
            assert posted.status_code == 202
            reply = next(line for line in sse_lines if line.startswith("data: {"))
            assert json.loads(reply[len("data: ") :])["result"]["protocolVersion"] == "2024-11-05"
            assert next(listen_stream.iter_lines()).startswith("event: message")
        wait_until_every_slot_is_free(client)


def wait_until_every_slot_is_free(client: httpx.Client) -> None:
    """Streams that closed give their slots back (shortly after: the gateway sees the disconnect)."""
    deadline = time.monotonic() + WAIT
    while True:
        with contextlib.ExitStack() as stack:
            opened = [stack.enter_context(client.stream("GET", "/sse", headers=SSE)) for _ in range(3)]
            if all(stream.status_code == 200 for stream in opened):
                return
        assert time.monotonic() < deadline, "closed streams never gave their slots back"
        time.sleep(0.05)


def test_a_session_reopening_its_stream_at_the_cap_replaces_it(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.base, headers=JSON_HEADERS, timeout=WAIT) as client:
        wait_until_every_slot_is_free(client)
        session = initialize(client)
        with (
            client.stream("GET", "/sse", headers=SSE) as first,
            client.stream("GET", "/sse", headers=SSE) as second,
            client.stream("GET", "/mcp", headers={**SSE, **session}) as mine,
        ):
            assert [s.status_code for s in (first, second, mine)] == [200, 200, 200]
            with client.stream("GET", "/mcp", headers={**SSE, **session}) as reopened:
                assert reopened.status_code == 200
        wait_until_every_slot_is_free(client)


# -- batches ----------------------------------------------------------------------------------


def test_a_batch_over_the_cap_is_an_invalid_request_naming_the_limit(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.base, headers=JSON_HEADERS, timeout=WAIT) as client:
        session = initialize(client, "2025-03-26")
        batch = [{"jsonrpc": "2.0", "id": n, "method": "tools/list"} for n in range(6)]
        refused = client.post("/mcp", json=batch, headers=session)
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == -32600 and "aggregator.maxBatchSize" in error["message"] and "6" in error["message"]
        served = client.post("/mcp", json=batch[:5], headers=session)
        assert sorted(reply["id"] for reply in served.json()) == [0, 1, 2, 3, 4]

"""shared/backends/negotiate.py: which protocol version the gateway settles on with each kind of backend."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.backends.base import BackendConnection
from shared.backends.factory import CONNECTION_TYPES
from shared.backends.negotiate import CAPABILITIES_DECLARED_TO_BACKENDS, negotiate
from shared.protocol import versions as v
from shared.protocol.errors import BackendError
from tests.fakes.backend import STATELESS, Call, FakeBackend, Handler, HttpAnswer, RpcError

HANDSHAKE = "2025-11-25"
UNSUPPORTED_VERSION = -32022


@contextlib.asynccontextmanager
async def transport_to(backend: FakeBackend) -> AsyncIterator[BackendConnection]:
    """A connection whose transport is open and whose version is not negotiated yet."""
    spec = backend.spec("fake")
    conn = CONNECTION_TYPES[spec.type](spec)
    await conn.open_transport()
    try:
        yield conn
    finally:
        await conn.aclose()


def answering(result: Any) -> Handler:
    async def handler(call: Call) -> Any:
        return result

    return handler


def failing(code: int, message: str, data: Any = None, *, status: int = 200) -> Handler:
    async def handler(call: Call) -> Any:
        raise RpcError(code, message, data, status=status)

    return handler


@pytest.mark.parametrize("transport", ["streamable-http", "stdio"])
async def test_a_2026_server_is_reached_statelessly_without_initialize(transport: str) -> None:
    discover = answering(
        {
            "resultType": "complete",
            "supportedVersions": [STATELESS],
            "capabilities": {"tools": {"listChanged": True}},
            "instructions": "use me well",
            "_meta": {v.SERVER_INFO: {"name": "modern", "version": "2"}},
        }
    )
    backend = FakeBackend({"server/discover": discover}, transport=transport)
    async with backend, transport_to(backend) as conn:
        await negotiate(conn)
        assert (conn.protocol_version, conn.stateless) == (STATELESS, True)
        assert conn.capabilities == {"tools": {"listChanged": True}}
        assert conn.server_info == {"name": "modern", "version": "2"}
        assert conn.instructions == "use me well"
    assert backend.methods == ["server/discover"]
    probe = backend.received[0]
    assert probe.meta == {v.PROTOCOL_VERSION: STATELESS, v.CLIENT_INFO: v.GATEWAY_INFO, v.CLIENT_CAPABILITIES: {}}
    if transport == "streamable-http":
        assert probe.headers["mcp-protocol-version"] == STATELESS and probe.headers["mcp-method"] == "server/discover"


PROBE_FAILURES = {
    "unknown method": failing(-32601, "Method not found"),
    "unknown method, HTTP 404": failing(-32601, "Method not found", status=404),
    "HTTP 400 without JSON-RPC": answering(HttpAnswer(400, b"Bad Request: unsupported protocol version")),
    "HTTP 400 with another JSON-RPC error": failing(-32600, "Bad Request: No valid session ID", status=400),
    "-32022 naming only handshake versions": failing(
        UNSUPPORTED_VERSION, "Unsupported protocol version", {"supported": [HANDSHAKE, "2025-06-18"]}, status=400
    ),
    "-32022 naming a stateless version": failing(
        UNSUPPORTED_VERSION, "Unsupported protocol version", {"supported": [STATELESS]}, status=400
    ),
    "-32022 without data": failing(UNSUPPORTED_VERSION, "Unsupported protocol version"),
}


@pytest.mark.parametrize("probe", PROBE_FAILURES.values(), ids=PROBE_FAILURES.keys())
async def test_a_2025_server_is_reached_by_initialize_after_the_probe_fails(probe: Handler) -> None:
    backend = FakeBackend({"server/discover": probe}, era=HANDSHAKE, mint_sessions=False)
    async with backend, transport_to(backend) as conn:
        await negotiate(conn)
        assert (conn.protocol_version, conn.stateless) == (HANDSHAKE, False)
        assert conn.server_info == {"name": "fake", "version": "1.0"}
    assert backend.methods == ["server/discover", "initialize", "notifications/initialized"]


async def test_a_2025_server_with_sessions_refusing_the_sessionless_probe_gets_initialize() -> None:
    async with FakeBackend(era=HANDSHAKE) as backend, transport_to(backend) as conn:  # the probe gets HTTP 400
        await negotiate(conn)
        assert conn.protocol_version == HANDSHAKE
        sessions = set(backend.sessions)
    assert backend.methods == ["server/discover", "initialize", "notifications/initialized"]
    assert backend.requests("notifications/initialized")[0].headers["mcp-session-id"] in sessions


@pytest.mark.parametrize("transport", ["stdio", "sse"])
async def test_a_2025_server_on_a_stream_transport_is_reached_by_initialize(transport: str) -> None:
    async with FakeBackend(era=HANDSHAKE, transport=transport) as backend, transport_to(backend) as conn:
        await negotiate(conn)
        assert conn.protocol_version == HANDSHAKE
    probes = ["server/discover"] if transport == "stdio" else []  # HTTP+SSE has no 2026-07-28 binding: no probe
    assert backend.methods == [*probes, "initialize", "notifications/initialized"]


async def test_initialize_declares_the_capabilities_the_gateway_relays_and_asks_for_the_newest_version() -> None:
    async with FakeBackend(era=HANDSHAKE, transport="stdio") as backend, transport_to(backend) as conn:
        await negotiate(conn)
    initialize = await backend.wait_for("initialize")
    assert initialize.params == {
        "protocolVersion": v.LATEST_HANDSHAKE,
        "capabilities": CAPABILITIES_DECLARED_TO_BACKENDS,
        "clientInfo": v.GATEWAY_INFO,
    }


async def test_an_older_handshake_version_the_server_answers_with_is_kept() -> None:
    async with FakeBackend(era="2025-03-26", transport="stdio") as backend, transport_to(backend) as conn:
        await negotiate(conn)
        assert conn.protocol_version == "2025-03-26"


async def test_a_server_refusing_initialize_fails_naming_what_it_said_and_both_eras() -> None:
    initialize = failing(-32602, "clients named mcp-aggregator are not welcome")
    backend = FakeBackend({"initialize": initialize}, era=HANDSHAKE, transport="stdio")
    async with backend, transport_to(backend) as conn:
        with pytest.raises(BackendError) as refused:
            await negotiate(conn)
    assert refused.value.server == "fake"
    assert refused.value.message == (
        "backend 'fake' refused initialize: clients named mcp-aggregator are not welcome"
        " (it speaks neither 2026-07-28 nor an initialize-based version the gateway knows)"
    )


async def test_an_initialize_answer_in_a_version_the_gateway_does_not_speak_fails_naming_it() -> None:
    async with FakeBackend(era="1999-01-01", transport="stdio") as backend, transport_to(backend) as conn:
        with pytest.raises(BackendError, match="answered initialize with protocol version '1999-01-01'"):
            await negotiate(conn)


async def test_a_server_that_settled_on_2026_while_initialize_was_sent_is_probed_again() -> None:
    """The first probe may meet a server still starting up; its refusal of initialize names 2026-07-28."""
    probes = 0

    async def discover_once_ready(call: Call) -> dict[str, Any]:
        nonlocal probes
        probes += 1
        if probes == 1:
            raise RpcError(UNSUPPORTED_VERSION, "not ready", {"supported": [STATELESS]})
        return {"resultType": "complete", "supportedVersions": [STATELESS], "capabilities": {}}

    initialize = failing(UNSUPPORTED_VERSION, "use 2026-07-28", {"supported": [STATELESS]})
    handlers = {"server/discover": discover_once_ready, "initialize": initialize}
    async with FakeBackend(handlers, transport="stdio") as backend, transport_to(backend) as conn:
        await negotiate(conn)
        assert conn.protocol_version == STATELESS
    assert backend.methods == ["server/discover", "initialize", "server/discover"]

"""The Host and Origin checks: which requests reach the app, and what a refused one gets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aggregator.middleware import HostCheck, OriginCheck
from aggregator.transport.http_common import send_error
from tests.gateway_process import GatewayProcess, run_gateway

Headers = list[tuple[bytes, bytes]]


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def guarded(check: HostCheck | OriginCheck, header: bytes) -> Any:
    """An ASGI app answering 200 unless `check` refuses the request's `header` values, as GatewayApp does."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        refused = check.refusal([value for name, value in scope["headers"] if name == header])
        if refused is not None:
            await send_error(send, refused.error, status=refused.status)
        else:
            await _ok(scope, receive, send)

    return app


async def call(app: Any, headers: Headers, *, http_version: str = "1.1") -> tuple[int, dict[str, Any]]:
    """Run one GET /readyz through `app` in-process; the status and, for a refusal, the JSON body."""
    scope = {"type": "http", "method": "GET", "path": "/readyz", "headers": headers, "http_version": http_version}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body) if body != b"ok" else {}


def host_check(bind: str = "127.0.0.1", allowed: tuple[str, ...] = ()) -> Any:
    return guarded(HostCheck(bind_host=bind, allowed=allowed), b"host")


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
@pytest.mark.parametrize(
    "host", ["localhost:8090", "localhost", "127.0.0.1", "127.0.0.1:8090", "[::1]:8090", "[::1]", "api.localhost:1"]
)
async def test_loopback_bind_accepts_loopback_hosts(bind: str, host: str) -> None:
    status, _ = await call(host_check(bind), [(b"host", host.encode())])
    assert status == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8090", "localhost.evil.example", "127.0.0.1.nip.io"])
async def test_loopback_bind_refuses_other_hosts_with_421_naming_host_and_key(host: str) -> None:
    status, body = await call(host_check(), [(b"host", host.encode())])
    assert status == 421
    assert body["jsonrpc"] == "2.0"
    assert body["error"]["code"] == -32600
    message = body["error"]["message"]
    assert repr(host.rpartition(":")[0] or host) in message
    assert "aggregator.allowedHosts" in message


async def test_allowed_hosts_admit_listed_names_and_subdomain_wildcards() -> None:
    app = host_check(allowed=("Gateway.Example", "*.corp.example"))
    assert (await call(app, [(b"host", b"gateway.example:8090")]))[0] == 200
    assert (await call(app, [(b"host", b"mcp.corp.example")]))[0] == 200
    assert (await call(app, [(b"host", b"corp.example")]))[0] == 421
    assert (await call(app, [(b"host", b"localhost:8090")]))[0] == 200
    assert (await call(app, [(b"host", b"evil.example")]))[0] == 421


async def test_star_admits_any_host() -> None:
    assert (await call(host_check(allowed=("*",)), [(b"host", b"evil.example")]))[0] == 200


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "10.1.2.3", "gateway.internal"])
async def test_non_loopback_bind_admits_any_host_until_hosts_are_listed(bind: str) -> None:
    assert (await call(host_check(bind), [(b"host", b"evil.example")]))[0] == 200
    listed = host_check(bind, allowed=("gateway.example",))
    assert (await call(listed, [(b"host", b"gateway.example")]))[0] == 200
    assert (await call(listed, [(b"host", b"127.0.0.1:8090")]))[0] == 200
    assert (await call(listed, [(b"host", b"evil.example")]))[0] == 421


async def test_duplicate_host_is_refused_even_when_both_are_loopback() -> None:
    status, body = await call(host_check(), [(b"host", b"localhost"), (b"host", b"localhost")])
    assert status == 400
    assert "more than one Host header" in body["error"]["message"]


async def test_missing_host_passes_because_browsers_always_send_one() -> None:
    assert (await call(host_check(), [], http_version="1.0"))[0] == 200


async def test_duplicate_origin_is_refused_even_when_both_are_allowed() -> None:
    app = guarded(OriginCheck(()), b"origin")
    status, body = await call(app, [(b"origin", b"http://localhost"), (b"origin", b"http://localhost")])
    assert status == 403
    assert "more than one Origin header" in body["error"]["message"]
    assert (await call(app, [(b"origin", b"http://localhost")]))[0] == 200


async def test_foreign_origin_is_refused() -> None:
    status, body = await call(guarded(OriginCheck(()), b"origin"), [(b"origin", b"http://evil.example")])
    assert status == 403
    assert "aggregator.allowedOrigins" in body["error"]["message"]


# -- through a real gateway -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    with run_gateway({"aggregator": {"allowedHosts": ["gateway.example"]}, "mcpServers": []}) as process:
        yield process


@pytest.mark.parametrize("path", ["/readyz", "/healthz", "/metrics", "/mcp", "/sse", "/admin/tools", "/nowhere"])
def test_gateway_refuses_a_rebound_host_on_every_route(gateway: GatewayProcess, path: str) -> None:
    response = httpx.get(f"{gateway.base}{path}", headers={"host": "evil.example"}, timeout=5)
    assert response.status_code == 421
    assert "aggregator.allowedHosts" in response.json()["error"]["message"]


def test_gateway_refuses_a_rebound_host_posting_a_message(gateway: GatewayProcess) -> None:
    response = httpx.post(f"{gateway.base}/message?sessionId=x", json={}, headers={"host": "evil.example"}, timeout=5)
    assert response.status_code == 421


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "gateway.example:{port}"])
def test_gateway_accepts_loopback_and_listed_hosts(gateway: GatewayProcess, host: str) -> None:
    response = httpx.get(f"{gateway.base}/readyz", headers={"host": host.format(port=gateway.port)}, timeout=5)
    assert response.status_code == 200

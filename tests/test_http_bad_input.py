"""Nothing a client sends gets a 500, a traceback or a hang: each case gets a clear error."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway_process import GatewayProcess, run_gateway

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    config = {
        "aggregator": {"maxBodyBytes": 4096},
        "mcpServers": [{"name": "time", "type": "stdio", "command": sys.executable, "args": ["-m", "mcp_server_time"]}],
    }
    with run_gateway(config) as process:
        yield process


def post(gateway: GatewayProcess, body: bytes | dict, headers: dict | None = None) -> httpx.Response:
    merged = {**HEADERS, **(headers or {})}
    if isinstance(body, dict):
        return httpx.post(gateway.url, json=body, headers=merged, timeout=10)
    return httpx.post(gateway.url, content=body, headers=merged, timeout=10)


def stateless_headers(method: str, name: str | None = None) -> dict:
    headers = {"mcp-protocol-version": MODERN, "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = name
    return headers


def test_malformed_json_is_a_parse_error(gateway: GatewayProcess) -> None:
    response = post(gateway, b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32700
    assert response.json()["id"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"jsonrpc": "1.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": None, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": {"x": 1}, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 1},
        {"id": 1, "method": "tools/list"},
        [1, 2, 3],
        "just a string",
    ],
)
def test_invalid_request_is_rejected(gateway: GatewayProcess, body: object) -> None:
    response = httpx.post(gateway.url, json=body, headers=HEADERS, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32600


def test_unknown_method_is_method_not_found_with_404(gateway: GatewayProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 3, "method": "tools/destroy", "params": {"_meta": META}}
    response = post(gateway, body, stateless_headers("tools/destroy"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == -32601
    assert response.json()["id"] == 3


def test_bad_params_are_invalid_params(gateway: GatewayProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": 42, "_meta": META}}
    response = post(gateway, body, {**stateless_headers("tools/call"), "mcp-name": "42"})
    assert response.json()["error"]["code"] in (-32602, -32020)
    body = {"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {"cursor": "not-a-cursor", "_meta": META}}
    response = post(gateway, body, stateless_headers("tools/list"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32602


def test_unknown_tool_is_invalid_params_naming_it(gateway: GatewayProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "x_nope", "_meta": META}}
    response = post(gateway, body, stateless_headers("tools/call", "x_nope"))
    error = response.json()["error"]
    assert error["code"] == -32602 and "x_nope" in error["message"]


def test_missing_meta_fields_are_invalid_params(gateway: GatewayProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {}}
    response = post(gateway, body, stateless_headers("tools/list"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32602 and "clientCapabilities" in error["message"]


def test_header_body_mismatch_is_header_mismatch(gateway: GatewayProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 8, "method": "tools/list", "params": {"_meta": META}}
    response = post(gateway, body, stateless_headers("prompts/list"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32020
    call = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "tools/call",
        "params": {"name": "x_time_get_current_time", "_meta": META},
    }
    response = post(gateway, call, stateless_headers("tools/call", "x_time_convert_time"))
    assert response.json()["error"]["code"] == -32020
    response = post(gateway, call, stateless_headers("tools/call"))
    assert response.json()["error"]["code"] == -32020 and "Mcp-Name" in response.json()["error"]["message"]


def test_base64_encoded_name_header_is_accepted(gateway: GatewayProcess) -> None:
    import base64

    name = "x_time_get_current_time"
    encoded = "=?base64?" + base64.b64encode(name.encode()).decode() + "?="
    call = {
        "jsonrpc": "2.0",
        "id": 10,
        "method": "tools/call",
        "params": {"name": name, "arguments": {"timezone": "UTC"}, "_meta": META},
    }
    response = post(gateway, call, stateless_headers("tools/call", encoded))
    assert response.status_code == 200 and "result" in response.json()


def test_unsupported_version_lists_supported_ones(gateway: GatewayProcess) -> None:
    meta = {**META, "io.modelcontextprotocol/protocolVersion": "1999-01-01"}
    body = {"jsonrpc": "2.0", "id": 11, "method": "tools/list", "params": {"_meta": meta}}
    response = post(gateway, body, {"mcp-protocol-version": "1999-01-01", "mcp-method": "tools/list"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32022
    assert error["data"]["requested"] == "1999-01-01" and MODERN in error["data"]["supported"]


def test_oversized_body_is_413(gateway: GatewayProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 12, "method": "tools/list", "params": {"_meta": META, "pad": "x" * 5000}}
    response = post(gateway, body, stateless_headers("tools/list"))
    assert response.status_code == 413
    assert "maxBodyBytes" in response.json()["error"]["message"]


def test_foreign_origin_is_403_and_localhost_is_allowed(gateway: GatewayProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 13, "method": "tools/list", "params": {"_meta": META}}
    response = post(gateway, body, {**stateless_headers("tools/list"), "origin": "http://evil.example"})
    assert response.status_code == 403
    assert "allowedOrigins" in response.json()["error"]["message"]
    response = post(gateway, body, {**stateless_headers("tools/list"), "origin": f"http://localhost:{gateway.port}"})
    assert response.status_code == 200


def test_wrong_content_type_and_accept_are_4xx(gateway: GatewayProcess) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
    response = post(gateway, body, {"content-type": "text/plain"})
    assert response.status_code == 415
    response = post(gateway, body, {"accept": "text/html"})
    assert response.status_code == 406


def test_unknown_or_missing_session_is_404(gateway: GatewayProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 14, "method": "tools/list"}
    response = post(gateway, body, {"mcp-session-id": "no-such-session", "mcp-protocol-version": "2025-11-25"})
    assert response.status_code == 404
    assert httpx.delete(gateway.url, headers={"mcp-session-id": "nope"}).status_code == 404


def test_other_http_methods_are_405(gateway: GatewayProcess) -> None:
    response = httpx.put(gateway.url, content=b"{}")
    assert response.status_code == 405 and response.headers["allow"] == "GET, POST, DELETE"


def test_get_without_a_session_is_a_bad_request_that_says_what_get_needs(gateway: GatewayProcess) -> None:
    response = httpx.get(gateway.url, headers={"accept": "text/event-stream"})
    assert response.status_code == 400
    assert "Mcp-Session-Id" in response.json()["error"]["message"]


def test_gateway_still_serves_after_all_that(gateway: GatewayProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 15, "method": "tools/list", "params": {"_meta": META}}
    response = post(gateway, body, stateless_headers("tools/list"))
    assert response.status_code == 200
    assert [t["name"] for t in response.json()["result"]["tools"]] == ["x_time_convert_time", "x_time_get_current_time"]
    assert "Traceback" not in gateway.log()


def initialize(gateway: GatewayProcess, version: str) -> dict:
    init = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "old", "version": "1"}}
    reply = post(gateway, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
    assert reply.json()["result"]["protocolVersion"] == version
    return {"mcp-session-id": reply.headers["mcp-session-id"], "mcp-protocol-version": version}


def test_older_versions_are_negotiated_and_unknown_ones_get_the_newest(gateway: GatewayProcess) -> None:
    for version in ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"):
        initialize(gateway, version)
    init = {"protocolVersion": "2030-01-01", "capabilities": {}, "clientInfo": {"name": "future", "version": "1"}}
    reply = post(gateway, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
    assert reply.json()["result"]["protocolVersion"] == "2025-11-25"


def test_2025_03_26_sessions_may_send_batches(gateway: GatewayProcess) -> None:
    session = initialize(gateway, "2025-03-26")
    call = {"name": "x_time_get_current_time", "arguments": {"timezone": "UTC"}}
    batch = [
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": "a", "method": "tools/list"},
        {"jsonrpc": "2.0", "id": "b", "method": "tools/call", "params": call},
        {"jsonrpc": "2.0", "id": "c", "method": "tools/nope"},
    ]
    replies = {reply["id"]: reply for reply in post(gateway, json_bytes(batch), session).json()}
    assert set(replies) == {"a", "b", "c"}
    assert len(replies["a"]["result"]["tools"]) == 2
    assert "datetime" in replies["b"]["result"]["content"][0]["text"]
    assert replies["c"]["error"]["code"] == -32601


def test_batches_are_refused_for_later_versions(gateway: GatewayProcess) -> None:
    session = initialize(gateway, "2025-11-25")
    response = post(gateway, json_bytes([{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]), session)
    assert response.status_code == 400 and "2025-03-26" in response.json()["error"]["message"]


def json_bytes(value: object) -> bytes:
    import json

    return json.dumps(value).encode()


def test_legacy_sse_message_endpoint_rejects_bad_input(gateway: GatewayProcess) -> None:
    url = f"{gateway.base}/message?session_id=nope"
    assert httpx.post(url, content=b"x" * 5000, headers={"content-type": "application/json"}).status_code == 413
    assert httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    unknown = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert unknown.status_code == 404 and "GET /sse" in unknown.json()["error"]["message"]

"""Nothing a client sends gets a 500, a traceback or a hang: each case gets a clear error."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway_process import GatewayProcess, run_gateway, run_stdio_gateway

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


TIME = {"name": "time", "type": "stdio", "command": sys.executable, "args": ["-m", "mcp_server_time"]}


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    config = {"aggregator": {"maxBodyBytes": 4096}, "mcpServers": [TIME]}
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


# -- bodies that decode but cannot be used: too deep, not UTF-8, numbers out of range -------------


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def call_body(arguments: bytes, request_id: int = 20) -> bytes:
    """A 2026-07-28 tools/call with `arguments` (JSON text) spliced in: the body nests 2 levels above them."""
    meta = json_bytes(META)
    return (
        b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"x_time_get_current_time",'
        b'"arguments":%s,"_meta":%s}}' % (request_id, arguments, meta)
    )


def legacy_message_url(gateway: GatewayProcess) -> str:
    return f"{gateway.base}/message?session_id=nope"


@contextlib.contextmanager
def sse_session(gateway: GatewayProcess) -> Iterator[tuple[str, Iterator[Any]]]:
    """A legacy HTTP+SSE client, initialized: the URL its stream names for POSTs, and the stream's messages."""
    with httpx.stream("GET", f"{gateway.base}/sse", timeout=10) as response:
        lines = response.iter_lines()
        url = gateway.base + next(line[5:].strip() for line in lines if line.startswith("data:"))
        messages = (json.loads(line[5:]) for line in lines if line.startswith("data:"))
        init = {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "old"}}
        httpx.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        assert next(messages)["id"] == 0
        yield url, messages


def post_everywhere(gateway: GatewayProcess, body: bytes) -> dict[str, httpx.Response]:
    """`body` sent to every POST endpoint: /mcp without and with a session (2025-11-25, 2025-03-26), /message."""
    return {
        "2026-07-28": post(gateway, body, stateless_headers("tools/call", "x_time_get_current_time")),
        "2025-11-25": post(gateway, body, initialize(gateway, "2025-11-25")),
        "2025-03-26 batch": post(gateway, b"[" + body + b"]", initialize(gateway, "2025-03-26")),
        "/message": httpx.post(legacy_message_url(gateway), content=body, timeout=10),
    }


def arguments_nested(depth: int) -> bytes:
    """Tool arguments that make a `call_body` nest `depth` levels deep."""
    return b'{"timezone":"UTC","x":%s}' % nested(depth - 3)


@pytest.mark.parametrize("depth", [129, 1000, 1500])
def test_json_nested_deeper_than_128_levels_is_a_parse_error_everywhere(gateway: GatewayProcess, depth: int) -> None:
    body = call_body(arguments_nested(depth))
    for where, response in post_everywhere(gateway, body).items():
        assert response.status_code == 400, (where, response.text)
        error = response.json()["error"]
        assert error["code"] == -32700 and "deeper than 128 levels" in error["message"], (where, error)
    assert "Traceback" not in gateway.log()


def test_json_nested_128_levels_deep_reaches_the_backend(gateway: GatewayProcess) -> None:
    response = post(
        gateway,
        call_body(arguments_nested(128)),
        stateless_headers("tools/call", "x_time_get_current_time"),
    )
    assert response.status_code == 200 and "datetime" in response.json()["result"]["content"][0]["text"]


@pytest.mark.parametrize(
    "body",
    [
        call_body(b'{"timezone":"UTC\xff"}'),
        call_body(b'{"timezone":"UTC","note":"caf\xc3"}'),
        call_body(b'{"timezone":"UTC"}').replace(b'"2026-07-28"', b'"2026-07-28\xed\xa0\x80"'),
        call_body(b'{"timezone":"UTC"}').replace(b'"params"', b'"unknown":"\xc0\xaf","params"'),
        call_body(b'{"timezone":"UTC"}').replace(b'"arguments"', b'"argu\xffments"'),
    ],
    ids=["tool arguments", "a truncated sequence", "_meta protocolVersion", "a member nobody reads", "a key"],
)
def test_invalid_utf8_anywhere_in_a_body_is_a_parse_error(gateway: GatewayProcess, body: bytes) -> None:
    for where, response in post_everywhere(gateway, body).items():
        assert response.status_code == 400, (where, response.text)
        error = response.json()["error"]
        assert error["code"] == -32700 and "UTF-8" in error["message"], (where, error)
    assert "Traceback" not in gateway.log()


def test_invalid_utf8_in_initialize_is_a_parse_error(gateway: GatewayProcess) -> None:
    params = b'{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"\xff"}}'
    body = b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":%s}' % params
    response = post(gateway, body)
    assert response.status_code == 400 and response.json()["error"]["code"] == -32700
    assert "Traceback" not in gateway.log()


@pytest.mark.parametrize(
    ("members", "named"),
    [
        (b'"io.modelcontextprotocol/protocolVersion":1e999999', "protocolVersion"),
        (
            b'"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/logLevel":-1e400',
            "logLevel",
        ),
    ],
)
def test_a_number_out_of_range_in_meta_is_invalid_params(gateway: GatewayProcess, members: bytes, named: str) -> None:
    meta = b'{"io.modelcontextprotocol/clientCapabilities":{},%s}' % members
    body = b'{"jsonrpc":"2.0","id":21,"method":"tools/list","params":{"_meta":%s}}' % meta
    response = post(gateway, body, stateless_headers("tools/list"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32602 and named in error["message"]
    assert "Traceback" not in gateway.log()


def test_a_tool_name_out_of_range_is_invalid_params(gateway: GatewayProcess) -> None:
    body = b'{"jsonrpc":"2.0","id":22,"method":"tools/call","params":{"name":1e999,"_meta":%s}}' % json_bytes(META)
    response = post(gateway, body, stateless_headers("tools/call", "x"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32602 and "name" in response.json()["error"]["message"]
    assert "Traceback" not in gateway.log()


@pytest.mark.parametrize(
    ("params", "named"),
    [
        (b'{"protocolVersion":1e999999,"capabilities":{},"clientInfo":{}}', "protocolVersion"),
        (b'{"protocolVersion":"2025-11-25","capabilities":{"roots":-1e400},"clientInfo":{}}', "capabilities"),
        (b'{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":1e400}}', "clientInfo"),
    ],
)
def test_a_number_out_of_range_in_initialize_is_invalid_params(
    gateway: GatewayProcess, params: bytes, named: str
) -> None:
    response = post(gateway, b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":%s}' % params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32602 and named in error["message"], error
    assert "Traceback" not in gateway.log()


@pytest.mark.parametrize("request_id", [[1, 2], {"id": 1}, None, 1.5, True])
def test_cancelled_with_a_request_id_that_is_no_id_is_accepted_and_ignored(
    gateway: GatewayProcess, request_id: object
) -> None:
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}
    assert post(gateway, cancel, initialize(gateway, "2025-11-25")).status_code == 202
    batch = [cancel, {"jsonrpc": "2.0", "id": "after", "method": "tools/list"}]
    replies = post(gateway, json_bytes(batch), initialize(gateway, "2025-03-26")).json()
    assert [reply["id"] for reply in replies] == ["after"]
    with sse_session(gateway) as (url, events):
        assert httpx.post(url, json=cancel).status_code == 202
        assert httpx.post(url, json={"jsonrpc": "2.0", "id": "next", "method": "ping"}).status_code == 202
        assert next(events)["id"] == "next"
    assert "Traceback" not in gateway.log()


def test_stdio_answers_each_bad_line_with_a_parse_error_and_goes_on() -> None:
    deep_params = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":%s}}' % nested(129)
    bad_lines = [b"{not json", nested(1000), deep_params, b'{"jsonrpc":"2.0","id":2,"method":"tools/list\xff"}']
    following = json_bytes({"jsonrpc": "2.0", "id": "next", "method": "tools/list", "params": {"_meta": META}})
    with run_stdio_gateway({"mcpServers": [TIME]}) as gateway:
        for line in bad_lines:
            gateway.send(line)
            gateway.send(following)
            answers = gateway.lines_until_answer("next", timeout=30)
            assert answers, f"no answer after {line[:40]!r}:\n{gateway.log()[-3000:]}"
            assert json.loads(answers[0])["error"]["code"] == -32700, answers
            assert "result" in json.loads(answers[-1])
        assert "Traceback" not in gateway.log()


def test_a_cursor_that_decodes_to_deeply_nested_json_is_an_invalid_cursor(gateway: GatewayProcess) -> None:
    import base64

    cursor = base64.urlsafe_b64encode(nested(1000)).decode()
    body = {"jsonrpc": "2.0", "id": 23, "method": "tools/list", "params": {"cursor": cursor, "_meta": META}}
    response = post(gateway, body, stateless_headers("tools/list"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32602 and "Invalid cursor" in error["message"]
    assert "Traceback" not in gateway.log()

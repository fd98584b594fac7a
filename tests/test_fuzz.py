"""Fuzzing every client-facing endpoint with damaged messages and headers (seeded: the same cases each run).

Invariants, for every case: no 5xx; a POST is answered with valid JSON-RPC (an error, a result
or a batch of them), an empty 202, or an event stream whose events are JSON-RPC; nothing in
the gateway's log is a traceback; and afterwards a normal tools/call still works. The stdio
front end answers each bad line with an error and goes on. `FUZZ_SCALE=20` runs 20 times the
cases (a longer local run); the default keeps the suite's share under 30 s.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from shared.protocol.vocabulary import NAMED_METHODS
from tests.gateway_process import GatewayProcess, StdioGatewayProcess, run_gateway, run_stdio_gateway
from tests.mutator import Headers, Mutator

SEED = int(os.environ.get("FUZZ_SEED", "20261202"))
SCALE = int(os.environ.get("FUZZ_SCALE", "1"))
MODERN = "2026-07-28"
PV, CAPS = "io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientCapabilities"
META = {PV: MODERN, CAPS: {}}
TOOL = "x_time_get_current_time"
TIME = {"name": "time", "type": "stdio", "command": sys.executable, "args": ["-m", "mcp_server_time"], "timeout": 5}
JSON_HEADERS: Headers = [("content-type", "application/json"), ("accept", "application/json, text/event-stream")]


def request(method: str, params: dict[str, Any] | None = None, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


CALL = {"name": TOOL, "arguments": {"timezone": "UTC"}}
MODERN_SEEDS = [
    request("tools/list", {"_meta": META}),
    request("tools/call", {**CALL, "_meta": META}, id="call-1"),
    request(
        "tools/call",
        {
            "name": "x_time_convert_time",
            "arguments": {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Europe/Paris"},
            "_meta": META,
        },
    ),
    request("prompts/list", {"_meta": META}),
    request("resources/list", {"cursor": "eyJrIjoidG9vbHMiLCJvIjoxfQ", "_meta": META}),
    request("resources/read", {"uri": "time://nothing", "_meta": META}),
    request("server/discover", {"_meta": META}),
    request("subscriptions/listen", {"notifications": {"toolsListChanged": True}, "_meta": META}, id="listen"),
    request(
        "completion/complete",
        {"ref": {"type": "ref/prompt", "name": "p"}, "argument": {"name": "a", "value": ""}, "_meta": META},
    ),
    notification("notifications/cancelled", {"requestId": "call-1", "reason": "fuzz"}),
    request(
        "tools/call", {**CALL, "requestState": "e30.c2ln", "inputResponses": {"q": {"action": "accept"}}, "_meta": META}
    ),
    request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "f"}}),
    {"jsonrpc": "2.0", "id": "gw-x-1", "result": {}},
]
SESSION_SEEDS = [
    request("tools/list"),
    request("tools/call", CALL, id="call-2"),
    request("ping", {}),
    request("prompts/list", {"cursor": "nope"}),
    request("logging/setLevel", {"level": "debug"}),
    request("resources/subscribe", {"uri": "time://x"}),
    request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {"roots": {}}, "clientInfo": {}}),
    notification("notifications/initialized", {}),
    notification("notifications/cancelled", {"requestId": "call-2", "reason": "fuzz"}),
    notification("notifications/cancelled", {"requestId": 7}),
    notification("notifications/progress", {"progressToken": 1, "progress": 1}),
    {"jsonrpc": "2.0", "id": "gw-x-1", "result": {"content": []}},
    {"jsonrpc": "2.0", "id": 5, "error": {"code": -1, "message": "no"}},
]
ALTERNATIVES = {
    "content-type": ["text/plain", "application/json; charset=utf-8", "APPLICATION/JSON", "application/jsonx", ""],
    "accept": ["text/html", "*/*", "application/json", "text/event-stream", ""],
    "mcp-protocol-version": ["2025-11-25", "2025-03-26", "1999-01-01", MODERN, "garbage"],
    "mcp-method": ["tools/list", "tools/call", "initialize", "x"],
    "mcp-name": [TOOL, "x_time_convert_time", "=?base64?" + base64.b64encode(TOOL.encode()).decode() + "?="],
    "mcp-session-id": ["nope", "", "a" * 200],
}


@dataclass
class Findings:
    """Cases that broke an invariant, grouped by what broke, each group with its shortest case."""

    causes: dict[str, tuple[int, str]] = field(default_factory=dict)
    sent: int = 0

    def add(self, what: str, sent: object, detail: str) -> None:
        key = f"{what}: {detail[:120]}"
        count, example = self.causes.get(key, (0, ""))
        shown = repr(sent)[:600]
        self.causes[key] = (count + 1, shown if not example or len(shown) < len(example) else example)

    def report(self) -> str:
        lines = [f"{sum(count for count, _ in self.causes.values())} of {self.sent} cases broke an invariant:"]
        for key, (count, example) in self.causes.items():
            lines.append(f"{count} x {key}\n    e.g. {example}")
        return "\n".join(lines)


class LogWatch:
    """New tracebacks in a log file since the last look."""

    def __init__(self, read: Any) -> None:
        self.read = read
        self.seen = read().count("Traceback")

    def new_tracebacks(self) -> str | None:
        text = self.read()
        count = text.count("Traceback")
        if count == self.seen:
            return None
        self.seen = count
        tail = text[text.rfind("Traceback") :].strip().splitlines()
        return tail[-1] if tail else "Traceback"


def check_json_rpc(payload: bytes) -> str | None:
    """Why `payload` is not JSON-RPC (a response, a batch of them, or a message on a stream); None if it is."""
    try:
        decoded = json.loads(payload, parse_constant=_refuse)
    except ValueError as exc:
        return f"not JSON ({exc}): {payload[:200]!r}"
    for item in decoded if isinstance(decoded, list) and decoded else [decoded]:
        response = isinstance(item, dict) and ("result" in item) != ("error" in item)
        if not (isinstance(item, dict) and item.get("jsonrpc") == "2.0" and (response or "method" in item)):
            return f"not a JSON-RPC message: {payload[:200]!r}"
    return None


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def sse_data(lines: Iterator[str], limit: int) -> Iterator[str]:
    """The data of up to `limit` events of an event stream."""
    if limit == 0:
        return
    for line in lines:
        if line.startswith("data:"):
            yield line[5:].strip()
            limit -= 1
            if limit == 0:
                return


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    with run_gateway({"mcpServers": [TIME]}) as process:
        yield process


class HttpFuzz:
    def __init__(self, gateway: GatewayProcess, client: httpx.Client, seed: int) -> None:
        self.gateway = gateway
        self.client = client
        self.mutate = Mutator(seed)
        self.findings = Findings()
        self.log = LogWatch(gateway.log)

    def send(self, what: str, method: str, url: str, headers: Headers, body: bytes = b"") -> None:
        self.findings.sent += 1
        sent = (method, url, headers, body)
        try:
            with self.client.stream(method, url, headers=headers, content=body or None) as response:
                problem = self._check(method, response)
        except httpx.LocalProtocolError:
            self.findings.sent -= 1  # httpx itself refuses to send it (e.g. a header it cannot encode)
            return
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        traceback = self.log.new_tracebacks()
        if traceback is not None:
            problem = f"{problem or 'answered'}; traceback in the gateway log: {traceback}"
        if problem is not None:
            self.findings.add(what, sent, problem)

    def _check(self, method: str, response: httpx.Response) -> str | None:
        if response.status_code >= 500:
            response.read()
            return f"HTTP {response.status_code}: {response.text[:300]}"
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("text/event-stream"):
            for data in sse_data(response.iter_lines(), 1 if method == "POST" else 0):
                if (problem := check_json_rpc(data.encode())) is not None:
                    return f"event: {problem}"
            return None
        payload = response.read()
        if method != "POST" or (response.status_code == 202 and not payload):
            return None
        return check_json_rpc(payload)

    # -- endpoints ------------------------------------------------------------------------------

    def modern_post(self) -> None:
        seed = self.mutate.choice(MODERN_SEEDS)
        headers = [*JSON_HEADERS, ("mcp-protocol-version", MODERN), ("mcp-method", seed.get("method", ""))]
        if (key := NAMED_METHODS.get(seed.get("method", ""))) is not None:
            headers.append(("mcp-name", seed["params"][key]))
        body = self.mutate.body(seed, batch_with=MODERN_SEEDS)
        self.send("POST /mcp (2026-07-28)", "POST", self.gateway.url, self.mutate.headers(headers, ALTERNATIVES), body)

    def session_post(self, session: str, version: str) -> None:
        headers = [*JSON_HEADERS, ("mcp-session-id", session), ("mcp-protocol-version", version)]
        body = self.mutate.body(self.mutate.choice(SESSION_SEEDS), batch_with=SESSION_SEEDS)
        self.send(f"POST /mcp ({version})", "POST", self.gateway.url, self.mutate.headers(headers, ALTERNATIVES), body)

    def get_or_delete(self, method: str, session: str) -> None:
        headers: Headers = [("accept", "text/event-stream"), ("mcp-session-id", session)]
        self.send(f"{method} /mcp", method, self.gateway.url, self.mutate.headers(headers, ALTERNATIVES))

    def legacy_message(self, endpoint: str) -> None:
        url = self.gateway.base + (
            endpoint
            if self.mutate.chance(0.9)
            else self.mutate.choice(
                ["/message", "/message?session_id=", "/message?session_id=nope", "/message?session_id=%ff%fe"]
            )
        )
        body = self.mutate.body(self.mutate.choice(SESSION_SEEDS))
        headers = self.mutate.headers([("content-type", "application/json")], ALTERNATIVES)
        self.send("POST /message", "POST", url, headers, body)

    def open_sse(self) -> None:
        query = self.mutate.choice(["", "?session_id=x", "?%ff=%fe", "?" + "a" * 3000])
        headers = self.mutate.headers([("accept", "text/event-stream")], ALTERNATIVES)
        self.send("GET /sse", "GET", self.gateway.base + "/sse" + query, headers)


def initialize(client: httpx.Client, url: str, version: str) -> str:
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}}
    reply = client.post(url, json=request("initialize", params, id=0), headers=dict(JSON_HEADERS))
    session = reply.headers["mcp-session-id"]
    headers = {**dict(JSON_HEADERS), "mcp-session-id": session, "mcp-protocol-version": version}
    client.post(url, json=notification("notifications/initialized", {}), headers=headers)
    return session


class LegacyStream:
    """A legacy SSE client's stream, read in a thread: every event it carries must be JSON-RPC."""

    def __init__(self, base: str, findings: Findings) -> None:
        self.base = base
        self.findings = findings
        self.endpoint: str | None = None
        self.ready = threading.Event()
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self.thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> LegacyStream:
        self.thread.start()
        assert self.ready.wait(10), "GET /sse gave no endpoint event"
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()  # ends the stream; the reader thread sees the connection close
        self.thread.join(5)

    def _read(self) -> None:
        stream = self.client.stream("GET", f"{self.base}/sse")
        with contextlib.suppress(httpx.HTTPError, RuntimeError), stream as response:
            event = ""
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "endpoint":
                    self.endpoint = line[5:].strip()
                    self.ready.set()
                elif line.startswith("data:") and (problem := check_json_rpc(line[5:].strip().encode())):
                    self.findings.add("GET /sse event", line[:200], problem)


def alive(gateway: GatewayProcess) -> None:
    gateway.wait_for(lambda r: r["backends"]["time"]["state"] == "up", what="the time backend up again")
    headers = {**dict(JSON_HEADERS), "mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": TOOL}
    reply = httpx.post(gateway.url, json=request("tools/call", {**CALL, "_meta": META}), headers=headers, timeout=10)
    assert reply.status_code == 200 and "datetime" in reply.json()["result"]["content"][0]["text"], reply.text


def test_http_endpoints_answer_every_damaged_request_with_a_clear_error(gateway: GatewayProcess) -> None:
    with httpx.Client(timeout=httpx.Timeout(10)) as client:
        fuzz = HttpFuzz(gateway, client, SEED)
        sessions = {version: initialize(client, gateway.url, version) for version in ("2025-11-25", "2025-03-26")}
        with LegacyStream(gateway.base, fuzz.findings) as stream:
            assert stream.endpoint is not None
            init = request("initialize", {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {}})
            client.post(gateway.base + stream.endpoint, json=init)
            for _ in range(600 * SCALE):
                fuzz.modern_post()
            for _ in range(300 * SCALE):
                fuzz.session_post(sessions["2025-11-25"], "2025-11-25")
                fuzz.session_post(sessions["2025-03-26"], "2025-03-26")
            for _ in range(300 * SCALE):
                fuzz.legacy_message(stream.endpoint)
            for _ in range(40 * SCALE):
                fuzz.get_or_delete("GET", fuzz.mutate.choice([*sessions.values(), "nope"]))
                fuzz.open_sse()
            for _ in range(40 * SCALE):
                fuzz.get_or_delete("DELETE", initialize(client, gateway.url, "2025-11-25"))
        time.sleep(0.2)  # answers to the last legacy messages travel on the stream
    assert not fuzz.findings.causes, fuzz.findings.report()
    alive(gateway)
    assert "Traceback" not in gateway.log()


# -- stdio --------------------------------------------------------------------------------------


@pytest.fixture
def stdio_gateway() -> Iterator[StdioGatewayProcess]:
    with run_stdio_gateway({"mcpServers": [TIME]}) as gateway:
        yield gateway


def test_stdio_front_end_answers_every_damaged_line_and_goes_on(stdio_gateway: StdioGatewayProcess) -> None:
    mutate = Mutator(SEED + 1)
    findings = Findings()
    log = LogWatch(stdio_gateway.log)
    ping = request("tools/list", {"_meta": META})
    stdio_gateway.send(json.dumps({**ping, "id": "ready"}).encode())
    assert stdio_gateway.lines_until_answer("ready", timeout=30), "the stdio gateway did not answer"
    for number in range(400 * SCALE):
        body = mutate.body(mutate.choice([*MODERN_SEEDS, *SESSION_SEEDS]))
        findings.sent += 1
        stdio_gateway.send(body)
        sentinel = f"sentinel-{number}"
        stdio_gateway.send(json.dumps({**ping, "id": sentinel}).encode())
        lines = stdio_gateway.lines_until_answer(sentinel)
        if not lines:
            findings.add("stdio", body, f"no answer to the next request (exit code {stdio_gateway.process.poll()})")
            break
        for line in lines:
            if (problem := check_json_rpc(line)) is not None:
                findings.add("stdio", body, problem)
        if (traceback := log.new_tracebacks()) is not None:
            findings.add("stdio", body, f"traceback on stderr: {traceback}")
    assert not findings.causes, findings.report()
    stdio_gateway.send(json.dumps(request("tools/call", {**CALL, "_meta": META}, id="last")).encode())
    last = stdio_gateway.lines_until_answer("last")
    assert last and b"datetime" in last[-1], last
    assert "Traceback" not in stdio_gateway.log()

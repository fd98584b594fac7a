"""Locust users for the gateway, over plain HTTP as clients send it.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080

Two kinds of user, mixed by weight:
- StatelessUser speaks 2026-07-28: every request carries its `_meta` and Mcp-* headers.
- SessionUser speaks 2025-11-25: initialize, then requests with Mcp-Session-Id, DELETE at the end.

Each lists tools, calls MCP_TOOL with MCP_TOOL_ARGS (JSON) and, if MCP_RESOURCE is set, reads it.
Defaults fit the example config (`x_time_get_current_time`). A response without a JSON-RPC
`result` counts as a failure.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

from locust import HttpUser, between, task

TOOL = os.environ.get("MCP_TOOL", "x_time_get_current_time")
TOOL_ARGS = json.loads(os.environ.get("MCP_TOOL_ARGS", '{"timezone": "UTC"}'))
RESOURCE = os.environ.get("MCP_RESOURCE")
PATH = os.environ.get("MCP_PATH", "/mcp")
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
_ids = itertools.count(1)


class _McpUser(HttpUser):
    abstract = True
    wait_time = between(0.0, 0.05)

    def rpc(self, method: str, params: dict[str, Any], headers: dict[str, str], name: str) -> dict[str, Any] | None:
        body = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}
        base = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        with self.client.post(PATH, json=body, headers={**base, **headers}, name=name, catch_response=True) as reply:
            try:
                payload = _json_or_sse(reply.text)
            except ValueError:
                reply.failure(f"HTTP {reply.status_code}: not JSON-RPC")
                return None
            if "result" not in payload:
                reply.failure(f"HTTP {reply.status_code}: {payload.get('error')}")
                return None
            reply.success()
            self.last_headers = reply.headers
            return payload["result"]

    def flow(self) -> None:
        self.call("tools/list", {})
        self.call("tools/call", {"name": TOOL, "arguments": TOOL_ARGS})
        if RESOURCE:
            self.call("resources/read", {"uri": RESOURCE})

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError


class StatelessUser(_McpUser):
    """2026-07-28: no handshake; each request names its version and capabilities."""

    weight = 1

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "locust", "version": "1"},
        }
        headers = {"mcp-protocol-version": MODERN, "mcp-method": method}
        name = params.get("name") or params.get("uri")
        if name:
            headers["mcp-name"] = name
        return self.rpc(method, {**params, "_meta": meta}, headers, f"2026 {method}")

    @task
    def use(self) -> None:
        self.flow()


class SessionUser(_McpUser):
    """2025-11-25: one session per simulated user, served by whichever replica gets each request."""

    weight = 1
    session_id: str | None = None

    def on_start(self) -> None:
        params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "locust", "version": "1"}}
        if self.rpc("initialize", params, {}, "2025 initialize") is None:
            return
        self.session_id = self.last_headers.get("mcp-session-id")
        self.client.post(
            PATH,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=self._headers(),
            name="2025 initialized",
        )

    def on_stop(self) -> None:
        if self.session_id:
            self.client.delete(PATH, headers=self._headers(), name="2025 DELETE session")

    def _headers(self) -> dict[str, str]:
        headers = {
            "mcp-protocol-version": LEGACY,
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
        }
        if self.session_id:
            headers["mcp-session-id"] = self.session_id
        return headers

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        headers = {"mcp-protocol-version": LEGACY, "mcp-session-id": self.session_id or ""}
        return self.rpc(method, params, headers, f"2025 {method}")

    @task
    def use(self) -> None:
        if self.session_id:
            self.flow()


def _json_or_sse(text: str) -> dict[str, Any]:
    """The JSON-RPC response in a body that is JSON, or SSE whose last data line is the response."""
    text = text.strip()
    if text.startswith("{"):
        return json.loads(text)
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    for line in reversed(data):
        message = json.loads(line)
        if "result" in message or "error" in message:
            return message
    raise ValueError("no JSON-RPC response in the body")

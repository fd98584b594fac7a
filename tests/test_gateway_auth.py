"""The gateway protected by OAuth, end to end: a real authorization server, a real gateway, SDK clients.

The authorization server is the testbed's (`tests.servers.auth_server`, auto-approving, alice
and bob); the gateway requires its tokens with the scope `mcp` and serves a toolbox over stdio.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client

from tests.gateway_process import GatewayProcess, run_gateway
from tests.oauth_flows import connected, sign_in
from tests.servers.launch import RunningServer, run_http_server
from tests.servers.oauth_browser import Browser, MemoryTokenStorage, client_metadata

TOOLBOX = {"name": "tb", "type": "stdio", "command": sys.executable, "args": ["-m", "tests.servers.toolbox"]}
ERAS = ["legacy", "2026-07-28"]


@pytest.fixture(scope="module")
def idp() -> Iterator[RunningServer]:
    with run_http_server("tests.servers.auth_server", "--issuer-name", "corp") as server:
        yield server


@pytest.fixture(scope="module")
def gateway(idp: RunningServer) -> Iterator[GatewayProcess]:
    config = {
        "aggregator": {"oauth": {"issuer": idp.url, "requiredScopes": ["mcp"]}},
        "mcpServers": [TOOLBOX],
        "workflows": [{"name": "hello", "steps": [{"id": "say", "tool": "x_tb_echo", "args": {"text": "hi"}}]}],
    }
    with run_gateway(config) as process:
        yield process


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def token_for(http: httpx.AsyncClient, idp: RunningServer, gateway: GatewayProcess, **options: Any) -> str:
    user = options.pop("user", "alice")
    options.setdefault("resource", gateway.url)
    options.setdefault("scope", "mcp")
    return str((await sign_in(http, idp.url, user=user, **options))["access_token"])


def initialize_body() -> dict[str, Any]:
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    return {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}


HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


async def test_without_a_token_every_mcp_endpoint_answers_401_pointing_at_the_metadata(
    gateway: GatewayProcess, http: httpx.AsyncClient
) -> None:
    metadata_url = f"{gateway.base}/.well-known/oauth-protected-resource/mcp"
    for method, path in (("POST", "/mcp"), ("GET", "/mcp"), ("GET", "/sse"), ("POST", "/message")):
        response = await http.request(method, f"{gateway.base}{path}", json=initialize_body(), headers=HEADERS)
        assert response.status_code == 401, (method, path, response.text)
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
        assert f'resource_metadata="{metadata_url}"' in challenge
        assert response.json()["error"]["code"] == -32600
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert (await http.get(f"{gateway.base}{open_path}")).status_code == 200


async def test_the_protected_resource_metadata_names_the_audience_and_the_issuer(
    gateway: GatewayProcess, idp: RunningServer, http: httpx.AsyncClient
) -> None:
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        metadata = (await http.get(f"{gateway.base}{path}")).json()
        assert metadata["resource"] == gateway.url
        assert metadata["authorization_servers"] == [idp.url]
        assert metadata["scopes_supported"] == ["mcp"]


async def test_a_token_for_another_audience_or_without_the_scope_is_refused(
    gateway: GatewayProcess, idp: RunningServer, http: httpx.AsyncClient
) -> None:
    elsewhere = await token_for(http, idp, gateway, resource="https://other.example/mcp")
    response = await http.post(
        gateway.url, json=initialize_body(), headers={**HEADERS, "authorization": f"Bearer {elsewhere}"}
    )
    assert response.status_code == 401 and "not for this gateway" in response.headers["www-authenticate"]
    narrow = await token_for(http, idp, gateway, scope="other")
    response = await http.post(
        gateway.url, json=initialize_body(), headers={**HEADERS, "authorization": f"Bearer {narrow}"}
    )
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert 'scope="mcp"' in response.headers["www-authenticate"]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_client_with_a_valid_token_is_served(
    gateway: GatewayProcess, idp: RunningServer, http: httpx.AsyncClient, mode: str
) -> None:
    token = await token_for(http, idp, gateway)
    async with connected(gateway.url, token, mode) as client:
        result = await client.call_tool("x_tb_echo", {"text": "signed in"})
    assert result.content[0].text == "signed in"  # type: ignore[union-attr]


async def test_a_session_presented_by_another_user_is_not_found(
    gateway: GatewayProcess, idp: RunningServer, http: httpx.AsyncClient
) -> None:
    alice, bob = await token_for(http, idp, gateway), await token_for(http, idp, gateway, user="bob")
    created = await http.post(
        gateway.url, json=initialize_body(), headers={**HEADERS, "authorization": f"Bearer {alice}"}
    )
    session = created.headers["mcp-session-id"]
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    as_bob = {**HEADERS, "authorization": f"Bearer {bob}", "mcp-session-id": session}
    assert (await http.post(gateway.url, json=ping, headers=as_bob)).status_code == 404
    assert (await http.get(gateway.url, headers={**as_bob, "accept": "text/event-stream"})).status_code == 404
    assert (await http.delete(gateway.url, headers=as_bob)).status_code == 404
    as_alice = {**HEADERS, "authorization": f"Bearer {alice}", "mcp-session-id": session}
    assert (await http.post(gateway.url, json=ping, headers=as_alice)).status_code == 200


async def test_a_workflow_run_is_read_back_only_by_who_ran_it(
    gateway: GatewayProcess, idp: RunningServer, http: httpx.AsyncClient
) -> None:
    alice, bob = await token_for(http, idp, gateway), await token_for(http, idp, gateway, user="bob")
    async with connected(gateway.url, alice, "2026-07-28") as client:
        run = (await client.call_tool("workflow_hello", {})).structured_content or {}
        assert run["status"] == "ok" and run["subject"] == "alice"
        assert (await client.call_tool("core_workflow_execution_get", {"id": run["id"]})).structured_content == run
    async with connected(gateway.url, bob, "legacy") as client:
        with pytest.raises(MCPError, match="Unknown workflow execution"):
            await client.call_tool("core_workflow_execution_get", {"id": run["id"]})
        listed = await client.call_tool("core_workflow_execution_list", {"name": "hello"})
        assert run["id"] not in [item["id"] for item in (listed.structured_content or {})["executions"]]


@pytest.mark.parametrize("mode", ERAS)
async def test_the_sdk_oauth_client_finds_its_way_in_unaided(gateway: GatewayProcess, mode: str) -> None:
    browser = Browser(login_hint="bob")
    provider = OAuthClientProvider(
        gateway.url,
        client_metadata(scope="mcp"),
        MemoryTokenStorage(),
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )
    async with (
        httpx2.AsyncClient(auth=provider, timeout=10) as http,
        Client(streamable_http_client(gateway.url, http_client=http), mode=mode) as client,
    ):
        result = await client.call_tool("x_tb_whoami", {})
    assert not result.is_error
    assert browser.visited and "resource=" in browser.visited[0]  # discovered, registered, signed in with PKCE


def test_tokens_never_reach_the_log(gateway: GatewayProcess) -> None:
    log = gateway.log()
    assert "eyJ" not in log  # no JWT (header.payload.signature) anywhere

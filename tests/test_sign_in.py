"""SignIn and UserBackends in process: the sign-in tools, the callback's refusals, a user's records.

Real parts on loopback: an authorization server (S) and a backend it protects (`web`); the
gateway's side runs in this process on the memory stores, without its HTTP front end.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from aggregator.auth.principal import Principal
from aggregator.auth.sign_in import SignIn
from aggregator.auth.user_auth import UserAuth
from aggregator.auth.user_backends import UserBackends
from aggregator.registry import ServerRegistry
from shared.config import parse_config
from shared.pool import SessionConnectionPool
from shared.store.memory import MemoryStores
from shared.telemetry import Telemetry
from tests.servers.launch import RunningServer, run_http_server

GATEWAY = "http://gateway.test:8090"
ALICE = Principal(subject="alice", token="the-gateway-token")


@dataclass
class Servers:
    s: RunningServer
    web: RunningServer


@dataclass
class Parts:
    sign_in: SignIn
    users: UserBackends
    stores: MemoryStores
    http: httpx.AsyncClient


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with (
        run_http_server("tests.servers.auth_server", "--issuer-name", "saas") as s,
        run_http_server("tests.servers.protected", "--issuer", s.url, "--name", "web") as web,
    ):
        yield Servers(s, web)


@pytest.fixture
async def parts(servers: Servers) -> AsyncIterator[Parts]:
    config = parse_config(
        json.dumps(
            {
                "aggregator": {"publicUrl": GATEWAY, "oauth": {"issuer": "https://idp.test"}},
                "mcpServers": [
                    {"name": "web", "type": "streamable-http", "url": servers.web.url, "auth": {"type": "oauth"}},
                    {"name": "fwd", "type": "streamable-http", "url": servers.web.url, "auth": {"forwardToken": True}},
                ],
            }
        )
    )
    specs = {spec.name: spec for spec in config.mcp_servers}
    stores = MemoryStores()
    pool = SessionConnectionPool(specs)
    registry = ServerRegistry(config.aggregator, config.mcp_servers)
    auth = await UserAuth.open(
        specs, config.aggregator, registry=registry, pool=pool, stores=stores, telemetry=Telemetry()
    )
    try:
        yield Parts(auth.sign_in, auth.users, stores, auth.http)
    finally:
        await pool.drain_all()
        await auth.aclose()
        await stores.aclose()


def text(result: dict[str, Any]) -> str:
    return "".join(part["text"] for part in result["content"])


async def login(parts: Parts) -> tuple[str, dict[str, str]]:
    """core_auth_login for web as alice: the URL it answers, and that URL's query."""
    result = await parts.sign_in.call("core_auth_login", ALICE, {"server": "web"})
    assert not result.get("isError"), text(result)
    url = result["structuredContent"]["authorizationUrl"]
    assert url in text(result)  # the URL is in the text too, for clients that show only text
    return url, {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


async def test_login_answers_a_code_flow_url_with_pkce_the_backends_resource_and_the_public_callback(
    parts: Parts, servers: Servers
) -> None:
    url, query = await login(parts)
    assert url.startswith(f"{servers.s.url}/authorize?")
    assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43 and len(query["state"]) >= 32
    assert query["redirect_uri"] == f"{GATEWAY}/oauth/callback"
    assert query["resource"] == servers.web.url


async def test_the_callback_signs_the_user_in_and_connects_them_to_the_backend(parts: Parts, servers: Servers) -> None:
    url, _ = await login(parts)
    approved = await parts.http.get(f"{url}&login_hint=alice")
    assert approved.status_code == 302, approved.text
    answer = {key: values[0] for key, values in parse_qs(urlsplit(approved.headers["location"]).query).items()}
    status, page = await parts.sign_in.callback(answer)
    assert status == 200 and "Signed in to web" in page
    catalog = await parts.users.view(ALICE)  # loaded from the store, as any replica would
    assert "x_web_whoami" in catalog.tool_routes
    record = parts.users.records_of("alice")["web"]
    assert record.state == "up" and "whoami" in [tool["name"] for tool in record.tools]
    assert await parts.sign_in.vault.get("alice", "web") is not None
    body = json.loads(msgspec_text(await parts.sign_in.status(ALICE)))
    assert {entry["name"]: entry["status"] for entry in body["servers"]}["web"] == "connected"
    metrics = await parts.stores.auth_metrics.server("web")
    assert metrics is not None and (metrics.login_attempts, metrics.login_successes) == (1, 1)


def msgspec_text(raw: Any) -> str:
    return str(json.loads(bytes(raw))["contents"][0]["text"])


async def test_an_identity_providers_refusal_is_shown_and_counted_as_a_failure(parts: Parts) -> None:
    _, query = await login(parts)
    refusal = {"state": query["state"], "error": "access_denied", "error_description": "the user said no"}
    status, page = await parts.sign_in.callback(refusal)
    assert status == 400 and "Signing in to web was refused" in page and "the user said no" in page
    metrics = await parts.stores.auth_metrics.server("web")
    assert metrics is not None and metrics.login_failures == 1
    assert parts.users.records_of("alice") == {}


async def test_an_answer_naming_another_issuer_is_refused(parts: Parts) -> None:
    _, query = await login(parts)
    status, page = await parts.sign_in.callback({"state": query["state"], "code": "x", "iss": "https://evil.test"})
    assert status == 400 and "came from another server" in page


async def test_an_error_page_escapes_what_the_identity_provider_sent(parts: Parts) -> None:
    _, query = await login(parts)
    status, page = await parts.sign_in.callback(
        {"state": query["state"], "error": "x", "error_description": "<script>alert(1)</script>"}
    )
    assert status == 400 and "<script>" not in page and "&lt;script&gt;" in page


@pytest.mark.parametrize(
    ("arguments", "principal", "expected"),
    [
        (
            {"server": "nope"},
            ALICE,
            "'nope' is not a backend you sign in to; the ones that take your account: fwd, web",
        ),
        ({}, ALICE, "None is not a backend you sign in to"),
        ({"server": "web"}, None, "needs a gateway protected by OAuth (aggregator.oauth)"),
    ],
)
async def test_login_refuses_what_it_cannot_do_and_says_why(
    parts: Parts, arguments: dict[str, Any], principal: Principal | None, expected: str
) -> None:
    result = await parts.sign_in.call("core_auth_login", principal, arguments)
    assert result.get("isError") and expected in text(result)


async def test_a_single_sign_on_backend_needs_no_sign_in(parts: Parts) -> None:
    result = await parts.sign_in.call("core_auth_login", ALICE, {"server": "fwd"})
    assert not result.get("isError") and "single sign-on" in text(result)

"""Per-user protected backends on a cluster: two replicas behind haproxy, Redis, a worker.

Real parts on loopback: the gateway's authorization server G (users alice and bob); a second one,
X, that exchanges G's tokens (RFC 8693) for its own; a third, S, where users sign in by the code
flow. Three protected backends (the SDK's own bearer auth): `fwd` accepts G's tokens for the
gateway's audience (token forwarding), `xch` accepts X's tokens (token exchange), `web` accepts
S's tokens (sign-in with core_auth_login). Clients are the official SDK, presenting G's tokens.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from loadtest.cluster import LocalCluster
from tests.oauth_flows import connected, sign_in, stats
from tests.ports import free_port
from tests.servers.launch import RunningServer, run_http_server

AUDIENCE = "https://gateway.test/mcp"
EXCHANGE = ("gateway", "exchange-secret")
ADMIN = "an-admin-token"
USERS = [arg for user in ("alice", "bob", "carol", "dave", "erin", "frank") for arg in ("--user", user)]
"""Each test that counts or changes a user's sign-ins has a user of its own (the bed lives for the module)."""
TOKEN_KEY = "a-test-key-of-more-than-thirty-two-characters"
SECRETS: set[str] = {EXCHANGE[1], TOKEN_KEY}
"""Secrets the tests handled besides JWTs (authorization codes, sign-in states): no log may hold one."""


class Bed:
    def __init__(self, cluster: LocalCluster, g: RunningServer, x: RunningServer, s: RunningServer) -> None:
        self.cluster, self.g, self.x, self.s = cluster, g, x, s

    @property
    def url(self) -> str:
        return self.cluster.url

    def replica(self, index: int) -> str:
        return f"{self.cluster.replica_url(index)}/mcp"


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    auth, protected = "tests.servers.auth_server", "tests.servers.protected"
    with (
        run_http_server(auth, "--issuer-name", "corp", *USERS) as g,
        run_http_server(auth, "--issuer-name", "exchange", "--trust", g.url, "--client", ":".join(EXCHANGE)) as x,
        run_http_server(auth, "--issuer-name", "saas", *USERS) as s,
        run_http_server(protected, "--issuer", g.url, "--audience", AUDIENCE, "--name", "fwd") as fwd,
        run_http_server(protected, "--issuer", x.url, "--name", "xch") as xch,
        run_http_server(protected, "--issuer", s.url, "--name", "web") as web,
    ):
        port = free_port()
        config = {
            "aggregator": {
                "publicUrl": f"http://127.0.0.1:{port}",
                "oauth": {"issuer": g.url, "audience": AUDIENCE},
                "healthCheckInterval": 2,
            },
            "mcpServers": [
                {"name": "fwd", "type": "streamable-http", "url": fwd.url, "auth": {"forwardToken": True}},
                {
                    "name": "xch",
                    "type": "streamable-http",
                    "url": xch.url,
                    "auth": {
                        "tokenExchange": {
                            "tokenEndpoint": f"{x.url}/token",
                            "audience": xch.url,
                            "clientId": EXCHANGE[0],
                            "clientSecretEnv": "XCH_SECRET",
                        }
                    },
                },
                {"name": "web", "type": "streamable-http", "url": web.url, "auth": {"type": "oauth"}},
            ],
        }
        env = {
            "XCH_SECRET": EXCHANGE[1],
            "AGGREGATOR_TOKEN_KEY": TOKEN_KEY,
            "AGGREGATOR_ADMIN_TOKEN": ADMIN,
        }
        with LocalCluster(
            config, replicas=2, workers=1, port=port, env=env, expect_up=(), log_level="debug"
        ) as cluster:
            yield Bed(cluster, g, x, s)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15) as client:
        yield client


async def token(http: httpx.AsyncClient, bed: Bed, user: str) -> str:
    return str((await sign_in(http, bed.g.url, user=user, resource=AUDIENCE))["access_token"])


def text(result: Any) -> str:
    return "".join(part.text for part in result.content if getattr(part, "text", None))


async def names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


async def shows(client: Client, tool: str, failure: str, *, present: bool = True, within: float = 5.0) -> None:
    """Wait until `client`'s tool list has (or, with present=False, lacks) `tool`."""
    deadline = time.monotonic() + within
    while (tool in await names(client)) != present:
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.2)


async def whoami(client: Client, server: str) -> dict[str, Any]:
    result = await client.call_tool(f"x_{server}_whoami", {})
    assert not result.is_error, text(result)
    return dict(result.structured_content or json.loads(text(result)))


async def test_protected_backends_are_announced_as_needing_users_tokens(bed: Bed, http: httpx.AsyncClient) -> None:
    for index in range(2):
        body = (await http.get(f"{bed.cluster.replica_url(index)}/readyz")).json()
        assert {body["backends"][name]["state"] for name in ("fwd", "xch", "web")} == {"auth_required"}
        assert body["status"] == "ok"  # protected is not broken


async def test_a_forwarded_token_reaches_the_backend_as_the_user(bed: Bed, http: httpx.AsyncClient) -> None:
    for user in ("alice", "bob"):
        async with connected(bed.url, await token(http, bed, user), "2026-07-28") as client:
            assert "x_fwd_whoami" in await names(client)
            me = await whoami(client, "fwd")
        assert me["sub"] == user and me["iss"] == bed.g.url


async def test_an_exchanged_token_is_reused_across_calls_and_replicas(bed: Bed, http: httpx.AsyncClient) -> None:
    carol = await token(http, bed, "carol")
    before = (await stats(http, bed.x.url))["issued"].get("urn:ietf:params:oauth:grant-type:token-exchange", 0)
    for index in (0, 1, 0, 1):
        async with connected(bed.replica(index), carol, "2026-07-28") as client:
            me = await whoami(client, "xch")
            assert me["sub"] == "carol" and me["iss"] == bed.x.url
    after = (await stats(http, bed.x.url))["issued"].get("urn:ietf:params:oauth:grant-type:token-exchange", 0)
    assert after - before == 1  # one exchange, kept encrypted in Redis, reused by both replicas


async def login_url(client: Client, server: str = "web") -> str:
    result = await client.call_tool("core_auth_login", {"server": server})
    assert not result.is_error, text(result)
    return str((result.structured_content or {})["authorizationUrl"])


async def finish_sign_in(http: httpx.AsyncClient, url: str, user: str) -> httpx.Response:
    """What the user's browser does: the IdP approves at once and redirects to the gateway's callback."""
    approved = await http.get(f"{url}&login_hint={user}")  # (httpx's params= would replace the query)
    assert approved.status_code == 302, approved.text
    remember_secrets(approved.headers["location"])
    return await http.get(approved.headers["location"])


def remember_secrets(callback: str) -> None:
    query = parse_qs(urlsplit(callback).query)
    SECRETS.update(query["code"] + query["state"])


async def test_signing_in_on_one_replica_and_returning_to_the_other_shows_the_tools_to_that_user_only(
    bed: Bed, http: httpx.AsyncClient
) -> None:
    alice, bob = await token(http, bed, "alice"), await token(http, bed, "bob")
    async with connected(bed.replica(0), alice, "2026-07-28") as client:
        assert "x_web_whoami" not in await names(client)
        with pytest.raises(MCPError, match=re.escape('core_auth_login {"server": "web"}')):
            await client.call_tool("x_web_whoami", {})  # unknown to her: a protocol error, with the way in
        url = await login_url(client)
    assert f"redirect_uri=http%3A%2F%2F127.0.0.1%3A{bed.cluster.port}%2Foauth%2Fcallback" in url
    callback = await finish_sign_in(http, url, "alice")
    assert callback.status_code == 200 and "Signed in to web" in callback.text
    for index in (1, 0):
        async with connected(bed.replica(index), alice, "legacy") as client:
            await shows(client, "x_web_whoami", f"replica {index} never showed alice's new tools")
            assert (await whoami(client, "web"))["sub"] == "alice"
    async with connected(bed.url, bob, "2026-07-28") as client:
        assert "x_web_whoami" not in await names(client)  # one user's sign-in shows nothing to another
        status = json.loads((await client.read_resource("auth://status")).contents[0].text)  # type: ignore[union-attr]
    assert {s["name"]: s["status"] for s in status["servers"]}["web"] == "auth_required"
    async with connected(bed.url, alice, "2026-07-28") as client:
        status = json.loads((await client.read_resource("auth://status")).contents[0].text)  # type: ignore[union-attr]
        assert {s["name"]: s["status"] for s in status["servers"]} == {
            "fwd": "connected",
            "xch": "connected",
            "web": "connected",
        }
        assert not (await client.call_tool("core_auth_logout", {"server": "web"})).is_error
    async with connected(bed.replica(1), alice, "2026-07-28") as client:
        await shows(client, "x_web_whoami", "alice's tools stayed after she signed out", present=False)


async def test_a_callback_used_twice_or_forged_is_refused(bed: Bed, http: httpx.AsyncClient) -> None:
    async with connected(bed.url, await token(http, bed, "alice"), "2026-07-28") as client:
        url = await login_url(client)
    approved = await http.get(f"{url}&login_hint=alice")
    callback = approved.headers["location"]
    remember_secrets(callback)
    assert (await http.get(callback)).status_code == 200
    assert (await http.get(callback)).status_code == 400  # the state is taken once
    forged = await http.get(f"http://127.0.0.1:{bed.cluster.port}/oauth/callback", params={"state": "x", "code": "y"})
    assert forged.status_code == 400 and "expired or was used" in forged.text


async def test_the_eleventh_sign_in_attempt_in_a_minute_is_refused_on_any_replica(
    bed: Bed, http: httpx.AsyncClient
) -> None:
    dave = await token(http, bed, "dave")
    outcomes = []
    for attempt in range(11):
        async with connected(bed.replica(attempt % 2), dave, "2026-07-28") as client:
            outcomes.append(await client.call_tool("core_auth_login", {"server": "web"}))
    assert not any(result.is_error for result in outcomes[:10])
    assert outcomes[10].is_error and "rate limit" in text(outcomes[10])
    async with connected(bed.url, await token(http, bed, "alice"), "2026-07-28") as client:
        assert not (await client.call_tool("core_auth_login", {"server": "web"})).is_error  # others unaffected


async def signed_in(http: httpx.AsyncClient, bed: Bed, user: str, replica: int = 0) -> str:
    """`user` signs in to web through replica `replica`; their gateway token."""
    gateway_token = await token(http, bed, user)
    async with connected(bed.replica(replica), gateway_token, "2026-07-28") as client:
        url = await login_url(client)
    assert (await finish_sign_in(http, url, user)).status_code == 200
    return gateway_token


async def test_a_signed_in_token_is_refreshed_before_expiry_and_a_refused_refresh_asks_to_sign_in_again(
    bed: Bed, http: httpx.AsyncClient
) -> None:
    await http.post(f"{bed.s.url}/test/token-ttl", params={"seconds": 4})
    try:
        erin = await signed_in(http, bed, "erin")
        refreshes = (await stats(http, bed.s.url))["issued"].get("refresh_token", 0)
        async with connected(bed.replica(1), erin, "2026-07-28") as client:
            await shows(client, "x_web_whoami", "erin's tools never showed")
            await asyncio.sleep(2.5)  # past half the token's life: the next call refreshes it first
            assert (await whoami(client, "web"))["sub"] == "erin"
            assert (await stats(http, bed.s.url))["issued"].get("refresh_token", 0) == refreshes + 1
            await http.post(f"{bed.s.url}/test/revoke", params={"sub": "erin"})
            await asyncio.sleep(2.5)
            refused = await client.call_tool("x_web_whoami", {})
            assert refused.is_error and 'sign in to web first: call core_auth_login with {"server": "web"}' in text(
                refused
            )
            await shows(client, "x_web_whoami", "erin's tools stayed after her sign-in ended", present=False)
            status = json.loads((await client.read_resource("auth://status")).contents[0].text)  # type: ignore[union-attr]
            assert {s["name"]: s["status"] for s in status["servers"]}["web"] == "auth_required"
    finally:
        await http.post(f"{bed.s.url}/test/token-ttl", params={"seconds": 300})


async def test_a_sign_in_notifies_that_users_open_streams_and_no_one_elses(bed: Bed, http: httpx.AsyncClient) -> None:
    frank, bob = await token(http, bed, "frank"), await token(http, bed, "bob")
    seen: dict[str, asyncio.Event] = {"frank": asyncio.Event(), "bob": asyncio.Event()}

    def watcher(user: str) -> Any:
        async def on_message(message: object) -> None:
            if getattr(message, "method", None) == "notifications/tools/list_changed":
                seen[user].set()

        return on_message

    async with (
        connected(bed.replica(1), frank, "legacy", message_handler=watcher("frank")) as frank_client,
        connected(bed.replica(1), bob, "legacy", message_handler=watcher("bob")) as bob_client,
    ):
        await frank_client.list_tools()
        await bob_client.list_tools()
        async with (
            connected(bed.replica(0), frank, "2026-07-28") as client,
            client.listen(tools_list_changed=True) as listened,  # a 2026-07-28 listen stream of frank's
        ):
            url = await login_url(client)
            assert (await finish_sign_in(http, url, "frank")).status_code == 200
            await asyncio.wait_for(anext(aiter(listened)), 10)
        await asyncio.wait_for(seen["frank"].wait(), 10)
        await asyncio.sleep(1.0)
        assert not seen["bob"].is_set(), "another user's stream heard of frank's sign-in"
        assert "x_web_whoami" in await names(frank_client)


async def test_a_session_is_not_usable_by_another_user_on_any_replica(bed: Bed, http: httpx.AsyncClient) -> None:
    alice, bob = await token(http, bed, "alice"), await token(http, bed, "bob")
    base = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    opened = await http.post(bed.replica(0), json=init, headers={**base, "authorization": f"Bearer {alice}"})
    assert opened.status_code == 200, opened.text
    session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    for index in (0, 1):
        stolen = await http.post(
            bed.replica(index), json=listing, headers={**base, **session, "authorization": f"Bearer {bob}"}
        )
        assert stolen.status_code == 404, stolen.text
    owned = await http.post(
        bed.replica(1), json=listing, headers={**base, **session, "authorization": f"Bearer {alice}"}
    )
    assert owned.status_code == 200 and "x_fwd_whoami" in owned.text


async def test_sign_in_counts_are_cluster_wide_in_the_admin_view(bed: Bed, http: httpx.AsyncClient) -> None:
    views = []
    for index in (0, 1):
        response = await http.get(
            f"{bed.cluster.replica_url(index)}/admin/auth/metrics", headers={"authorization": f"Bearer {ADMIN}"}
        )
        assert response.status_code == 200, response.text
        views.append(response.json())
    assert views[0] == views[1]
    web = {row["server_name"]: row for row in views[0]["per_server_metrics"]}["web"]
    assert web["login_attempts"] >= 12 and web["login_successes"] >= 3 and web["rate_limit_blocks"] >= 1
    assert web["logout_successes"] >= 1 and views[0]["total_login_attempts"] >= web["login_attempts"]
    per_replica = 0.0
    for index in (0, 1):
        scraped = (await http.get(f"{bed.cluster.replica_url(index)}/metrics")).text
        found = re.findall(r'^mcp_auth_events_total\{event="login_attempt",server="web"\} ([0-9.]+)', scraped, re.M)
        per_replica += sum(float(value) for value in found)
    assert per_replica == web["login_attempts"]  # the same counts, per replica, as OpenTelemetry metrics


async def test_tokens_never_appear_in_any_log(bed: Bed) -> None:
    for process in bed.cluster.processes.values():
        log = process.log.read_text(errors="replace") if process.log.exists() else ""
        assert "eyJ" not in log, f"a JWT appears in the log of {process.name}"
        leaked = [secret for secret in SECRETS if secret in log]
        assert not leaked, f"{len(leaked)} secrets (codes, states, keys) appear in the log of {process.name}"
    assert len(SECRETS) >= 10  # the sign-ins above ran, and their codes are among those looked for

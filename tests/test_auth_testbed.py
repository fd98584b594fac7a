"""The OAuth testbed behaves like the standards say: `tests.servers.auth_server` and `tests.servers.protected`.

Servers (real processes on loopback): A, an authorization server with a path issuer (`/realm-a`);
B, one that trusts A's tokens for token exchange, knows the confidential client `gateway` and
the public client `spa`, and issues 600 s tokens; C, one B does not trust; P, a protected backend
accepting A's tokens with scope `mcp:tools`. Tokens are checked here with joserfc against the
issuer's published JWKS, independently of the servers' own verification code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import httpx2
import mcp_types as t
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client

from tests.oauth_flows import (
    authorize,
    connected,
    pkce,
    redirected_to,
    register,
    short_lived_tokens,
    sign_in,
    stats,
    verified,
    whoami,
)
from tests.servers.launch import RunningServer, start_http_server
from tests.servers.oauth_browser import REDIRECT_URI, Browser, MemoryTokenStorage, client_metadata

ERAS = ["legacy", "2026-07-28"]
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
GATEWAY = ("gateway", "gateway-secret")


@dataclass
class Servers:
    a: RunningServer
    b: RunningServer
    c: RunningServer
    p: RunningServer


@pytest.fixture(scope="module")
async def bed() -> AsyncIterator[Servers]:
    auth = "tests.servers.auth_server"
    started: list[RunningServer] = []
    try:
        a, c = await asyncio.gather(
            start_http_server(auth, "--issuer-name", "realm-a"),
            start_http_server(auth, "--user", "carol"),
        )
        started += [a, c]
        b, p = await asyncio.gather(
            start_http_server(
                auth, "--trust", a.url, "--client", ":".join(GATEWAY), "--client", "spa", "--token-ttl", "600"
            ),
            start_http_server("tests.servers.protected", "--issuer", a.url, "--scope", "mcp:tools", "--name", "p"),
        )
        started += [b, p]
        yield Servers(a, b, c, p)
    finally:
        await asyncio.gather(*(server.stop() for server in started))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


# -- discovery ------------------------------------------------------------------------------------


async def test_metadata_is_served_at_every_discovery_url_of_a_path_issuer(
    bed: Servers, http: httpx.AsyncClient
) -> None:
    origin, path = bed.a.url.rsplit("/", 1)
    urls = [
        f"{origin}/.well-known/oauth-authorization-server/{path}",
        f"{origin}/.well-known/openid-configuration/{path}",
        f"{bed.a.url}/.well-known/openid-configuration",
    ]
    documents = [(await http.get(url)).json() for url in urls]
    assert documents[0] == documents[1] == documents[2]
    metadata = AuthorizationServerMetadata(documents[0])
    metadata.validate()
    assert metadata["issuer"] == bed.a.url
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert TOKEN_EXCHANGE in metadata["grant_types_supported"]
    assert metadata["registration_endpoint"] == f"{bed.a.url}/register"


async def test_jwks_publishes_public_rs256_keys_with_a_kid(bed: Servers, http: httpx.AsyncClient) -> None:
    keys = (await http.get(f"{bed.a.url}/jwks")).json()["keys"]
    assert keys and all(key["kty"] == "RSA" and key["alg"] == "RS256" and key["kid"] for key in keys)
    assert not any("d" in key for key in keys)


# -- authorization code + PKCE -------------------------------------------------------------------


async def test_code_flow_issues_a_jwt_for_the_requested_resource_and_the_chosen_user(
    bed: Servers, http: httpx.AsyncClient
) -> None:
    client = await register(http, bed.a.url)
    verifier, challenge = pkce()
    response = await authorize(
        http, bed.a.url, client["client_id"], challenge, resource=bed.p.url, scope="mcp:tools", login_hint="bob"
    )
    back = redirected_to(response)
    assert back["state"] == "the-state" and back["iss"] == bed.a.url  # RFC 9207
    form = {"grant_type": "authorization_code", "code": back["code"], "redirect_uri": REDIRECT_URI}
    form |= {"client_id": client["client_id"], "code_verifier": verifier}
    token = (await http.post(f"{bed.a.url}/token", data=form)).json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 300 and token["refresh_token"]
    decoded = await verified(http, bed.a.url, token["access_token"])
    assert decoded.header["typ"] == "at+jwt" and decoded.header["kid"]
    claims = decoded.claims
    assert (claims["iss"], claims["sub"], claims["aud"]) == (bed.a.url, "bob", bed.p.url)
    assert (claims["scope"], claims["client_id"]) == ("mcp:tools", client["client_id"])
    assert claims["exp"] - claims["iat"] in (300, 301) and claims["nbf"] == claims["iat"] and claims["jti"]


async def test_a_wrong_code_verifier_is_refused(bed: Servers, http: httpx.AsyncClient) -> None:
    client = await register(http, bed.a.url)
    _, challenge = pkce()
    code = redirected_to(await authorize(http, bed.a.url, client["client_id"], challenge))["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    form |= {"client_id": client["client_id"], "code_verifier": pkce()[0]}
    response = await http.post(f"{bed.a.url}/token", data=form)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


async def test_a_code_is_good_for_one_token_request(bed: Servers, http: httpx.AsyncClient) -> None:
    client = await register(http, bed.a.url)
    verifier, challenge = pkce()
    code = redirected_to(await authorize(http, bed.a.url, client["client_id"], challenge))["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    form |= {"client_id": client["client_id"], "code_verifier": verifier}
    assert (await http.post(f"{bed.a.url}/token", data=form)).status_code == 200
    again = await http.post(f"{bed.a.url}/token", data=form)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


async def test_authorization_without_an_s256_challenge_is_refused(bed: Servers, http: httpx.AsyncClient) -> None:
    client = await register(http, bed.a.url)
    plain = redirected_to(
        await authorize(http, bed.a.url, client["client_id"], pkce()[1], code_challenge_method="plain")
    )
    assert plain["error"] == "invalid_request" and plain["state"] == "the-state"
    query = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT_URI}
    assert redirected_to(await http.get(f"{bed.a.url}/authorize", params=query))["error"] == "invalid_request"


async def test_an_unregistered_redirect_uri_is_refused_without_redirecting(
    bed: Servers, http: httpx.AsyncClient
) -> None:
    client = await register(http, bed.a.url)
    response = await authorize(http, bed.a.url, client["client_id"], pkce()[1], redirect_uri="http://127.0.0.1:2/evil")
    assert response.status_code == 400 and "location" not in response.headers


async def test_who_signs_in_is_the_login_hint_else_the_current_user(bed: Servers, http: httpx.AsyncClient) -> None:
    async def signed_in(user: str | None) -> str:
        token = (await sign_in(http, bed.a.url, user=user))["access_token"]
        return str((await verified(http, bed.a.url, token)).claims["sub"])

    assert (await signed_in(None), await signed_in("bob")) == ("alice", "bob")  # alice: the first --user
    try:
        assert (await http.post(f"{bed.a.url}/test/user", params={"sub": "bob"})).status_code == 200
        assert (await signed_in(None), await signed_in("alice")) == ("bob", "alice")
    finally:
        await http.post(f"{bed.a.url}/test/user", params={"sub": "alice"})
    assert (await http.post(f"{bed.a.url}/test/user", params={"sub": "mallory"})).status_code == 400
    client = await register(http, bed.a.url)
    refused = redirected_to(await authorize(http, bed.a.url, client["client_id"], pkce()[1], login_hint="mallory"))
    assert refused["error"] == "access_denied"


# -- refresh --------------------------------------------------------------------------------------


async def test_refresh_rotates_the_refresh_token_and_keeps_the_audience(bed: Servers, http: httpx.AsyncClient) -> None:
    first = await sign_in(http, bed.a.url, resource=bed.p.url)
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": first["client_id"]}
    second = (await http.post(f"{bed.a.url}/token", data=form)).json()
    assert second["refresh_token"] != first["refresh_token"]
    claims = (await verified(http, bed.a.url, second["access_token"])).claims
    assert (claims["sub"], claims["aud"]) == ("alice", bed.p.url)
    reused = await http.post(f"{bed.a.url}/token", data=form)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    other = await http.post(
        f"{bed.a.url}/token",
        data={**form, "refresh_token": second["refresh_token"], "resource": "http://elsewhere.test/"},
    )
    assert other.status_code == 400 and other.json()["error"] == "invalid_target"


async def test_the_revoke_switch_makes_a_users_refresh_fail(bed: Servers, http: httpx.AsyncClient) -> None:
    alice, bob = await sign_in(http, bed.a.url, user="alice"), await sign_in(http, bed.a.url, user="bob")
    assert (await http.post(f"{bed.a.url}/test/revoke", params={"sub": "alice"})).json()["revoked"] >= 1
    for token, status in ((alice, 400), (bob, 200)):
        form = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": token["client_id"]}
        assert (await http.post(f"{bed.a.url}/token", data=form)).status_code == status


# -- token exchange -------------------------------------------------------------------------------


@pytest.mark.parametrize("client_auth", ["client_secret_basic", "client_secret_post"])
async def test_token_exchange_trades_a_trusted_issuers_token_for_one_of_its_own(
    bed: Servers, http: httpx.AsyncClient, client_auth: str
) -> None:
    subject = await sign_in(http, bed.a.url, user="bob", resource="http://gateway.test/mcp", scope="openid mcp:tools")
    before = await stats(http, bed.b.url)
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject["access_token"],
        "subject_token_type": ACCESS_TOKEN_TYPE,
    }
    form |= {"resource": bed.p.url, "scope": "mcp:tools"}
    if client_auth == "client_secret_basic":
        response = await http.post(f"{bed.b.url}/token", data=form, auth=GATEWAY)
    else:
        response = await http.post(
            f"{bed.b.url}/token", data={**form, "client_id": GATEWAY[0], "client_secret": GATEWAY[1]}
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["issued_token_type"] == ACCESS_TOKEN_TYPE and answer["expires_in"] == 600
    assert "refresh_token" not in answer
    claims = (await verified(http, bed.b.url, answer["access_token"])).claims
    assert (claims["iss"], claims["sub"], claims["aud"]) == (bed.b.url, "bob", bed.p.url)
    assert (claims["client_id"], claims["scope"]) == ("gateway", "mcp:tools")
    after = await stats(http, bed.b.url)
    assert after["issued"].get(TOKEN_EXCHANGE, 0) == before["issued"].get(TOKEN_EXCHANGE, 0) + 1


async def test_token_exchange_refuses_tokens_of_an_untrusted_issuer_or_a_broken_signature(
    bed: Servers, http: httpx.AsyncClient
) -> None:
    untrusted = (await sign_in(http, bed.c.url, user="carol"))["access_token"]
    trusted = (await sign_in(http, bed.a.url))["access_token"]
    head, body, signature = trusted.split(".")
    tampered = f"{head}.{body}.{signature[:-4]}AAAA"
    for token, reason in ((untrusted, "not trusted"), (tampered, "refused")):
        form = {"grant_type": TOKEN_EXCHANGE, "subject_token": token, "subject_token_type": ACCESS_TOKEN_TYPE}
        response = await http.post(f"{bed.b.url}/token", data={**form, "audience": "backend"}, auth=GATEWAY)
        assert response.status_code == 400 and response.json()["error"] == "invalid_request"
        assert reason in response.json()["error_description"]


async def test_token_exchange_needs_a_confidential_client(bed: Servers, http: httpx.AsyncClient) -> None:
    subject = (await sign_in(http, bed.a.url))["access_token"]
    form = {"grant_type": TOKEN_EXCHANGE, "subject_token": subject, "subject_token_type": ACCESS_TOKEN_TYPE}
    public = await http.post(f"{bed.b.url}/token", data={**form, "client_id": "spa"})
    wrong = await http.post(f"{bed.b.url}/token", data=form, auth=(GATEWAY[0], "wrong"))
    assert public.json()["error"] == wrong.json()["error"] == "invalid_client"
    assert wrong.status_code == 401


# -- keys -----------------------------------------------------------------------------------------


async def test_rotated_keys_sign_new_tokens_and_stay_published_unless_dropped(
    bed: Servers, http: httpx.AsyncClient
) -> None:
    before = {key["kid"] for key in (await http.get(f"{bed.a.url}/jwks")).json()["keys"]}
    kept = (await http.post(f"{bed.a.url}/test/rotate-keys")).json()
    assert kept["kid"] not in before and set(kept["published"]) == before | {kept["kid"]}
    token = (await sign_in(http, bed.a.url))["access_token"]
    assert (await verified(http, bed.a.url, token)).header["kid"] == kept["kid"]
    dropped = (await http.post(f"{bed.a.url}/test/rotate-keys", params={"keep_old": "0"})).json()
    assert dropped["published"] == [dropped["kid"]]
    assert [key["kid"] for key in (await http.get(f"{bed.a.url}/jwks")).json()["keys"]] == [dropped["kid"]]


async def test_protected_backend_refetches_the_keys_for_an_unknown_kid(bed: Servers, http: httpx.AsyncClient) -> None:
    old = (await sign_in(http, bed.a.url, resource=bed.p.url, scope="mcp:tools"))["access_token"]
    async with connected(bed.p.url, old, "2026-07-28") as client:
        assert (await whoami(client))["sub"] == "alice"
    fetched = (await stats(http, bed.a.url))["jwks_requests"]
    await http.post(f"{bed.a.url}/test/rotate-keys", params={"keep_old": "0"})
    new = (await sign_in(http, bed.a.url, resource=bed.p.url, scope="mcp:tools"))["access_token"]
    async with connected(bed.p.url, new, "2026-07-28") as client:
        assert (await whoami(client))["sub"] == "alice"
    assert (await stats(http, bed.a.url))["jwks_requests"] > fetched
    assert (await http.post(bed.p.url, json={}, headers={"Authorization": f"Bearer {old}"})).status_code == 401


# -- the protected backend ------------------------------------------------------------------------


async def test_protected_backend_without_a_token_points_at_its_resource_metadata(
    bed: Servers, http: httpx.AsyncClient
) -> None:
    response = await http.post(bed.p.url, json={"jsonrpc": "2.0", "id": 1, "method": "server/discover"})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    origin = bed.p.url.removesuffix("/mcp")
    metadata_url = f"{origin}/.well-known/oauth-protected-resource/mcp"
    assert challenge.startswith("Bearer ") and f'resource_metadata="{metadata_url}"' in challenge
    metadata = (await http.get(metadata_url)).json()
    assert metadata["resource"] == bed.p.url
    assert metadata["authorization_servers"] == [bed.a.url]
    assert metadata["scopes_supported"] == ["mcp:tools"]


async def test_protected_backend_refuses_a_token_for_another_audience(bed: Servers, http: httpx.AsyncClient) -> None:
    for resource in ("http://127.0.0.1:1/mcp", None):
        params = {"scope": "mcp:tools"} | ({"resource": resource} if resource else {})
        token = (await sign_in(http, bed.a.url, **params))["access_token"]
        response = await http.post(bed.p.url, json={}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401 and "resource_metadata=" in response.headers["www-authenticate"]


async def test_protected_backend_refuses_a_token_without_its_scope(bed: Servers, http: httpx.AsyncClient) -> None:
    token = (await sign_in(http, bed.a.url, resource=bed.p.url, scope="other"))["access_token"]
    response = await http.post(bed.p.url, json={}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403 and 'error="insufficient_scope"' in response.headers["www-authenticate"]


@pytest.mark.parametrize("mode", ERAS)
async def test_whoami_names_the_tokens_subject_over_the_sdk_client(
    bed: Servers, http: httpx.AsyncClient, mode: str
) -> None:
    token = await sign_in(http, bed.a.url, user="bob", resource=bed.p.url, scope="mcp:tools")
    async with connected(bed.p.url, token["access_token"], mode) as client:
        me = await whoami(client)
        assert (await client.call_tool("echo", {"text": "hi"})).content == [t.TextContent(type="text", text="hi")]
    assert me == {
        "backend": "p",
        "iss": bed.a.url,
        "sub": "bob",
        "aud": bed.p.url,
        "scope": "mcp:tools",
        "client_id": token["client_id"],
    }


@pytest.mark.parametrize("mode", ERAS)
async def test_a_tool_added_by_one_user_is_invisible_to_another(
    bed: Servers, http: httpx.AsyncClient, mode: str
) -> None:
    tool = f"notes_{mode.replace('-', '_')}"
    alice = (await sign_in(http, bed.a.url, user="alice", resource=bed.p.url, scope="mcp:tools"))["access_token"]
    bob = (await sign_in(http, bed.a.url, user="bob", resource=bed.p.url, scope="mcp:tools"))["access_token"]
    async with connected(bed.p.url, alice, mode) as as_alice, connected(bed.p.url, bob, mode) as as_bob:
        await as_alice.call_tool("add_tool", {"tool": tool})
        try:
            assert tool in {item.name for item in (await as_alice.list_tools()).tools}
            assert tool not in {item.name for item in (await as_bob.list_tools()).tools}
            assert (await as_bob.call_tool(tool, {})).is_error
            assert not (await as_alice.call_tool(tool, {})).is_error
        finally:
            await as_alice.call_tool("remove_tool", {"tool": tool})


# -- the SDK's own OAuth client -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_the_sdk_oauth_client_signs_in_unaided(bed: Servers, http: httpx.AsyncClient, mode: str) -> None:
    before = await stats(http, bed.a.url)
    browser = Browser(login_hint="bob")
    provider = OAuthClientProvider(
        bed.p.url,
        client_metadata(),
        MemoryTokenStorage(),
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )
    async with (
        httpx2.AsyncClient(auth=provider, timeout=10) as sdk_http,
        Client(streamable_http_client(bed.p.url, http_client=sdk_http), mode=mode) as client,
    ):
        me = await whoami(client)
    assert (me["sub"], me["aud"], me["scope"]) == ("bob", bed.p.url, "mcp:tools")
    (visited,) = browser.visited
    assert visited.startswith(f"{bed.a.url}/authorize?") and "code_challenge_method=S256" in visited
    after = await stats(http, bed.a.url)
    assert after["registrations"] == before["registrations"] + 1
    assert after["issued"]["authorization_code"] == before["issued"]["authorization_code"] + 1


async def test_an_expired_token_is_refused_and_the_sdk_oauth_client_refreshes_it_without_signing_in_again(
    bed: Servers, http: httpx.AsyncClient
) -> None:
    browser, storage = Browser(), MemoryTokenStorage()
    provider = OAuthClientProvider(
        bed.p.url, client_metadata(), storage, redirect_handler=browser.open, callback_handler=browser.callback
    )
    async with (
        short_lived_tokens(http, bed.a.url),
        httpx2.AsyncClient(auth=provider, timeout=10) as sdk_http,
        Client(streamable_http_client(bed.p.url, http_client=sdk_http), mode="2026-07-28") as client,
    ):
        assert (await whoami(client))["sub"] == "alice"
        assert storage.tokens is not None
        expired, refreshed = (
            storage.tokens.access_token,
            (await stats(http, bed.a.url))["issued"].get("refresh_token", 0),
        )
        await asyncio.sleep(2.1)  # the 1 s token's exp is under 2 s after it was issued
        refused = await http.post(bed.p.url, json={}, headers={"Authorization": f"Bearer {expired}"})
        assert refused.status_code == 401
        assert (await whoami(client))["sub"] == "alice"
    assert len(browser.visited) == 1
    assert (await stats(http, bed.a.url))["issued"]["refresh_token"] == refreshed + 1

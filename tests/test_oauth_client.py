"""The OAuth client towards backends' authorization servers (`shared.oauth`) against the testbed.

Servers (real processes on loopback, started once for the module): A, an authorization server with a
path issuer (`/realm-a`); B, one that trusts A's tokens for token exchange and knows the confidential
client `gateway`; P, a protected MCP backend accepting A's tokens with scope `mcp:tools`. A few cases
a real server will not produce (an echoed secret, an oversized or odd reply) use an httpx handler
function as the server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import msgspec
import pytest

from shared.oauth.client import (
    ClientRegistration,
    authorization_request,
    exchange_code,
    exchange_token,
    refresh,
    register_client,
)
from shared.oauth.discovery import (
    AuthServerMetadata,
    ProtectedResource,
    authorization_server_metadata_urls,
    discover_authorization_server,
    discover_protected_resource,
    parse_www_authenticate,
    protected_resource_metadata_urls,
)
from shared.oauth.http import (
    DiscoveryFailed,
    OAuthError,
    RefreshRefused,
    RegistrationFailed,
    TokenRequestFailed,
)
from shared.oauth.tokens import TokenSet
from tests.ports import free_port
from tests.servers.jwks import unverified
from tests.servers.launch import RunningServer, start_http_server
from tests.servers.oauth_browser import REDIRECT_URI

GATEWAY = ("gateway", "gateway-secret")
SECRETS = {
    "code": "SECRET-CODE-4f1d2a",
    "code_verifier": "SECRET-VERIFIER-8b3e5c-with-enough-characters-to-be-a-pkce-verifier",
    "refresh_token": "SECRET-REFRESH-7c9a0e",
    "client_secret": "SECRET-CLIENT-2d6f4b",
    "subject_token": "SECRET-SUBJECT-5e8c1a",
}


@dataclass
class Bed:
    a: RunningServer
    b: RunningServer
    p: RunningServer


@pytest.fixture(scope="module")
async def bed() -> AsyncIterator[Bed]:
    auth = "tests.servers.auth_server"
    started: list[RunningServer] = []
    try:
        a = await start_http_server(auth, "--issuer-name", "realm-a")
        started.append(a)
        b, p = await asyncio.gather(
            start_http_server(auth, "--trust", a.url, "--client", ":".join(GATEWAY)),
            start_http_server("tests.servers.protected", "--issuer", a.url, "--scope", "mcp:tools"),
        )
        started += [b, p]
        yield Bed(a, b, p)
    finally:
        await asyncio.gather(*(server.stop() for server in started))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def dead_url(path: str = "") -> str:
    return f"http://127.0.0.1:{free_port()}{path}"


def claims(token: str) -> dict[str, Any]:
    return unverified(token)[1]


async def follow(http: httpx.AsyncClient, url: str, **params: str) -> dict[str, str]:
    """What the auto-approving server redirects the browser back with (the query of its Location)."""
    response = await http.get(f"{url}&{urlencode(params)}" if params else url)  # params= would drop url's query
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


async def sign_in(
    http: httpx.AsyncClient, bed: Bed, user: str = "alice"
) -> tuple[AuthServerMetadata, ClientRegistration, TokenSet]:
    """A's metadata, a newly registered client, and the tokens of a full code flow for P signed in as `user`."""
    metadata = await discover_authorization_server(http, bed.a.url)
    client = await register_client(http, metadata, redirect_uri=REDIRECT_URI, client_name="oauth client tests")
    request = authorization_request(
        metadata,
        client_id=client.client_id,
        redirect_uri=REDIRECT_URI,
        state="the-state",
        resource=bed.p.url,
        scope="mcp:tools",
    )
    back = await follow(http, request.url, login_hint=user)
    assert (back["state"], back["iss"]) == ("the-state", bed.a.url)
    tokens = await exchange_code(
        http,
        metadata,
        client,
        code=back["code"],
        code_verifier=request.code_verifier,
        redirect_uri=REDIRECT_URI,
        resource=bed.p.url,
    )
    return metadata, client, tokens


def messages(exc: BaseException) -> Iterator[str]:
    """The str and repr of `exc` and of every exception it was raised from."""
    seen: BaseException | None = exc
    while seen is not None:
        yield str(seen)
        yield repr(seen)
        seen = seen.__cause__ or seen.__context__


def assert_no_secret(exc: BaseException) -> None:
    for text in messages(exc):
        for name, secret in SECRETS.items():
            assert secret not in text, f"the {name} shows in {text!r}"


def handler_client(handle: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


# -- WWW-Authenticate -----------------------------------------------------------------------------


def test_www_authenticate_yields_the_bearer_challenges_parameters() -> None:
    header = (
        'Basic realm="old", Bearer realm="mcp", error="invalid_token", '
        'error_description="say \\"please\\", twice", resource_metadata="https://h/.well-known/x", scope=tools'
    )
    assert parse_www_authenticate(header) == {
        "realm": "mcp",
        "error": "invalid_token",
        "error_description": 'say "please", twice',
        "resource_metadata": "https://h/.well-known/x",
        "scope": "tools",
    }
    assert parse_www_authenticate('bearer Resource_Metadata="u", Basic realm="x"') == {"resource_metadata": "u"}
    assert parse_www_authenticate('Basic realm="x"') == {}
    assert parse_www_authenticate("Bearer") == {}


# -- discovery ------------------------------------------------------------------------------------


def test_metadata_urls_of_a_path_issuer_are_rfc_8414_then_oidc_inserted_then_oidc_appended() -> None:
    assert authorization_server_metadata_urls("https://h/realm") == [
        "https://h/.well-known/oauth-authorization-server/realm",
        "https://h/.well-known/openid-configuration/realm",
        "https://h/realm/.well-known/openid-configuration",
    ]
    assert authorization_server_metadata_urls("https://h") == [
        "https://h/.well-known/oauth-authorization-server",
        "https://h/.well-known/openid-configuration",
    ]
    assert protected_resource_metadata_urls("https://h/mcp") == [
        "https://h/.well-known/oauth-protected-resource/mcp",
        "https://h/.well-known/oauth-protected-resource",
    ]


async def test_discovery_goes_from_a_real_401_to_the_authorization_servers_metadata(
    bed: Bed, http: httpx.AsyncClient
) -> None:
    unauthorized = await http.post(bed.p.url, json={"jsonrpc": "2.0", "id": 1, "method": "server/discover"})
    assert unauthorized.status_code == 401
    resource = await discover_protected_resource(http, bed.p.url, unauthorized.headers["www-authenticate"])
    assert resource == ProtectedResource(
        resource=bed.p.url, authorization_servers=(bed.a.url,), scopes_supported=("mcp:tools",)
    )
    metadata = await discover_authorization_server(http, resource.authorization_servers[0])
    assert metadata.issuer == bed.a.url
    assert (metadata.authorization_endpoint, metadata.token_endpoint) == (
        f"{bed.a.url}/authorize",
        f"{bed.a.url}/token",
    )
    assert metadata.registration_endpoint == f"{bed.a.url}/register"
    assert metadata.code_challenge_methods_supported == ("S256",)


async def test_without_a_challenge_the_resource_metadata_is_found_at_its_well_known_url(
    bed: Bed, http: httpx.AsyncClient
) -> None:
    resource = await discover_protected_resource(http, bed.p.url, None)
    assert resource.resource == bed.p.url and resource.authorization_servers == (bed.a.url,)


async def test_resource_metadata_for_another_resource_is_refused(bed: Bed, http: httpx.AsyncClient) -> None:
    elsewhere = bed.p.url.replace("/mcp", "/other")
    metadata_url = bed.p.url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    with pytest.raises(DiscoveryFailed) as caught:
        await discover_protected_resource(http, elsewhere, f'Bearer resource_metadata="{metadata_url}"')
    assert bed.p.url in str(caught.value) and elsewhere in str(caught.value)


async def test_a_backend_without_resource_metadata_fails_discovery_naming_the_urls_tried(
    bed: Bed, http: httpx.AsyncClient
) -> None:
    with pytest.raises(DiscoveryFailed) as caught:
        await discover_protected_resource(http, f"{bed.a.url}/mcp", None)
    assert "/.well-known/oauth-protected-resource/realm-a/mcp (HTTP 404)" in str(caught.value)
    assert "RFC 9728" in str(caught.value)


async def test_metadata_naming_another_issuer_is_refused(bed: Bed, http: httpx.AsyncClient) -> None:
    alias = bed.a.url.replace("127.0.0.1", "localhost")  # the same server, which names itself by its IP
    with pytest.raises(DiscoveryFailed) as caught:
        await discover_authorization_server(http, alias)
    assert f"names issuer '{bed.a.url}'" in str(caught.value) and alias in str(caught.value)


async def test_an_unreachable_authorization_server_fails_discovery_naming_its_url(http: httpx.AsyncClient) -> None:
    issuer = dead_url("/realm")
    with pytest.raises(DiscoveryFailed) as caught:
        await discover_authorization_server(http, issuer)
    assert "cannot reach" in str(caught.value) and issuer.removesuffix("/realm") in str(caught.value)
    assert caught.value.error is None


async def test_an_issuer_that_is_not_a_url_is_refused_before_any_request(http: httpx.AsyncClient) -> None:
    with pytest.raises(DiscoveryFailed, match="not an issuer URL"):
        await discover_authorization_server(http, "https://h/realm?tenant=1")


# -- registration and the authorization request ---------------------------------------------------


async def test_registration_makes_a_public_client_that_may_refresh(bed: Bed, http: httpx.AsyncClient) -> None:
    metadata = await discover_authorization_server(http, bed.a.url)
    before = (await http.get(f"{bed.a.url}/test/stats")).json()["registrations"]
    client = await register_client(http, metadata, redirect_uri=REDIRECT_URI, client_name="gateway")
    assert client.client_id and client.client_secret is None
    assert (await http.get(f"{bed.a.url}/test/stats")).json()["registrations"] == before + 1


async def test_registration_without_an_endpoint_says_to_configure_a_client(bed: Bed, http: httpx.AsyncClient) -> None:
    metadata = msgspec.structs.replace(await discover_authorization_server(http, bed.a.url), registration_endpoint=None)
    with pytest.raises(RegistrationFailed, match="configure a client id"):
        await register_client(http, metadata, redirect_uri=REDIRECT_URI, client_name="gateway")


def test_the_authorization_url_carries_an_s256_challenge_of_the_verifier_and_the_resource() -> None:
    metadata = AuthServerMetadata(
        issuer="https://as.test",
        authorization_endpoint="https://as.test/authorize?tenant=t1",
        token_endpoint="https://as.test/token",
        code_challenge_methods_supported=("S256",),
    )
    request = authorization_request(
        metadata, client_id="c", redirect_uri="https://gw.test/cb", state="s", resource="https://mcp.test/mcp"
    )
    parts = urlsplit(request.url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    digest = hashlib.sha256(request.code_verifier.encode()).digest()
    assert query == {
        "tenant": "t1",
        "response_type": "code",
        "client_id": "c",
        "redirect_uri": "https://gw.test/cb",
        "state": "s",
        "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        "resource": "https://mcp.test/mcp",
    }
    assert 43 <= len(request.code_verifier) <= 128
    again = authorization_request(
        metadata, client_id="c", redirect_uri="https://gw.test/cb", state="s", resource="https://mcp.test/mcp"
    )
    assert again.code_verifier != request.code_verifier


def test_a_server_without_s256_is_not_asked_to_sign_in() -> None:
    metadata = AuthServerMetadata(
        issuer="https://as.test", authorization_endpoint="https://as.test/a", token_endpoint="https://as.test/t"
    )
    with pytest.raises(OAuthError, match="S256"):
        authorization_request(metadata, client_id="c", redirect_uri="https://gw.test/cb", state="s", resource="r")


# -- code exchange and refresh --------------------------------------------------------------------


async def test_the_code_flow_yields_tokens_for_the_resource_and_the_user(bed: Bed, http: httpx.AsyncClient) -> None:
    _, client, tokens = await sign_in(http, bed, user="bob")
    issued = claims(tokens.access_token)
    assert (issued["iss"], issued["sub"], issued["aud"], issued["scope"]) == (bed.a.url, "bob", bed.p.url, "mcp:tools")
    assert (tokens.issuer, tokens.client_id, tokens.token_type, tokens.scope) == (
        bed.a.url,
        client.client_id,
        "Bearer",
        "mcp:tools",
    )
    assert tokens.refresh_token and tokens.expires_at is not None
    assert tokens.expires_at == pytest.approx(issued["exp"], abs=5)
    answer = await http.post(
        bed.p.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "server/discover"},
        headers={"Authorization": f"Bearer {tokens.access_token}", "Accept": "application/json, text/event-stream"},
    )
    assert answer.status_code != 401  # the backend takes the token


async def test_a_wrong_code_verifier_is_a_failed_token_request_not_a_refused_refresh(
    bed: Bed, http: httpx.AsyncClient
) -> None:
    metadata = await discover_authorization_server(http, bed.a.url)
    client = await register_client(http, metadata, redirect_uri=REDIRECT_URI, client_name="t")
    request = authorization_request(
        metadata, client_id=client.client_id, redirect_uri=REDIRECT_URI, state="s", resource=bed.p.url
    )
    code = (await follow(http, request.url))["code"]
    with pytest.raises(TokenRequestFailed) as caught:
        await exchange_code(
            http,
            metadata,
            client,
            code=code,
            code_verifier=SECRETS["code_verifier"],
            redirect_uri=REDIRECT_URI,
            resource=bed.p.url,
        )
    assert not isinstance(caught.value, RefreshRefused) and caught.value.error == "invalid_grant"
    assert metadata.token_endpoint in str(caught.value)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_a_confidential_client_authenticates_as_its_registration_says(
    bed: Bed, http: httpx.AsyncClient, method: str
) -> None:
    metadata = await discover_authorization_server(http, bed.b.url)
    client = ClientRegistration(client_id=GATEWAY[0], client_secret=GATEWAY[1], token_endpoint_auth_method=method)
    request = authorization_request(
        metadata, client_id=client.client_id, redirect_uri=REDIRECT_URI, state="s", resource=bed.p.url
    )
    code = (await follow(http, request.url))["code"]
    tokens = await exchange_code(
        http,
        metadata,
        client,
        code=code,
        code_verifier=request.code_verifier,
        redirect_uri=REDIRECT_URI,
        resource=bed.p.url,
    )
    assert claims(tokens.access_token)["client_id"] == GATEWAY[0] and tokens.refresh_token is not None
    impostor = msgspec.structs.replace(client, client_secret="not-the-secret")
    with pytest.raises(TokenRequestFailed) as caught:
        await refresh(http, metadata, impostor, refresh_token=tokens.refresh_token, resource=bed.p.url)
    assert caught.value.error == "invalid_client"


async def test_refresh_rotates_the_refresh_token_and_keeps_the_audience(bed: Bed, http: httpx.AsyncClient) -> None:
    metadata, client, first = await sign_in(http, bed)
    assert first.refresh_token is not None
    second = await refresh(http, metadata, client, refresh_token=first.refresh_token, resource=bed.p.url)
    assert second.refresh_token not in (None, first.refresh_token)
    assert claims(second.access_token)["aud"] == bed.p.url and claims(second.access_token)["sub"] == "alice"
    assert (second.issuer, second.client_id) == (bed.a.url, client.client_id)
    with pytest.raises(RefreshRefused):  # rotated: the first refresh token is spent
        await refresh(http, metadata, client, refresh_token=first.refresh_token, resource=bed.p.url)


async def test_a_revoked_refresh_token_is_refresh_refused(bed: Bed, http: httpx.AsyncClient) -> None:
    metadata, client, tokens = await sign_in(http, bed, user="bob")
    assert tokens.refresh_token is not None
    assert (await http.post(f"{bed.a.url}/test/revoke", params={"sub": "bob"})).json()["revoked"] >= 1
    with pytest.raises(RefreshRefused) as caught:
        await refresh(http, metadata, client, refresh_token=tokens.refresh_token, resource=bed.p.url)
    assert caught.value.error == "invalid_grant" and metadata.token_endpoint in str(caught.value)


async def test_a_refresh_at_an_unreachable_server_is_not_refresh_refused(bed: Bed, http: httpx.AsyncClient) -> None:
    metadata, client, tokens = await sign_in(http, bed)
    assert tokens.refresh_token is not None
    down = msgspec.structs.replace(metadata, token_endpoint=dead_url("/token"))
    with pytest.raises(TokenRequestFailed) as caught:
        await refresh(http, down, client, refresh_token=tokens.refresh_token, resource=bed.p.url)
    assert not isinstance(caught.value, RefreshRefused) and caught.value.error is None
    assert "cannot reach" in str(caught.value) and down.token_endpoint in str(caught.value)


async def test_a_refresh_answered_without_a_new_refresh_token_keeps_the_old_one() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "new", "token_type": "bearer", "expires_in": "60"})

    metadata = AuthServerMetadata(issuer="https://as.test", token_endpoint="https://as.test/token")
    async with handler_client(server) as http:
        tokens = await refresh(
            http, metadata, ClientRegistration(client_id="c"), refresh_token="kept", resource="https://mcp.test"
        )
    assert (tokens.access_token, tokens.refresh_token, tokens.token_type) == ("new", "kept", "Bearer")
    assert tokens.expires_at is not None


@pytest.mark.parametrize(
    ("status", "body", "cause"),
    [
        (200, {"access_token": "t", "token_type": "DPoP"}, "token type 'DPoP'"),
        (200, {"token_type": "Bearer"}, "missing required field `access_token`"),
        (200, b"x" * (2 << 20), "more than"),
        (502, b"<html>bad gateway</html>", "HTTP 502"),
    ],
)
async def test_an_unusable_token_answer_fails_with_its_cause(status: int, body: Any, cause: str) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body if isinstance(body, bytes) else json.dumps(body).encode())

    metadata = AuthServerMetadata(issuer="https://as.test", token_endpoint="https://as.test/token")
    async with handler_client(server) as http:
        with pytest.raises(TokenRequestFailed, match=cause) as caught:
            await refresh(http, metadata, ClientRegistration(client_id="c"), refresh_token="r", resource="https://m")
    assert "https://as.test/token" in str(caught.value)


# -- token exchange -------------------------------------------------------------------------------


async def test_token_exchange_trades_one_servers_token_for_anothers(bed: Bed, http: httpx.AsyncClient) -> None:
    _, _, subject = await sign_in(http, bed, user="bob")
    b = await discover_authorization_server(http, bed.b.url)
    tokens = await exchange_token(
        http,
        token_endpoint=b.token_endpoint,
        subject_token=subject.access_token,
        audience=bed.p.url,
        client_id=GATEWAY[0],
        client_secret=GATEWAY[1],
        scopes=["mcp:tools"],
    )
    issued = claims(tokens.access_token)
    assert (issued["iss"], issued["sub"], issued["aud"]) == (bed.b.url, "bob", bed.p.url)
    assert (issued["client_id"], issued["scope"]) == ("gateway", "mcp:tools")
    assert (tokens.client_id, tokens.refresh_token) == ("gateway", None) and tokens.expires_at is not None


async def test_token_exchange_with_a_wrong_secret_is_refused_as_invalid_client(
    bed: Bed, http: httpx.AsyncClient
) -> None:
    _, _, subject = await sign_in(http, bed)
    with pytest.raises(TokenRequestFailed) as caught:
        await exchange_token(
            http,
            token_endpoint=f"{bed.b.url}/token",
            subject_token=subject.access_token,
            audience=bed.p.url,
            client_id=GATEWAY[0],
            client_secret=SECRETS["client_secret"],
        )
    assert caught.value.error == "invalid_client"
    assert_no_secret(caught.value)


# -- what errors show -----------------------------------------------------------------------------


async def test_no_error_shows_a_code_verifier_token_or_secret(bed: Bed, http: httpx.AsyncClient) -> None:
    metadata = await discover_authorization_server(http, bed.a.url)
    public = await register_client(http, metadata, redirect_uri=REDIRECT_URI, client_name="t")
    confidential = ClientRegistration(client_id=GATEWAY[0], client_secret=SECRETS["client_secret"])
    down = msgspec.structs.replace(metadata, token_endpoint=dead_url("/token"))
    failures: list[OAuthError] = []
    for where in (metadata, down):
        for client in (public, confidential):
            attempts = [
                exchange_code(
                    http,
                    where,
                    client,
                    code=SECRETS["code"],
                    code_verifier=SECRETS["code_verifier"],
                    redirect_uri=REDIRECT_URI,
                    resource=bed.p.url,
                ),
                refresh(http, where, client, refresh_token=SECRETS["refresh_token"], resource=bed.p.url),
            ]
            for attempt in attempts:
                with pytest.raises(OAuthError) as caught:
                    await attempt
                failures.append(caught.value)
        for secret in (GATEWAY[1], SECRETS["client_secret"]):
            with pytest.raises(OAuthError) as caught:
                await exchange_token(
                    http,
                    token_endpoint=where.token_endpoint.replace(bed.a.url, bed.b.url),
                    subject_token=SECRETS["subject_token"],
                    audience="x",
                    client_id=GATEWAY[0],
                    client_secret=secret,
                )
            failures.append(caught.value)
    assert len(failures) == 12
    for failure in failures:
        assert_no_secret(failure)


async def test_secrets_a_server_echoes_back_are_hidden_from_the_error() -> None:
    def echoing(request: httpx.Request) -> httpx.Response:
        basic = base64.b64decode(request.headers.get("authorization", "Basic ").split()[1]).decode()
        said = f"you sent {request.content.decode()} as {basic}"
        return httpx.Response(400, json={"error": "invalid_request", "error_description": said})

    metadata = AuthServerMetadata(issuer="https://as.test", token_endpoint="https://as.test/token")
    client = ClientRegistration(client_id="c", client_secret=SECRETS["client_secret"])
    async with handler_client(echoing) as http:
        with pytest.raises(TokenRequestFailed) as caught:
            await exchange_code(
                http,
                metadata,
                client,
                code=SECRETS["code"],
                code_verifier=SECRETS["code_verifier"],
                redirect_uri="https://gw.test/cb",
                resource="https://mcp.test",
            )
        assert "invalid_request" in str(caught.value) and "you sent" in str(caught.value)
        assert_no_secret(caught.value)
        with pytest.raises(TokenRequestFailed) as caught:
            await exchange_token(
                http,
                token_endpoint="https://as.test/token",
                subject_token=SECRETS["subject_token"],
                audience="a",
                client_id="c",
                client_secret=SECRETS["client_secret"],
            )
        assert_no_secret(caught.value)


def test_token_sets_and_registrations_do_not_show_their_secrets_in_repr() -> None:
    tokens = TokenSet(access_token=SECRETS["subject_token"], refresh_token=SECRETS["refresh_token"], issuer="i")
    client = ClientRegistration(client_id="c", client_secret=SECRETS["client_secret"])
    for shown in (repr(tokens), str(tokens), repr(client), str(client)):
        assert not any(secret in shown for secret in SECRETS.values())
    assert "issuer='i'" in repr(tokens) and "client_id='c'" in repr(client)

"""The client side of OAuth flows in tests, written out with httpx against the testbed's servers.

`sign_in` runs a whole authorization-code + PKCE flow for a fresh public client as a chosen user;
`connected` opens an official SDK client that presents a token; the rest are the steps.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
from joserfc import jwt
from joserfc.jwk import KeySet
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.servers.oauth_browser import REDIRECT_URI

__all__ = [
    "authorize",
    "connected",
    "pkce",
    "redirected_to",
    "register",
    "short_lived_tokens",
    "sign_in",
    "stats",
    "verified",
    "whoami",
]


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


async def register(http: httpx.AsyncClient, issuer: str, **metadata: Any) -> dict[str, Any]:
    body = {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", **metadata}
    body.setdefault("grant_types", ["authorization_code", "refresh_token"])
    response = await http.post(f"{issuer}/register", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def redirected_to(response: httpx.Response) -> dict[str, str]:
    """The query of the redirect an authorization request answered (it must be one, to REDIRECT_URI)."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


async def authorize(
    http: httpx.AsyncClient, issuer: str, client_id: str, challenge: str, **params: str
) -> httpx.Response:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "state": "the-state",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **params,
    }
    return await http.get(f"{issuer}/authorize", params=query)


async def sign_in(http: httpx.AsyncClient, issuer: str, *, user: str | None = "alice", **params: str) -> dict[str, Any]:
    """The token response of a full authorization-code flow by a new public client, signed in as `user`
    (without a login_hint if None)."""
    client = await register(http, issuer)
    verifier, challenge = pkce()
    hint = {"login_hint": user} if user else {}
    code = redirected_to(await authorize(http, issuer, client["client_id"], challenge, **hint, **params))["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    form |= {"client_id": client["client_id"], "code_verifier": verifier}
    response = await http.post(f"{issuer}/token", data=form)
    assert response.status_code == 200, response.text
    return {**response.json(), "client_id": client["client_id"]}


async def verified(http: httpx.AsyncClient, issuer: str, token: str) -> jwt.Token:
    """`token` decoded with the issuer's published keys (found through its RFC 8414 metadata)."""
    parts = urlsplit(issuer)
    metadata = (
        await http.get(f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{parts.path}")
    ).json()
    keys = KeySet.import_key_set((await http.get(metadata["jwks_uri"])).json())
    return jwt.decode(token, keys, algorithms=["RS256"])


async def stats(http: httpx.AsyncClient, issuer: str) -> dict[str, Any]:
    return dict((await http.get(f"{issuer}/test/stats")).json())


@contextlib.asynccontextmanager
async def short_lived_tokens(http: httpx.AsyncClient, issuer: str) -> AsyncIterator[None]:
    """Access tokens issued meanwhile live 1 s."""
    await http.post(f"{issuer}/test/token-ttl", params={"seconds": 1})
    try:
        yield
    finally:
        await http.post(f"{issuer}/test/token-ttl", params={"seconds": 300})


@contextlib.asynccontextmanager
async def connected(url: str, token: str, mode: str, **options: Any) -> AsyncIterator[Client]:
    """An SDK client of `url` presenting `token`; `options` go to Client (message_handler, ...)."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, cache=None, **options) as client,
    ):
        yield client


async def whoami(client: Client) -> dict[str, Any]:
    result = await client.call_tool("whoami", {})
    assert not result.is_error, result
    return dict(result.structured_content or {})

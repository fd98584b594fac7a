"""The gateway as an OAuth client of a backend's authorization server: registration, sign-in, tokens.

RFC 7591 registration of a public client; the authorization request (PKCE S256, RFC 8707
`resource`); the code exchange; refresh (rotating or not); RFC 8693 token exchange as a
confidential client. Every call takes the caller's httpx client (the caller closes it) and the
metadata found by `shared.oauth.discovery`. Errors are the `shared.oauth.http` tree; a refresh the server
refuses (`invalid_grant`) is `RefreshRefused`, anything else that fails a token request,
an unreachable server included, is its parent `TokenRequestFailed`. Not here: storing tokens,
the callback route, deciding when to refresh.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple
from urllib.parse import quote, urlencode, urlsplit

import httpx
import msgspec

from shared.oauth.discovery import AuthServerMetadata
from shared.oauth.http import (
    OAuthError,
    RefreshRefused,
    RegistrationFailed,
    TokenRequestFailed,
    decode,
    refusal,
    send,
)
from shared.oauth.tokens import TokenSet
from shared.redact import redact_url

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "TOKEN_EXCHANGE",
    "AuthorizationRequest",
    "ClientRegistration",
    "authorization_request",
    "exchange_code",
    "exchange_token",
    "refresh",
    "register_client",
]

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
"""RFC 8693 grant type."""
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
"""RFC 8693 token type of the subject token sent and the token asked for."""


class ClientRegistration(msgspec.Struct, frozen=True, kw_only=True):
    """The gateway's client at one authorization server: registered (RFC 7591) or configured. Without a
    secret it is a public client; with one it authenticates as `token_endpoint_auth_method` says."""

    client_id: str
    client_secret: str | None = None
    token_endpoint_auth_method: str = "client_secret_basic"  # RFC 7591 section 2: the default

    def __repr__(self) -> str:
        secret = "***" if self.client_secret else None
        return (
            f"ClientRegistration(client_id={self.client_id!r}, client_secret={secret!r}, "
            f"token_endpoint_auth_method={self.token_endpoint_auth_method!r})"
        )


class AuthorizationRequest(NamedTuple):
    """Where to send the user's browser, and the PKCE verifier to keep (secret) for the code exchange."""

    url: str
    code_verifier: str


class _RegistrationRequest(msgspec.Struct, kw_only=True):
    """RFC 7591 section 2 client metadata, as the gateway registers itself."""

    redirect_uris: list[str]
    client_name: str
    token_endpoint_auth_method: str = "none"
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    response_types: tuple[str, ...] = ("code",)


class _TokenResponse(msgspec.Struct):
    """RFC 6749 section 5.1 (RFC 8693 section 2.2.1 adds issued_token_type, which changes nothing here)."""

    access_token: str
    token_type: str
    expires_in: float | None = None
    refresh_token: str | None = None
    scope: str | None = None


_registration = msgspec.json.Decoder(ClientRegistration)
_token_response = msgspec.json.Decoder(_TokenResponse, strict=False)  # some servers send expires_in as a string


async def register_client(
    http: httpx.AsyncClient, metadata: AuthServerMetadata, *, redirect_uri: str, client_name: str
) -> ClientRegistration:
    """A new public client at the server (code and refresh grants, `redirect_uri`), by RFC 7591 registration."""
    if metadata.registration_endpoint is None:
        shown = redact_url(metadata.issuer)
        raise RegistrationFailed(
            f"{shown} offers no dynamic client registration (RFC 7591): configure a client id for this backend",
            url=shown,
        )
    body = msgspec.json.encode(_RegistrationRequest(redirect_uris=[redirect_uri], client_name=client_name))
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    reply = await send(
        http, "POST", metadata.registration_endpoint, failure=RegistrationFailed, content=body, headers=headers
    )
    if not 200 <= reply.status < 300:
        raise refusal(reply, what="client registration", failure=RegistrationFailed)
    return decode(reply, _registration, what="client registration", failure=RegistrationFailed)


def authorization_request(
    metadata: AuthServerMetadata,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    resource: str,
    scope: str | None = None,
) -> AuthorizationRequest:
    """The authorization URL for a code flow with PKCE S256 for `resource`, and its fresh code verifier."""
    shown = redact_url(metadata.issuer)
    if metadata.authorization_endpoint is None:
        raise OAuthError(f"{shown} has no authorization endpoint: users cannot sign in there", url=shown)
    if "S256" not in metadata.code_challenge_methods_supported:
        raise OAuthError(
            f"{shown} does not announce PKCE S256 (code_challenge_methods_supported), which sign-in requires",
            url=shown,
        )
    verifier = secrets.token_urlsafe(64)  # 86 characters of the 43..128 RFC 7636 allows
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=")
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": challenge.decode("ascii"),
        "code_challenge_method": "S256",
        "resource": resource,
    }
    if scope:
        params["scope"] = scope
    endpoint = urlsplit(metadata.authorization_endpoint)
    query = f"{endpoint.query}&{urlencode(params)}" if endpoint.query else urlencode(params)  # RFC 6749 3.1 keeps it
    return AuthorizationRequest(endpoint._replace(query=query).geturl(), verifier)


async def exchange_code(
    http: httpx.AsyncClient,
    metadata: AuthServerMetadata,
    client: ClientRegistration,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    resource: str,
) -> TokenSet:
    """The tokens an authorization code (with its PKCE verifier) is worth, for `resource`."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": code_verifier,
        "redirect_uri": redirect_uri,
        "resource": resource,
    }
    answer = await _token_request(
        http, metadata.token_endpoint, client, form, what="code exchange", hidden=(code, code_verifier)
    )
    return _token_set(answer, issuer=metadata.issuer, client_id=client.client_id)


async def refresh(
    http: httpx.AsyncClient,
    metadata: AuthServerMetadata,
    client: ClientRegistration,
    *,
    refresh_token: str,
    resource: str,
) -> TokenSet:
    """New tokens for `resource` from a refresh token; it stays the refresh token unless the server rotates it.

    RefreshRefused when the server refuses the grant (sign in again); TokenRequestFailed otherwise."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "resource": resource}
    answer = await _token_request(
        http, metadata.token_endpoint, client, form, what="refresh", hidden=(refresh_token,), refused=RefreshRefused
    )
    # RFC 6749 section 6: without a new refresh token the old one stays good
    return _token_set(answer, issuer=metadata.issuer, client_id=client.client_id, refresh_token=refresh_token)


async def exchange_token(
    http: httpx.AsyncClient,
    *,
    token_endpoint: str,
    subject_token: str,
    audience: str,
    client_id: str,
    client_secret: str,
    scopes: Sequence[str] = (),
) -> TokenSet:
    """An access token for `audience` in exchange for the user's `subject_token` (RFC 8693), the gateway
    authenticating as a confidential client with client_secret_basic."""
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "requested_token_type": ACCESS_TOKEN_TYPE,
        "audience": audience,
    }
    if scopes:
        form["scope"] = " ".join(scopes)
    client = ClientRegistration(client_id=client_id, client_secret=client_secret)
    answer = await _token_request(http, token_endpoint, client, form, what="token exchange", hidden=(subject_token,))
    return _token_set(answer, issuer=None, client_id=client_id)


async def _token_request(
    http: httpx.AsyncClient,
    endpoint: str,
    client: ClientRegistration,
    form: Mapping[str, str],
    *,
    what: str,
    hidden: tuple[str, ...],
    refused: type[TokenRequestFailed] = TokenRequestFailed,
) -> _TokenResponse:
    """POST `form` to the token endpoint as `client`; `refused` for `invalid_grant`, TokenRequestFailed otherwise."""
    body, headers = dict(form), {"Accept": "application/json"}
    if client.client_secret is None or client.token_endpoint_auth_method == "none":
        body["client_id"] = client.client_id
    elif client.token_endpoint_auth_method == "client_secret_post":
        body |= {"client_id": client.client_id, "client_secret": client.client_secret}
    else:
        headers["Authorization"] = _basic(client.client_id, client.client_secret)
    reply = await send(http, "POST", endpoint, failure=TokenRequestFailed, form=body, headers=headers)
    if not 200 <= reply.status < 300:
        failed = refusal(reply, what=what, failure=TokenRequestFailed, secrets=(*hidden, client.client_secret))
        if failed.error == "invalid_grant":
            raise refused(failed.message, url=failed.url, error=failed.error)
        raise failed
    answer = decode(reply, _token_response, what="token response", failure=TokenRequestFailed)
    if answer.token_type.lower() != "bearer":
        raise TokenRequestFailed(
            f"{what} at {reply.url} issued a token of token type {answer.token_type!r}; only Bearer tokens are used",
            url=reply.url,
        )
    return answer


def _basic(client_id: str, client_secret: str) -> str:
    """RFC 6749 section 2.3.1: both parts form-urlencoded before they are joined and base64-encoded."""
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def _token_set(
    answer: _TokenResponse, *, issuer: str | None, client_id: str, refresh_token: str | None = None
) -> TokenSet:
    """What the gateway keeps of a token response; `refresh_token` stands in when the answer carries none."""
    now = time.time()
    expires_at = None if answer.expires_in is None else now + answer.expires_in
    return TokenSet(
        issued_at=now,
        access_token=answer.access_token,
        refresh_token=answer.refresh_token or refresh_token,
        expires_at=expires_at,
        scope=answer.scope,
        issuer=issuer,
        client_id=client_id,
    )

"""The gateway as an OAuth 2.1 resource server: bearer JWTs checked at the MCP endpoints.

`JwtVerifier` checks a token's signature against the issuer's keys (fetched once, fetched again
when a token names a key it does not know, at most every `refetch_interval`), then `iss`, `aud`
(it must contain the gateway's audience), `exp` and `nbf` (with a small leeway) and the required
scopes. A verified token is remembered until it expires, so the per-request cost is one dict
lookup. `BearerAuth` is the plain ASGI middleware that answers 401 / 403 with the
`WWW-Authenticate` challenge pointing at the RFC 9728 metadata, and hands the Principal to the
endpoints in `scope["auth"]`. Tokens never reach a log line or an error text.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization

from aggregator.auth.principal import Principal
from aggregator.transport.http_common import ASGIApp, Receive, Scope, Send, send_bytes
from shared.oauth.discovery import discover_authorization_server
from shared.protocol.errors import InvalidRequest
from shared.protocol.jsonrpc import error_response

__all__ = [
    "BearerAuth",
    "InsufficientScope",
    "InvalidToken",
    "JwtVerifier",
    "issuer_keys",
    "protected_resource_metadata",
]

log = logging.getLogger("aggregator.auth")

KeysFetcher = Callable[[], Awaitable[KeySetSerialization]]
"""Fetches the issuer's JWKS document."""

_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
_CACHE_SIZE = 10_000


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired, or for someone else; the message says which."""


class InsufficientScope(Exception):
    def __init__(self, missing: Iterable[str]) -> None:
        self.missing = sorted(missing)
        super().__init__(f"the token lacks the scope(s) {' '.join(self.missing)}")


class JwtVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        fetch_keys: KeysFetcher,
        required_scopes: Iterable[str] = (),
        leeway: float = 30.0,
        refetch_interval: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.required_scopes = frozenset(required_scopes)
        self.leeway = leeway
        self.refetch_interval = refetch_interval
        self._fetch_keys = fetch_keys
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._fetching: asyncio.Lock = asyncio.Lock()
        self._verified: OrderedDict[str, Principal] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        """The Principal a valid token stands for; InvalidToken or InsufficientScope otherwise."""
        known = self._verified.get(token)
        if known is not None and known.expires_at + self.leeway > self._clock():
            return known
        principal = await self._verify(token)
        self._verified[token] = principal
        if len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> Principal:
        keys = await self._keys_for(token)
        try:
            claims = jwt.decode(token, keys, algorithms=_ALGORITHMS).claims
        except JoseError as exc:
            raise InvalidToken(f"the token's signature does not verify ({exc.error})") from None
        except (ValueError, TypeError):
            raise InvalidToken("the token is not a JWT") from None
        now = self._clock()
        if claims.get("iss") != self.issuer:
            raise InvalidToken(f"the token was issued by {claims.get('iss')!r}, not by {self.issuer!r}")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
        if self.audience not in audiences:
            raise InvalidToken(f"the token is not for this gateway (its audience is not {self.audience!r})")
        expires = claims.get("exp")
        if not isinstance(expires, int | float) or expires + self.leeway <= now:
            raise InvalidToken("the token has expired")
        not_before = claims.get("nbf")
        if isinstance(not_before, int | float) and not_before - self.leeway > now:
            raise InvalidToken("the token is not valid yet")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("the token names no subject")
        scopes = _scopes(claims)
        if not self.required_scopes <= scopes:
            raise InsufficientScope(self.required_scopes - scopes)
        client_id = claims.get("client_id") or claims.get("azp")
        return Principal(
            subject=subject,
            token=token,
            scopes=scopes,
            expires_at=float(expires),
            client_id=client_id if isinstance(client_id, str) else None,
        )

    async def _keys_for(self, token: str) -> KeySet:
        """The issuer's keys, fetched again when the token names a key id they lack (rotation)."""
        kid = _key_id(token)
        if self._keys is None or (kid is not None and not _has_key(self._keys, kid)):
            await self._refresh_keys()
        if self._keys is None:
            raise InvalidToken("the issuer's signing keys cannot be fetched; retry shortly")
        return self._keys

    async def _refresh_keys(self) -> None:
        async with self._fetching:
            if self._clock() - self._fetched_at < self.refetch_interval:
                return  # a burst of tokens with an unknown key id fetches once
            self._fetched_at = self._clock()
            try:
                self._keys = KeySet.import_key_set(await self._fetch_keys())
            except Exception as exc:  # a key server that is down must not fail tokens it already vouched for
                log.warning("cannot fetch the signing keys of %s: %s", self.issuer, exc)


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    scopes = claims.get("scp")
    return frozenset(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else frozenset()


def _key_id(token: str) -> str | None:
    header = token.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, TypeError):
        return None
    kid = decoded.get("kid") if isinstance(decoded, dict) else None
    return kid if isinstance(kid, str) else None


def _has_key(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def issuer_keys(http: httpx.AsyncClient, issuer: str, jwks_url: str | None) -> KeysFetcher:
    """Fetches the issuer's JWKS: from `jwks_url`, else from the `jwks_uri` of its metadata."""

    async def fetch() -> KeySetSerialization:
        url = jwks_url or (await discover_authorization_server(http, issuer)).jwks_uri
        if url is None:
            raise InvalidToken(f"the issuer {issuer} publishes no jwks_uri; set aggregator.oauth.jwksUrl")
        response = await http.get(url)
        response.raise_for_status()
        document: KeySetSerialization = response.json()
        return document

    return fetch


def protected_resource_metadata(*, resource: str, issuer: str, scopes: Iterable[str]) -> dict[str, Any]:
    """RFC 9728: what a client needs to find where to get a token for this gateway."""
    return {
        "resource": resource,
        "authorization_servers": [issuer],
        "scopes_supported": sorted(scopes),
        "bearer_methods_supported": ["header"],
    }


class BearerAuth:
    """Plain ASGI: requests to the MCP endpoints need a valid bearer token; the rest pass untouched."""

    def __init__(self, app: ASGIApp, verifier: JwtVerifier, *, paths: Iterable[str], metadata_url: str) -> None:
        self.app = app
        self.verifier = verifier
        self.paths = frozenset(paths)
        self.metadata_url = metadata_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        try:
            if token is None:
                raise InvalidToken("send Authorization: Bearer <token> (this gateway is protected by OAuth)")
            scope["auth"] = await self.verifier.verify(token)
        except InvalidToken as exc:
            await self._refuse(send, 401, "invalid_token", str(exc))
            return
        except InsufficientScope as exc:
            await self._refuse(send, 403, "insufficient_scope", str(exc), scope=" ".join(exc.missing))
            return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, status: int, error: str, description: str, scope: str | None = None) -> None:
        params = [f'error="{error}"', f'error_description="{_quoted(description)}"']
        if scope:
            params.append(f'scope="{scope}"')
        params.append(f'resource_metadata="{self.metadata_url}"')
        challenge = ("Bearer " + ", ".join(params)).encode("latin-1", "replace")
        body = error_response(None, InvalidRequest(f"Unauthorized: {description}"))
        await send_bytes(send, status, body, headers=[(b"www-authenticate", challenge)])


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")

"""Verifying JWTs of an issuer found over HTTP, the way a resource server or a token-exchange peer does.

The issuer's RFC 8414 metadata (OIDC discovery as a fallback) names its `jwks_uri`; the key set is
fetched on first use and again whenever a token names a `kid` not yet seen (key rotation), at most
once per token and without a rate limit (a test server). Used by the protected backend (its bearer
tokens) and by the authorization server (subject tokens of the issuers it trusts). Signature
algorithms: RS256 and ES256.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

__all__ = ["InvalidToken", "IssuerKeys", "metadata_urls", "unverified", "verify_with"]

_ALGORITHMS = ["RS256", "ES256"]


class InvalidToken(Exception):
    """A token that is not a JWT this issuer signed, or whose claims do not hold; the message says which."""


def metadata_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata lives: RFC 8414 path insertion first, then OIDC discovery's path append."""
    parts = urlsplit(issuer)
    origin, path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
    return [
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}{path}/.well-known/openid-configuration",
    ]


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (header, claims) of a compact JWT, unverified: to pick the issuer and key before verifying."""
    try:
        compact = jws.extract_compact(token.encode())
        claims = json.loads(compact.payload)
    except (JoseError, ValueError) as exc:
        raise InvalidToken(f"not a compact JWT: {exc}") from exc
    if not isinstance(claims, dict):
        raise InvalidToken("the JWT's payload is not a JSON object")
    return dict(compact.headers()), claims


def verify_with(keys: KeySet, token: str, issuer: str, audience: str | None = None) -> dict[str, Any]:
    """The claims of `token` once its signature (by one of `keys`), `iss`, `sub`, `exp`, `nbf` and `aud` hold."""
    options: dict[str, Any] = {
        "iss": {"essential": True, "value": issuer},
        "sub": {"essential": True},
        "exp": {"essential": True},
    }
    if audience is not None:
        options["aud"] = {"essential": True, "value": audience}
    try:
        decoded = jwt.decode(token, keys, algorithms=_ALGORITHMS)
        jwt.JWTClaimsRegistry(**options).validate(decoded.claims)
    except (JoseError, ValueError) as exc:
        raise InvalidToken(f"{type(exc).__name__}: {exc}") from exc
    return dict(decoded.claims)


class IssuerKeys:
    """The published signing keys of one issuer, fetched over HTTP."""

    def __init__(self, issuer: str, http: httpx.AsyncClient) -> None:
        self.issuer = issuer
        self.keys = KeySet([])
        self._http = http
        self._jwks_uri: str | None = None

    async def verify(self, token: str, *, audience: str | None = None) -> dict[str, Any]:
        """The claims of `token`, checked as `verify_with` does, the key set refetched if it lacks the token's kid."""
        await self.load(token)
        return verify_with(self.keys, token, self.issuer, audience)

    async def load(self, token: str) -> None:
        """Make sure the key `token` names is here if the issuer publishes it (one refetch when it is not)."""
        kid = unverified(token)[0].get("kid")
        if self._knows(kid):
            return
        try:
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover_jwks_uri()
            response = await self._http.get(self._jwks_uri)
            response.raise_for_status()
            self.keys = KeySet.import_key_set(response.json())
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            raise InvalidToken(f"cannot fetch the keys of {self.issuer}: {exc!r}") from exc

    def _knows(self, kid: object) -> bool:
        if kid is None:
            return len(self.keys.keys) == 1
        return any(key.kid == kid for key in self.keys.keys)

    async def _discover_jwks_uri(self) -> str:
        for url in metadata_urls(self.issuer):
            response = await self._http.get(url)
            if response.status_code == 200:
                metadata = response.json()
                if metadata.get("issuer") != self.issuer:  # RFC 8414 section 3.3
                    raise InvalidToken(f"metadata at {url} names issuer {metadata.get('issuer')!r}, not {self.issuer}")
                return str(metadata["jwks_uri"])
        raise InvalidToken(f"no authorization server metadata for {self.issuer} at {metadata_urls(self.issuer)}")

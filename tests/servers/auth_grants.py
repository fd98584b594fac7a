"""The test authorization server's records and grants, on authlib's server-side classes.

Records (all in memory): `Client` (static or registered), `AuthorizationCode`, `RefreshGrant`.
Grants: authorization_code with PKCE S256 required (authlib's `CodeChallenge`, narrowed to S256),
refresh_token (rotating: each use answers a new refresh token and forgets the old one), and
RFC 8693 token exchange, which authlib does not implement (`authlib.oauth2.rfc8693` is empty).
Every grant names a `Principal`: the subject and the audience (RFC 8707 resources) its access
token is for, which `AccessTokens` turns into a JWT (RFC 9068 profile, `typ: at+jwt`).

The grants reach the server's state through `self.server` (`tests.servers.auth_server.AuthServer`).
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Request,
    TokenMixin,
    UnauthorizedClientError,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "TOKEN_EXCHANGE",
    "AccessTokens",
    "AuthorizationCode",
    "AuthorizationCodeGrant",
    "Client",
    "InvalidTargetError",
    "Principal",
    "RefreshGrant",
    "RefreshTokenGrant",
    "ResourceIndicators",
    "S256CodeChallenge",
    "SigningKeys",
    "TokenExchangeGrant",
    "safe_description",
]

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
SUBJECT_TOKEN_TYPES = (
    ACCESS_TOKEN_TYPE,
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:jwt",
)
ALL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


class InvalidTargetError(OAuth2Error):
    """RFC 8707 section 2: a `resource` (or token-exchange `audience`) the server will not issue a token for."""

    error = "invalid_target"


def safe_description(text: str) -> str:
    """`text` as an RFC 6749 error_description may carry it (no double quote, no backslash)."""
    return text.replace('"', "'").replace("\\", "/")


def _is_loopback(uri: str) -> bool:
    host = urlsplit(uri).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Client(ClientMixin):
    """An OAuth client: public (`auth_methods == ("none",)`) or confidential (holds a secret)."""

    client_id: str
    client_secret: str | None
    auth_methods: tuple[str, ...]
    grant_types: tuple[str, ...]
    redirect_uris: tuple[str, ...] = ()
    scope: str | None = None
    any_loopback_redirect: bool = False  # static clients: any loopback redirect URI, any port (RFC 8252 7.3)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return self.scope or ""
        if self.scope is None:
            return scope
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris or (self.any_loopback_redirect and _is_loopback(redirect_uri))

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and hmac.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in self.auth_methods

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass(frozen=True)
class Principal:
    """Who a token is for (`sub`) and where it may be used (`aud`: the RFC 8707 resources, or empty)."""

    sub: str
    audience: tuple[str, ...]

    def get_user_id(self) -> str:
        return self.sub


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    sub: str
    resources: tuple[str, ...]
    code_challenge: str
    code_challenge_method: str
    expires_at: float

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class RefreshGrant(TokenMixin):
    """What a refresh token stands for: the client, the user, the scope and resources first granted."""

    token: str
    client_id: str
    sub: str
    scope: str
    resources: tuple[str, ...]

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope


def _resources(request: OAuth2Request) -> tuple[str, ...]:
    return tuple(dict.fromkeys(request.payload.datalist.get("resource", [])))


def _narrowed(request: OAuth2Request, granted: tuple[str, ...]) -> tuple[str, ...]:
    """The resources a token request asks for (RFC 8707 section 2.2), which must be among those granted."""
    asked = _resources(request)
    if not asked:
        return granted
    if not set(asked) <= set(granted):
        raise InvalidTargetError(safe_description(f"resource {sorted(set(asked) - set(granted))} was not granted"))
    return asked


class S256CodeChallenge(CodeChallenge):
    """PKCE as OAuth 2.1 has it: every authorization request carries an S256 challenge."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: grants.BaseGrant, redirect_uri: str) -> None:
        if grant.request.payload.data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256")
        super().validate_code_challenge(grant, redirect_uri)


class ResourceIndicators:
    """RFC 8707 at the authorization endpoint: each `resource` is an absolute URI without a fragment."""

    def __call__(self, grant: grants.BaseGrant) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.validate)

    def validate(self, grant: grants.BaseGrant, redirect_uri: str) -> None:
        for resource in _resources(grant.request):
            parts = urlsplit(resource)
            if not parts.scheme or not parts.netloc or parts.fragment:
                raise InvalidTargetError(safe_description(f"resource {resource} is not an absolute URI"))


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        self.server.codes[code] = AuthorizationCode(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            sub=request.user,
            resources=_resources(request),
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            expires_at=time.time() + 60,
        )
        self.server.stats.authorizations += 1

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        found: AuthorizationCode | None = self.server.codes.get(code)
        if found is None or found.client_id != client.client_id or found.expires_at < time.time():
            return None
        return found

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        self.server.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Principal:
        return Principal(authorization_code.sub, _narrowed(self.request, authorization_code.resources))


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshGrant | None:
        found: RefreshGrant | None = self.server.refresh_tokens.get(refresh_token)
        return found

    def authenticate_user(self, refresh_token: RefreshGrant) -> Principal:
        return Principal(refresh_token.sub, _narrowed(self.request, refresh_token.resources))

    def revoke_old_credential(self, refresh_token: RefreshGrant) -> None:
        self.server.refresh_tokens.pop(refresh_token.token, None)


class TokenExchangeGrant(grants.BaseGrant, grants.TokenEndpointMixin):
    """RFC 8693: a confidential client trades a JWT of a trusted issuer for this server's access token.

    The new token keeps the subject token's `sub`, is for the requested `audience`/`resource`
    (the client's id when none is asked for), has the requested scope (the subject token's when
    none is), and comes without a refresh token. Subject token keys are loaded before the grant
    runs (`AuthServer.load_subject_keys`), since authlib's grants are synchronous.
    """

    GRANT_TYPE = TOKEN_EXCHANGE
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'")
        form = self.request.form
        subject_token, subject_token_type = form.get("subject_token"), form.get("subject_token_type")
        if not subject_token or not subject_token_type:
            raise InvalidRequestError("Missing 'subject_token' or 'subject_token_type'")
        if subject_token_type not in SUBJECT_TOKEN_TYPES:
            raise InvalidRequestError(f"Unsupported subject_token_type: {subject_token_type}")
        if form.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(f"Only {ACCESS_TOKEN_TYPE} tokens are issued")
        if form.get("actor_token"):
            raise InvalidRequestError("actor_token is not supported")
        self.request.client = client
        self.request.credential = self.server.verify_subject_token(subject_token)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        subject: dict[str, Any] = self.request.credential
        datalist = self.request.payload.datalist
        audience = tuple(dict.fromkeys([*datalist.get("audience", []), *datalist.get("resource", [])]))
        self.request.user = Principal(str(subject["sub"]), audience or (self.client.client_id,))
        scope = self.request.payload.scope or subject.get("scope")
        token: dict[str, Any] = self.generate_token(user=self.request.user, scope=scope, include_refresh_token=False)
        token["issued_token_type"] = ACCESS_TOKEN_TYPE
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class SigningKeys:
    """The server's RS256 keys: the newest signs, the published ones verify (and are served as the JWKS)."""

    def __init__(self) -> None:
        self.published: list[RSAKey] = []
        self.rotate(keep_old=False)

    def rotate(self, *, keep_old: bool) -> str:
        """A new signing key (its RFC 7638 thumbprint is its kid); the old ones stay published if `keep_old`."""
        key = RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, auto_kid=True)
        self.published = [key, *self.published] if keep_old else [key]
        return str(key.kid)

    @property
    def signing(self) -> KeySet:
        return KeySet([self.published[0]])  # a key set, so joserfc names its kid in the JWT header

    @property
    def verifying(self) -> KeySet:
        return KeySet(list(self.published))

    def jwks(self) -> dict[str, Any]:
        return dict(self.verifying.as_dict(private=False))


class AccessTokens(BearerTokenGenerator):
    """RFC 9068 JWT access tokens. authlib's own `JWTBearerTokenGenerator` leaves RFC 8707 (`aud` from
    `resource`) as a TODO and sets no `nbf`, so the claims are built here, all in one place."""

    def __init__(self, issuer: str, keys: SigningKeys, ttl: int) -> None:
        super().__init__(self.access_token, self.refresh_token, self.expires_in)
        self.issuer, self.keys, self.ttl = issuer, keys, ttl

    def expires_in(self, client: Client, grant_type: str) -> int:
        return self.ttl

    def access_token(self, client: Client, grant_type: str, user: Principal, scope: str) -> str:
        now = time.time()  # whole seconds: iat and nbf round down (never early), exp up (never short of expires_in)
        audience = user.audience or (client.client_id,)
        claims = {
            "iss": self.issuer,
            "sub": user.sub,
            "aud": audience[0] if len(audience) == 1 else list(audience),
            "exp": math.ceil(now + self.ttl),
            "iat": int(now),
            "nbf": int(now),
            "scope": scope,
            "client_id": client.client_id,
            "jti": generate_token(24),
        }
        return jwt.encode({"alg": "RS256", "typ": "at+jwt"}, claims, self.keys.signing)

    @staticmethod
    def refresh_token(**_: Any) -> str:
        return generate_token(48)

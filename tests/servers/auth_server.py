"""A real OAuth 2.1 authorization server for tests, on authlib's server-side classes, auto-approving.

    python -m tests.servers.auth_server --port 0 [--host 127.0.0.1] [--issuer-name NAME]
        [--token-ttl SECONDS] [--user SUB]... [--client ID[:SECRET]]... [--trust ISSUER_URL]...

Prints `READY <issuer>` once listening. The issuer is `http://HOST:PORT`, or `http://HOST:PORT/NAME`
with `--issuer-name` (a path issuer, as Keycloak realms have); every endpoint below lives under it.

Endpoints (ISSUER is the issuer URL, PATH its path):
  GET  /.well-known/oauth-authorization-server[PATH]   RFC 8414 metadata
  GET  /.well-known/openid-configuration[PATH], ISSUER/.well-known/openid-configuration   the same
  GET  ISSUER/jwks        the published RS256 keys (each with its kid)
  GET  ISSUER/authorize   authorization code + PKCE S256 (required), signs the user in and approves at
                          once: redirects to redirect_uri with code, state and iss (RFC 9207). The user
                          is `login_hint=<sub>` if given, else the current one (the first --user, or
                          what /test/user set); an unknown sub is refused with access_denied.
                          `resource` (RFC 8707, repeatable) becomes the access token's `aud`.
  POST ISSUER/token       grant types authorization_code, refresh_token (rotating), and RFC 8693
                          token exchange (urn:ietf:params:oauth:grant-type:token-exchange) for
                          confidential clients, of a JWT from this server or a --trust issuer
  POST ISSUER/register    RFC 7591 dynamic registration, open: public clients
                          (token_endpoint_auth_method none) and confidential ones

Access tokens are RS256 JWTs (`typ: at+jwt`) with iss, sub, aud, exp, iat, nbf, scope, client_id,
jti, living --token-ttl seconds (default 300). Static clients from --client are confidential with
a secret (client_secret_basic or _post; every grant type) or public without one; both accept any
loopback redirect URI. Default users: alice, bob.

Test switches:
  POST ISSUER/test/user?sub=bob               who /authorize signs in from now on (without login_hint)
  POST ISSUER/test/revoke?sub=alice           forget every refresh token of alice: her refreshes fail
  POST ISSUER/test/token-ttl?seconds=N        access tokens issued from now on live N seconds
  POST ISSUER/test/rotate-keys[?keep_old=0]   a new signing key; the old ones stay published unless
                                              keep_old=0. Answers {"kid": new, "published": [kids]}
  GET  ISSUER/test/stats                      {"issued": {grant_type: n}, "refused": {grant_type: n},
                                              "authorizations", "registrations", "jwks_requests"}
"""

from __future__ import annotations

import argparse
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749.requests import JsonRequest
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oauth2.rfc9207 import AuthorizationServerMetadata as IssuerParameterMetadata
from authlib.oauth2.rfc9207 import IssuerParameter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.servers.auth_grants import (
    ALL_AUTH_METHODS,
    TOKEN_EXCHANGE,
    AccessTokens,
    AuthorizationCode,
    AuthorizationCodeGrant,
    Client,
    RefreshGrant,
    RefreshTokenGrant,
    ResourceIndicators,
    S256CodeChallenge,
    SigningKeys,
    TokenExchangeGrant,
    safe_description,
)
from tests.servers.authlib_starlette import FormRequest, JsonBodyRequest, Reply
from tests.servers.http import add_address_arguments, listen, run
from tests.servers.jwks import InvalidToken, IssuerKeys, unverified, verify_with

GRANT_TYPES = ["authorization_code", "refresh_token", TOKEN_EXCHANGE]


# -- the server -----------------------------------------------------------------------------------


@dataclass
class Stats:
    issued: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    authorizations: int = 0
    registrations: int = 0
    jwks_requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "issued": dict(self.issued), "refused": dict(self.refused)}


class _Issuer(IssuerParameter):
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


class _Registration(ClientRegistrationEndpoint):
    """RFC 7591, open to anyone; `token_endpoint_auth_method: none` registers a public client (no secret)."""

    def authenticate_token(self, request: JsonRequest) -> bool:
        return True

    def get_server_metadata(self) -> dict[str, Any]:
        return self.server.metadata

    def generate_client_info(self, request: JsonRequest) -> dict[str, Any]:
        info: dict[str, Any] = super().generate_client_info(request)
        if request.payload.data.get("token_endpoint_auth_method") == "none":
            del info["client_secret"], info["client_secret_expires_at"]
        return info

    def save_client(self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: JsonRequest) -> Client:
        method = client_metadata["token_endpoint_auth_method"]
        client = Client(
            client_id=client_info["client_id"],
            client_secret=client_info.get("client_secret"),
            auth_methods=(method,),
            grant_types=tuple(client_metadata.get("grant_types", ["authorization_code"])),  # RFC 7591 default
            redirect_uris=tuple(client_metadata.get("redirect_uris", [])),
            scope=client_metadata.get("scope"),
        )
        self.server.clients[client.client_id] = client
        self.server.stats.registrations += 1
        return client


class AuthServer(AuthorizationServer):
    """authlib's `AuthorizationServer` with everything held in memory, and the test switches' state."""

    def __init__(self, issuer: str, *, users: list[str], ttl: int, trusted: list[str], clients: list[Client]) -> None:
        super().__init__()
        self.issuer = issuer
        self.users = users
        self.current_user = users[0]
        self.keys = SigningKeys()
        self.clients = {client.client_id: client for client in clients}
        self.codes: dict[str, AuthorizationCode] = {}
        self.refresh_tokens: dict[str, RefreshGrant] = {}
        self.stats = Stats()
        self.http = httpx.AsyncClient(timeout=5)
        self.trusted = {url: IssuerKeys(url, self.http) for url in trusted}
        self.metadata = self._metadata()
        self.tokens = AccessTokens(issuer, self.keys, ttl)
        self.register_token_generator("default", self.tokens)
        self.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True), ResourceIndicators()])
        self.register_grant(RefreshTokenGrant)
        self.register_grant(TokenExchangeGrant)
        self.register_endpoint(_Registration)
        self.register_extension(_Issuer(issuer))

    def _metadata(self) -> dict[str, Any]:
        metadata = AuthorizationServerMetadata(
            issuer=self.issuer,
            authorization_endpoint=f"{self.issuer}/authorize",
            token_endpoint=f"{self.issuer}/token",
            registration_endpoint=f"{self.issuer}/register",
            jwks_uri=f"{self.issuer}/jwks",
            response_types_supported=["code"],
            grant_types_supported=GRANT_TYPES,
            token_endpoint_auth_methods_supported=ALL_AUTH_METHODS,
            code_challenge_methods_supported=["S256"],
            authorization_response_iss_parameter_supported=True,
        )
        metadata.validate(metadata_classes=[IssuerParameterMetadata])
        return dict(metadata)

    # what authlib asks of a framework integration

    def query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.stats.issued[request.payload.grant_type] += 1
        if "refresh_token" in token:
            granted = request.authorization_code or request.refresh_token  # a rotated token keeps the first grant
            self.refresh_tokens[token["refresh_token"]] = RefreshGrant(
                token["refresh_token"], request.client.client_id, request.user.sub, granted.scope, granted.resources
            )

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def create_json_request(self, request: JsonRequest) -> JsonRequest:
        return request

    def handle_response(self, status: int, body: dict[str, Any] | str, headers: list[tuple[str, str]]) -> Reply:
        return Reply(status, body, list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signals: nothing here listens."""

    # token exchange: keys are fetched (async) before authlib's synchronous grant verifies

    async def load_subject_keys(self, subject_token: str | None) -> None:
        """Fetch the keys of the trusted issuer `subject_token` names, if it names one and they are not here."""
        if not subject_token:
            return
        try:
            issuer = unverified(subject_token)[1].get("iss")
            if issuer in self.trusted:
                await self.trusted[issuer].load(subject_token)
        except InvalidToken:
            return  # the grant refuses the token with the reason

    def verify_subject_token(self, subject_token: str) -> dict[str, Any]:
        """The claims of a subject token signed by this server or a trusted issuer (invalid_request otherwise)."""
        try:
            issuer = unverified(subject_token)[1].get("iss")
            if issuer == self.issuer:
                return verify_with(self.keys.verifying, subject_token, self.issuer)
            if issuer in self.trusted:
                return verify_with(self.trusted[issuer].keys, subject_token, issuer)
            reason = f"subject_token issuer {issuer!r} is not trusted here"
        except InvalidToken as exc:
            reason = f"subject_token refused: {exc}"
        raise OAuth2Error(safe_description(reason), error="invalid_request")

    # test switches

    def sign_in(self, login_hint: str | None) -> str | None:
        """The sub /authorize approves for: the hinted user, else the current one; None for an unknown user."""
        sub = login_hint or self.current_user
        return sub if sub in self.users else None

    def revoke(self, sub: str) -> int:
        """Forget every refresh token of `sub`; how many there were."""
        doomed = [token for token, grant in self.refresh_tokens.items() if grant.sub == sub]
        for token in doomed:
            del self.refresh_tokens[token]
        return len(doomed)


# -- HTTP -----------------------------------------------------------------------------------------


def build_app(server: AuthServer) -> Starlette:
    """The Starlette app serving `server` under its issuer's path."""
    base = urlsplit(server.issuer).path.rstrip("/")

    async def metadata(request: Request) -> Response:
        return JSONResponse(server.metadata)

    async def jwks(request: Request) -> Response:
        server.stats.jwks_requests += 1
        return JSONResponse(server.keys.jwks())

    async def authorize(request: Request) -> Response:
        oauth = FormRequest(request, request.query_params.multi_items())
        try:
            grant = server.get_authorization_grant(oauth)
        except OAuth2Error as error:
            error.state = oauth.payload.state
            return server.handle_error_response(oauth, error).response()
        user = server.sign_in(oauth.payload.data.get("login_hint"))
        return server.create_authorization_response(oauth, grant_user=user, grant=grant).response()

    async def token(request: Request) -> Response:
        oauth = FormRequest(request, (await request.form()).multi_items())
        grant_type = oauth.payload.grant_type
        if grant_type == TOKEN_EXCHANGE:
            await server.load_subject_keys(oauth.payload.data.get("subject_token"))
        reply: Reply = server.create_token_response(oauth)
        if reply.status >= 400:
            server.stats.refused[grant_type or ""] += 1
        return reply.response()

    async def register(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            error = {"error": "invalid_client_metadata", "error_description": "The body must be a JSON object."}
            return JSONResponse(error, status_code=400)
        reply: Reply = server.create_endpoint_response("client_registration", JsonBodyRequest(request, body))
        return reply.response()

    async def set_user(request: Request) -> Response:
        sub = request.query_params.get("sub", "")
        if sub not in server.users:
            return JSONResponse({"error": f"unknown user {sub!r}; known: {server.users}"}, status_code=400)
        server.current_user = sub
        return JSONResponse({"user": sub})

    async def revoke(request: Request) -> Response:
        return JSONResponse({"revoked": server.revoke(request.query_params.get("sub", ""))})

    async def rotate_keys(request: Request) -> Response:
        kid = server.keys.rotate(keep_old=request.query_params.get("keep_old", "1") != "0")
        return JSONResponse({"kid": kid, "published": [key.kid for key in server.keys.published]})

    async def token_ttl(request: Request) -> Response:
        try:
            server.tokens.ttl = int(request.query_params["seconds"])
        except (KeyError, ValueError):
            return JSONResponse({"error": "give the lifetime as ?seconds=N"}, status_code=400)
        return JSONResponse({"token_ttl": server.tokens.ttl})

    async def stats(request: Request) -> Response:
        return JSONResponse(server.stats.as_dict())

    well_known = [f"/.well-known/oauth-authorization-server{base}", f"/.well-known/openid-configuration{base}"]
    if base:
        well_known.append(f"{base}/.well-known/openid-configuration")
    routes = [
        *(Route(path, metadata, methods=["GET"]) for path in well_known),
        Route(f"{base}/jwks", jwks, methods=["GET"]),
        Route(f"{base}/authorize", authorize, methods=["GET"]),
        Route(f"{base}/token", token, methods=["POST"]),
        Route(f"{base}/register", register, methods=["POST"]),
        Route(f"{base}/test/user", set_user, methods=["POST"]),
        Route(f"{base}/test/revoke", revoke, methods=["POST"]),
        Route(f"{base}/test/rotate-keys", rotate_keys, methods=["POST"]),
        Route(f"{base}/test/token-ttl", token_ttl, methods=["POST"]),
        Route(f"{base}/test/stats", stats, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with server.http:
            yield

    return Starlette(routes=routes, lifespan=lifespan)


def static_client(spec: str) -> Client:
    """`ID:SECRET` a confidential client (every grant type), `ID` a public one."""
    client_id, _, secret = spec.partition(":")
    if secret:
        return Client(
            client_id,
            secret,
            ("client_secret_basic", "client_secret_post"),
            tuple(GRANT_TYPES),
            any_loopback_redirect=True,
        )
    return Client(client_id, None, ("none",), ("authorization_code", "refresh_token"), any_loopback_redirect=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_address_arguments(parser, port_required=False)
    parser.add_argument("--issuer-name", default="", help="the issuer's path: http://HOST:PORT/NAME")
    parser.add_argument("--token-ttl", type=int, default=300, help="access token lifetime in seconds")
    parser.add_argument("--user", action="append", dest="users", help="a user who can sign in (default: alice, bob)")
    parser.add_argument("--client", action="append", default=[], help="a static client ID:SECRET (or ID: public)")
    parser.add_argument("--trust", action="append", default=[], help="an issuer whose tokens may be exchanged")
    args = parser.parse_args()
    sock = listen(args.host, args.port)
    path = f"/{args.issuer_name.strip('/')}" if args.issuer_name else ""
    issuer = f"http://{args.host}:{sock.getsockname()[1]}{path}"
    server = AuthServer(
        issuer,
        users=args.users or ["alice", "bob"],
        ttl=args.token_ttl,
        trusted=args.trust,
        clients=[static_client(spec) for spec in args.client],
    )
    run(build_app(server), args.host, args.port, path, sock=sock)


if __name__ == "__main__":
    main()

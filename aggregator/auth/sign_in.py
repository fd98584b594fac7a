"""Signing users in to protected backends: core_auth_login / core_auth_logout, the callback, auth://status.

`core_auth_login {server}` answers with the backend's authorization URL (code flow, PKCE S256,
RFC 8707 resource, redirect to `{publicUrl}/oauth/callback`); the flow's state is sealed and
kept in the store, so the callback may land on any replica. The callback exchanges the code,
keeps the tokens in the vault, connects the user, and every replica shows the user's new tools.
Attempts are rate limited per user across the cluster (AuthRateLimiter) and counted per backend
(AuthMetrics). No token, code or verifier reaches a log line, a result or an error.
"""

from __future__ import annotations

import html
import logging
import secrets
import time
from typing import Any

import msgspec
from msgspec import Raw

from aggregator.auth.backend_clients import BackendClients
from aggregator.auth.principal import Principal
from aggregator.auth.user_backends import UserBackends
from aggregator.auth.user_records import user_key
from aggregator.auth.vault import TokenVault
from shared.config import AggregatorSettings, ServerSpec
from shared.crypto import TokenCipher, TokenCipherError
from shared.oauth.client import ClientRegistration, authorization_request, exchange_code
from shared.oauth.http import OAuthError
from shared.protocol.jsonrpc import raw
from shared.store.protocols import AuthMetricsStore, RateLimiter, StoreUnavailable, ValueStore

__all__ = ["AUTH_STATUS_URI", "CORE_RESOURCES", "CORE_TOOLS", "SignIn"]

log = logging.getLogger("aggregator.auth")

AUTH_STATUS_URI = "auth://status"
_STATE_TTL = 600.0
_SERVER_ARGUMENT = {
    "type": "object",
    "properties": {"server": {"type": "string", "description": "The backend to sign in to, as named in the config"}},
    "required": ["server"],
}
CORE_TOOLS: tuple[dict[str, Any], ...] = (
    {
        "name": "core_auth_login",
        "description": "Sign in to a backend that needs your own account; answers the URL to open in a browser.",
        "inputSchema": _SERVER_ARGUMENT,
    },
    {
        "name": "core_auth_logout",
        "description": "Sign out of a backend: the gateway forgets your tokens for it and hides its tools.",
        "inputSchema": _SERVER_ARGUMENT,
    },
)
CORE_RESOURCES: tuple[dict[str, Any], ...] = (
    {
        "uri": AUTH_STATUS_URI,
        "name": "auth-status",
        "description": "Which protected backends you are connected to, and how to sign in to the others",
        "mimeType": "application/json",
    },
)


class _FlowState(msgspec.Struct, kw_only=True):
    """What the callback needs to finish a sign-in (sealed: it holds the PKCE verifier)."""

    subject: str
    server: str
    verifier: str
    issuer: str
    resource: str
    client: ClientRegistration
    started: float


class SignIn:
    def __init__(
        self,
        specs: dict[str, ServerSpec],
        settings: AggregatorSettings,
        *,
        users: UserBackends,
        clients: BackendClients,
        vault: TokenVault,
        cipher: TokenCipher,
        values: ValueStore,
        rate_limiter: RateLimiter,
        metrics: AuthMetricsStore,
    ) -> None:
        self.protected = {name: spec for name, spec in specs.items() if spec.auth is not None}
        self.settings = settings
        self.users = users
        self.clients = clients
        self.vault = vault
        self.cipher = cipher
        self.values = values
        self.rate_limiter = rate_limiter
        self.metrics = metrics
        self.redirect_uri = f"{settings.base_url}/oauth/callback"

    # -- the tools ------------------------------------------------------------------------------

    async def call(self, tool: str, principal: Principal | None, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run core_auth_login / core_auth_logout; a tool result (isError with the reason when refused)."""
        if principal is None:
            return _result("Signing in to backends needs a gateway protected by OAuth (aggregator.oauth).", error=True)
        server = arguments.get("server")
        spec = self.protected.get(server) if isinstance(server, str) else None
        if spec is None or spec.auth is None:
            names = ", ".join(sorted(self.protected)) or "none"
            return _result(
                f"{server!r} is not a backend you sign in to; the ones that take your account: {names}", True
            )
        if tool == "core_auth_logout":
            return await self._logout(principal.subject, spec)
        return await self._login(principal.subject, spec)

    async def _login(self, subject: str, spec: ServerSpec) -> dict[str, Any]:
        assert spec.auth is not None
        if spec.auth.mode != "login":
            return _result(f"{spec.name} signs you in with your gateway account (single sign-on): nothing to do.")
        limit = self.settings.auth_rate_limit
        if not await self.rate_limiter.allow(_limit_key(subject), limit=limit.max_attempts, window=limit.window):
            await self.metrics.record(spec.name, "rate_limit_block")
            return _result(
                f"rate limit: more than {limit.max_attempts} sign-in attempts in {limit.window:g}s; "
                f"retry within {limit.window:g}s, when the oldest attempt leaves the window",
                error=True,
            )
        await self.metrics.record(spec.name, "login_attempt")
        try:
            target = await self.clients.target(spec)
            state = secrets.token_urlsafe(32)
            request = authorization_request(
                target.metadata,
                client_id=target.client.client_id,
                redirect_uri=self.redirect_uri,
                state=state,
                resource=target.resource,
                scope=target.scope,
            )
            flow = _FlowState(
                subject=subject,
                server=spec.name,
                verifier=request.code_verifier,
                issuer=target.metadata.issuer,
                resource=target.resource,
                client=target.client,
                started=time.time(),
            )
            sealed = self.cipher.seal(msgspec.msgpack.encode(flow), context=_state_key(state))
            await self.values.put(_state_key(state), sealed, ttl=_STATE_TTL)
        except (OAuthError, StoreUnavailable) as exc:
            await self.metrics.record(spec.name, "login_failure")
            return _result(f"cannot start signing in to {spec.name}: {exc}", error=True)
        return {
            "content": [
                {
                    "type": "text",
                    "text": f"Open this link in a browser to sign in to {spec.name} "
                    f"(valid {_STATE_TTL / 60:.0f} minutes):\n{request.url}",
                }
            ],
            "structuredContent": {"server": spec.name, "authorizationUrl": request.url},
        }

    async def _logout(self, subject: str, spec: ServerSpec) -> dict[str, Any]:
        await self.metrics.record(spec.name, "logout_attempt")
        await self.users.disconnect(subject, spec.name)
        await self.metrics.record(spec.name, "logout_success")
        return _result(f"Signed out of {spec.name}; its tools are hidden until you sign in again.")

    # -- the callback ---------------------------------------------------------------------------

    async def callback(self, query: dict[str, str]) -> tuple[int, str]:
        """Finish a sign-in from the browser's redirect: (HTTP status, a small HTML page)."""
        state = query.get("state", "")
        sealed = await self.values.take(_state_key(state)) if state else None
        if sealed is None:
            return 400, _page("This sign-in link expired or was used already", "Ask your client to sign in again.")
        try:
            flow = msgspec.msgpack.decode(self.cipher.unseal(sealed, context=_state_key(state)), type=_FlowState)
        except (TokenCipherError, msgspec.DecodeError):
            return 400, _page("This sign-in link is not valid", "Ask your client to sign in again.")
        spec = self.protected.get(flow.server)
        if spec is None:
            return 400, _page("This backend is no longer configured", flow.server)
        if "error" in query:
            await self.metrics.record(flow.server, "login_failure")
            reason = query.get("error_description") or query["error"]
            return 400, _page(f"Signing in to {flow.server} was refused", reason)
        if query.get("iss") not in (None, flow.issuer):  # RFC 9207: the answer comes from the server we asked
            await self.metrics.record(flow.server, "login_failure")
            return 400, _page("This sign-in answer came from another server", "Ask your client to sign in again.")
        try:
            metadata = await self.clients.metadata(flow.issuer)
            tokens = await exchange_code(
                self.clients.http,
                metadata,
                flow.client,
                code=query.get("code", ""),
                code_verifier=flow.verifier,
                redirect_uri=self.redirect_uri,
                resource=flow.resource,
            )
            await self.vault.put(flow.subject, flow.server, tokens, ttl=30 * 86_400.0)
        except (OAuthError, StoreUnavailable) as exc:
            await self.metrics.record(flow.server, "login_failure")
            return 502, _page(f"Signing in to {flow.server} failed", str(exc))
        record = await self.users.connect(flow.subject, spec)
        await self.users.changed(flow.subject)
        if record.state != "up":
            await self.metrics.record(flow.server, "login_failure")
            return 502, _page(f"Signed in, but {flow.server} did not accept the token", record.error or "")
        await self.metrics.record(flow.server, "login_success")
        await self.rate_limiter.reset(_limit_key(flow.subject))
        log.info("a user signed in to %s", flow.server, extra={"server": flow.server})
        return 200, _page(f"Signed in to {flow.server}", "Return to your client: its tools are there now.")

    def awaiting(self, principal: Principal | None) -> list[dict[str, Any]]:
        """The backends this user must sign in to before their tools show, each with the call that does it."""
        records = self.users.records_of(principal.subject) if principal is not None else {}
        return [
            {"server": name, "status": status, "tool": "core_auth_login", "arguments": {"server": name}}
            for name, spec in sorted(self.protected.items())
            if spec.auth is not None
            and spec.auth.mode == "login"
            and (status := _status(records.get(name), spec)) != "connected"
        ]

    # -- auth://status --------------------------------------------------------------------------

    async def status(self, principal: Principal | None) -> Raw:
        """The calling user's standing with each protected backend, as a resources/read result."""
        records = self.users.records_of(principal.subject) if principal is not None else {}
        servers = []
        for name, spec in sorted(self.protected.items()):
            assert spec.auth is not None
            record = records.get(name)
            shared = self.users.registry.catalog.servers.get(name)
            challenge = shared.auth if shared is not None else None
            entry: dict[str, Any] = {
                "name": name,
                "status": _status(record, spec),
                "issuer": challenge.authorization_servers[0] if challenge and challenge.authorization_servers else None,
                "scope": " ".join(spec.auth.scopes or (challenge.scopes if challenge else [])) or None,
                "error": record.error if record is not None and record.state != "up" else None,
            }
            servers.append(entry)
        text = msgspec.json.encode({"servers": servers}).decode()
        return raw({"contents": [{"uri": AUTH_STATUS_URI, "mimeType": "application/json", "text": text}]})


def _status(record: Any, spec: ServerSpec) -> str:
    if record is not None and record.state == "up":
        return "connected"
    if record is not None and record.state == "down":
        return "error"
    assert spec.auth is not None
    return "auth_required" if spec.auth.mode == "login" else "disconnected"


def _result(text: str, error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if error:
        result["isError"] = True
    return result


def _limit_key(subject: str) -> str:
    return f"auth-login:{user_key(subject)}"


def _state_key(state: str) -> str:
    return f"oauth-state:{state}"


def _page(title: str, detail: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>mcp-aggregator</title></head>"
        f"<body style='font-family:sans-serif;margin:3em'><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(detail)}</p></body></html>"
    )

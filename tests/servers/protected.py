"""A protected MCP backend: an official-SDK MCPServer behind OAuth bearer tokens (RFC 6750, 8707, 9728).

    python -m tests.servers.protected --port 0 --issuer URL [--audience URL] [--scope S]... [--name NAME]
        [--host 127.0.0.1]

Serves `/mcp` (streamable HTTP, both protocol eras) and prints `READY <url>` once listening. Every
request needs `Authorization: Bearer <JWT>` signed by the issuer (keys from its RFC 8414 metadata's
`jwks_uri`, fetched again when a token names an unknown kid), not expired, whose `aud` holds
`--audience` (default: the server's own URL, `http://HOST:PORT/mcp`, which is also the `resource` of
its metadata) and whose `scope` holds every `--scope`. The SDK's auth support does the HTTP side:
without a valid token the answer is 401 with `WWW-Authenticate: Bearer ...,
resource_metadata="http://HOST:PORT/.well-known/oauth-protected-resource/mcp"`; a missing scope
is 403 `insufficient_scope`; that URL serves RFC 9728 metadata (`resource`,
`authorization_servers: [issuer]`, `scopes_supported`: the --scope values).

Tools: whoami (the token's iss, sub, aud, scope, client_id, and the --name), echo, add_tool /
remove_tool (a tool that only its adder sees and may call, announced as a tools list change to
every client: each re-lists and sees its own tools). 2026-07-28 tools/list results carry
`cacheScope: private`.
A 2025-11-25 session belongs to the principal (client_id, iss, sub) that opened it (the SDK's rule).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.caching import CacheHint
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ListToolsResult, TextContent
from starlette.applications import Starlette

from tests.servers.http import add_address_arguments, listen, run
from tests.servers.jwks import InvalidToken, IssuerKeys
from tests.servers.toolbox import LegacySessions

logger = logging.getLogger("tests.servers.protected")


class JwtVerifier(TokenVerifier):
    """Bearer tokens are the issuer's JWTs for `audience`; anything else is no token at all (401)."""

    def __init__(self, keys: IssuerKeys, audience: str) -> None:
        self.keys = keys
        self.audience = audience

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            claims = await self.keys.verify(token, audience=self.audience)
        except InvalidToken as exc:
            logger.warning("refused a bearer token: %s", exc)
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id", "")),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            resource=self.audience,
            subject=str(claims["sub"]),
            claims=claims,
        )


def _caller() -> AccessToken:
    token = get_access_token()
    assert token is not None, "every request is authenticated before it reaches a tool"
    return token


class PrivateTools:
    """Middleware: a tool added at run time belongs to whoever added it; to anyone else it does not exist."""

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}

    def _foreign(self, tool: object) -> bool:
        return tool in self.owners and self.owners[tool] != _caller().subject

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call" and self._foreign((ctx.params or {}).get("name")):
            name = (ctx.params or {}).get("name")
            return CallToolResult(content=[TextContent(type="text", text=f"Unknown tool: {name}")], is_error=True)
        result = await call_next(ctx)
        if ctx.method != "tools/list":
            return result
        if isinstance(result, ListToolsResult):  # the handler's own answer (2026-07-28)
            return result.model_copy(update={"tools": [t for t in result.tools if not self._foreign(t.name)]})
        if isinstance(result, dict):  # already serialised (2025-11-25 sessions)
            return {**result, "tools": [t for t in result.get("tools", []) if not self._foreign(t.get("name"))]}
        return result


def build(name: str, issuer: str, audience: str, url: str, scopes: list[str], http: httpx.AsyncClient) -> MCPServer:
    """The protected backend called `name` at `url`."""
    legacy, private = LegacySessions(), PrivateTools()
    server = MCPServer(
        f"protected-{name}",
        version="1.0.0",
        token_verifier=JwtVerifier(IssuerKeys(issuer, http), audience),
        # From strings: the model keeps a root issuer's empty path, `AnyHttpUrl(issuer)` would add a "/".
        auth=AuthSettings.model_validate(
            {
                "issuer_url": issuer,
                "resource_server_url": url,
                "required_scopes": scopes or None,
                "validate_token_resource": False,  # the verifier checks `aud` against --audience itself
            }
        ),
        cache_hints={"tools/list": CacheHint(ttl_ms=0, scope="private")},
        middleware=[legacy, private],
    )

    async def tools_changed(ctx: Context) -> None:
        await ctx.notify_tools_changed()
        await legacy.tools_changed()

    @server.tool()
    def whoami() -> dict[str, Any]:
        """Who the bearer token says is calling, and this backend's name."""
        token = _caller()
        claims = token.claims or {}
        keys = ("iss", "sub", "aud", "scope", "client_id")
        return {"backend": name, **{key: claims.get(key) for key in keys}}

    @server.tool()
    def echo(text: str) -> str:
        """Return the text."""
        return text

    @server.tool()
    async def add_tool(tool: str, ctx: Context) -> str:
        """Register a tool named `tool` for the caller alone and announce the list change."""
        owner = _caller().subject or ""
        if private.owners.get(tool, owner) != owner:
            return f"tool {tool} belongs to someone else"

        def added() -> str:
            return f"{tool} of {owner} from {name}"

        server.add_tool(added, name=tool, description=f"Added at run time by {owner}: {tool}")
        private.owners[tool] = owner
        await tools_changed(ctx)
        return f"added {tool}"

    @server.tool()
    async def remove_tool(tool: str, ctx: Context) -> str:
        """Remove a tool the caller added and announce the list change."""
        if private.owners.get(tool) != _caller().subject:
            return f"no tool {tool} of yours"
        server.remove_tool(tool)
        del private.owners[tool]
        await tools_changed(ctx)
        return f"removed {tool}"

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--issuer", required=True, help="the authorization server whose tokens are accepted")
    parser.add_argument("--audience", help="the `aud` tokens must carry (default: this server's /mcp URL)")
    parser.add_argument("--scope", action="append", default=[], help="a scope every token must carry")
    parser.add_argument("--name", default="protected")
    add_address_arguments(parser, port_required=False)
    args = parser.parse_args()
    sock = listen(args.host, args.port)
    url = f"http://{args.host}:{sock.getsockname()[1]}/mcp"
    http = httpx.AsyncClient(timeout=5)
    server = build(args.name, args.issuer, args.audience or url, url, args.scope, http)
    app: Starlette = server.streamable_http_app(host=args.host)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Any]:
        async with http, inner(app) as state:
            yield state

    app.router.lifespan_context = lifespan
    run(app, args.host, args.port, "/mcp", sock=sock)


if __name__ == "__main__":
    main()

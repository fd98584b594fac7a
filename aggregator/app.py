"""Builds the ASGI application from a Config: routes, lifespan, middleware.

The MCP endpoints (`/mcp`, the hot path, and the legacy `/sse` + `/message`) are plain ASGI,
dispatched before Starlette's router; everything else (`/healthz`, `/readyz`, `/metrics`,
`/admin`, and the admin console under `/admin/`) is ordinary Starlette.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from aggregator.admin import admin_routes
from aggregator.auth.resource_server import BearerAuth, JwtVerifier, issuer_keys, protected_resource_metadata
from aggregator.console import Console
from aggregator.gateway import Gateway
from aggregator.middleware import RequestGuard
from aggregator.transport.http_common import ASGIApp, Receive, Scope, Send, send_error
from aggregator.transport.legacy_sse import LegacySseEndpoints
from aggregator.transport.streamable_http import StreamableHttpEndpoint
from shared.config import Config
from shared.protocol.errors import InternalError, InvalidRequest
from shared.store.factory import open_stores
from shared.store.protocols import Stores

__all__ = ["GatewayApp"]

log = logging.getLogger("aggregator.app")

_MCP_PATHS = frozenset({"/mcp", "/mcp/", "/sse", "/message"})


class GatewayApp:
    """The ASGI app. The Gateway exists between lifespan start and stop."""

    def __init__(
        self,
        config: Config,
        *,
        redis_url: str | None = None,
        control_plane: bool = True,
        admin_token: str | None = None,
        stores: Stores | None = None,
    ) -> None:
        self.config = config
        self.redis_url = redis_url
        self.control_plane = control_plane
        self.admin_token = admin_token
        self._given_stores = stores
        self.gateway: Gateway | None = None
        self._mcp: StreamableHttpEndpoint | None = None
        self._sse: LegacySseEndpoints | None = None
        routes = [
            Route("/healthz", self._healthz, methods=["GET"]),
            Route("/readyz", self._readyz, methods=["GET"]),
            Route("/metrics", self._metrics, methods=["GET"]),
        ]
        settings = config.aggregator
        inner: ASGIApp = self._dispatch
        self._http: httpx.AsyncClient | None = None
        if settings.oauth is not None and settings.audience is not None:
            # Clients need a token from the issuer; the metadata that says so is open to all.
            self._http = httpx.AsyncClient(timeout=10.0)
            verifier = JwtVerifier(
                issuer=settings.oauth.issuer,
                audience=settings.audience,
                fetch_keys=issuer_keys(self._http, settings.oauth.issuer, settings.oauth.jwks_url),
                required_scopes=settings.oauth.required_scopes,
            )
            metadata_url = f"{settings.base_url}/.well-known/oauth-protected-resource/mcp"
            inner = BearerAuth(inner, verifier, paths=_MCP_PATHS, metadata_url=metadata_url)
            for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
                routes.append(Route(path, self._resource_metadata, methods=["GET"]))
        if any(spec.auth is not None for spec in config.mcp_servers):
            routes.append(Route("/oauth/callback", self._oauth_callback, methods=["GET"]))
        self._starlette = Starlette(routes=routes, lifespan=self._lifespan)
        self._inner = inner
        self._guard = RequestGuard(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = self._guard.refusal(scope["headers"])
            if refused is not None:
                await send_error(send, refused.error, status=refused.status)
                return
        await self._inner(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path not in _MCP_PATHS:
            await self._starlette(scope, receive, send)
            return
        if self._mcp is None or self._sse is None:
            await send_error(send, InternalError("The gateway is starting or stopping; retry shortly"), status=503)
            return
        if path == "/sse" or path == "/message":
            allowed = "GET" if path == "/sse" else "POST"
            if scope["method"] != allowed:
                error = InvalidRequest(f"Method {scope['method']} not allowed on {path}; use {allowed}")
                await send_error(send, error, status=405, headers=[(b"allow", allowed.encode())])
            elif path == "/sse":
                await self._sse.stream(scope, receive, send)
            else:
                await self._sse.message(scope, receive, send)
            return
        await self._mcp(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        stores = self._given_stores or await open_stores(self.redis_url)
        gateway = Gateway(self.config, stores, control_plane=self.control_plane)
        await gateway.start()
        self.gateway = gateway
        self._mcp = StreamableHttpEndpoint(gateway)
        self._sse = LegacySseEndpoints(gateway)
        console = None
        if self.admin_token:
            console = Console(gateway, self.admin_token)
            for route in [*admin_routes(gateway, self.admin_token), *console.routes()]:
                self._starlette.router.routes.append(route)
            await console.start()
        try:
            yield
        finally:
            self._mcp = None
            if console is not None:
                await console.stop()
            await gateway.stop()
            self.gateway = None
            if self._given_stores is None:
                await stores.aclose()
            if self._http is not None:
                await self._http.aclose()

    async def _resource_metadata(self, request: Request) -> Response:
        """RFC 9728: which authorization server issues tokens for this gateway."""
        settings = self.config.aggregator
        assert settings.oauth is not None and settings.audience is not None
        metadata = protected_resource_metadata(
            resource=settings.audience, issuer=settings.oauth.issuer, scopes=settings.oauth.required_scopes
        )
        return JSONResponse(metadata, headers={"cache-control": "public, max-age=300"})

    async def _oauth_callback(self, request: Request) -> Response:
        """Where a backend's authorization server sends the user's browser back after signing in."""
        sign_in = self.gateway.server.sign_in if self.gateway is not None else None
        if sign_in is None:
            return Response("The gateway is starting; retry the link shortly.", status_code=503)
        status, page = await sign_in.callback(dict(request.query_params))
        return HTMLResponse(page, status_code=status, headers={"cache-control": "no-store"})

    async def _healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def _readyz(self, request: Request) -> Response:
        if self.gateway is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        ok, body = await self.gateway.readiness()
        return JSONResponse(body, status_code=200 if ok else 503)

    async def _metrics(self, request: Request) -> Response:
        if self.gateway is None:
            return Response(status_code=503)
        return Response(self.gateway.telemetry.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
